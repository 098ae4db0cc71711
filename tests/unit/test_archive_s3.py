"""Archive watch over an S3 prefix, against moto's HTTP S3 server (tests/fixtures/services.py).

A measurement set in object storage is a key prefix ``<root>/<project>/<name>.ms/...``; the
scan lists it with paginated ``ListObjectsV2``, maps it to its target through the
``ms_file_key`` file name, and the fetch downloads it into the first ``ms_root`` before the
target is triggered.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from phangs_operators.archive import (
    ArchiveError,
    S3Archive,
    archive_settings,
    archive_state,
    fetch_archive,
    fingerprint_objects,
    marker_path,
    parse_archive_uris,
    record_scan,
    scan_archive,
    split_ms_key,
)
from phangs_operators.keys import load_project
from phangs_operators.stores import Catalog
from tests.fixtures.services import aws_conn_json, free_port

ROOT = Path(__file__).resolve().parents[2]
KEYS = ROOT / "include" / "keys"

# a small MS: main table + one subtable, as CASA lays them out
MS_FILES = {"table.dat": b"main table", "table.f0": b"\x00" * 300, "table.info": b"Type = Measurement Set",
            "ANTENNA/table.dat": b"antennas", "ANTENNA/table.f0": b"ant rows",
            "SPECTRAL_WINDOW/table.dat": b"spw"}


def _upload(client, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=f"{prefix}/{kv[0]}", Body=kv[1]),
                      files.items()))


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path / "demo"))
    (tmp_path / "demo" / "data" / "ms").mkdir(parents=True)
    return load_project(KEYS)


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, tmp_path) -> Iterator[Catalog]:
    url = (f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    cat = Catalog.from_url(url)
    yield cat
    cat.close()


@pytest.fixture
def archive_uri(moto_s3) -> str:
    """A fresh archive prefix in the session bucket."""
    return f"s3://{moto_s3.bucket}/archive-{uuid.uuid4().hex[:8]}/calibrated"


def _prefix(uri: str) -> str:
    return uri.split("/", 3)[3]


def _rows(catalog: Catalog) -> dict[str, tuple[str, str | None, str]]:
    with catalog.engine.connect() as conn:
        return {r.ms_path: (r.fingerprint, r.target, r.status) for r in conn.execute(sa.select(archive_state))}


# ------------------------------------------------------------------------------------------
def test_split_ms_key():
    assert split_ms_key("2024.1.99999.S/x.ms/ANTENNA/table.f0") == ("2024.1.99999.S/x.ms", "ANTENNA/table.f0")
    assert split_ms_key("x.ms/table.dat") == ("x.ms", "table.dat")
    assert split_ms_key("x.ms/") == ("x.ms", "")  # directory marker object
    assert split_ms_key("readme.txt") is None
    assert split_ms_key("proj/x.ms") is None  # an object named .ms is not an MS prefix
    assert split_ms_key("proj/.x.ms.part-1/table.dat") is None  # hidden: temporary upload
    assert split_ms_key("a//x.ms/table.dat") is None


def test_fingerprint_depends_on_key_size_and_etag_not_order():
    from phangs_operators.archive import S3Object

    objs = [S3Object("table.dat", 3, "e1"), S3Object("ANTENNA/table.dat", 4, "e2")]
    fp = fingerprint_objects(objs)
    assert fp == fingerprint_objects(list(reversed(objs)))
    assert fp != fingerprint_objects([S3Object("table.dat", 3, "e9"), objs[1]])
    assert fp != fingerprint_objects([S3Object("table.dat", 5, "e1"), objs[1]])
    assert fp != fingerprint_objects([S3Object("table.f0", 3, "e1"), objs[1]])


def test_archive_settings(monkeypatch):
    monkeypatch.setenv("PHANGS_ARCHIVE_URI", "s3://a/x, s3://b")
    monkeypatch.setenv("PHANGS_ARCHIVE_CONN_ID", "my_archive")
    assert archive_settings() == (["s3://a/x", "s3://b"], "my_archive")
    assert archive_settings(["s3://c/p"], "other") == (["s3://c/p"], "other")
    assert parse_archive_uris('["s3://a/b"]') == ["s3://a/b"]
    monkeypatch.setenv("PHANGS_ARCHIVE_URI", "/data/archive")
    with pytest.raises(ArchiveError, match=r"PHANGS_ARCHIVE_URI.*'/data/archive'.*s3://"):
        archive_settings()
    with pytest.raises(ArchiveError, match="JSON list"):
        parse_archive_uris("[s3://a")
    with pytest.raises(ArchiveError, match="not of the form"):
        S3Archive("file:///x", client=object())


def test_new_ms_triggers_right_target_once_then_changes_retrigger(moto_s3, project, catalog, archive_uri):
    s3 = moto_s3.client()
    prefix = _prefix(archive_uri)
    # ngc9997 is a single target; ngc9998_1 is a part of the linear mosaic ngc9998
    _upload(s3, moto_s3.bucket, f"{prefix}/2024.1.99999.S/ngc9997_12m_single.ms", MS_FILES)
    _upload(s3, moto_s3.bucket, f"{prefix}/2024.1.99998.S/ngc9998_1_7m_single.ms", MS_FILES)
    # an object outside any MS is ignored
    s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/README.txt", Body=b"calibrated data")
    archive = S3Archive(archive_uri, moto_s3.conn_id)

    scan = scan_archive(project, catalog, [archive])
    assert sorted(i["ms"] for i in scan.new) == [
        f"{archive_uri}/2024.1.99998.S/ngc9998_1_7m_single.ms",
        f"{archive_uri}/2024.1.99999.S/ngc9997_12m_single.ms"]
    assert sorted(t["trigger_dag_id"] for t in scan.triggers) == ["phangs_ngc9997", "phangs_ngc9998"]
    assert all(t["trigger_run_id"].startswith("archive__") for t in scan.triggers)
    assert scan.archives == [{"uri": archive_uri, "endpoint": moto_s3.endpoint_url, "ms": 2,
                              "objects": 2 * len(MS_FILES) + 1, "pages": 1, "ignored": 1}]
    assert _rows(catalog) == {}  # a scan writes nothing

    # fetch: byte-identical local copies where the target DAGs look for them
    done = fetch_archive(project, scan.to_dict())
    ms_root = project.roots["ms_root"][0]
    local = ms_root / "2024.1.99999.S" / "ngc9997_12m_single.ms"
    assert {d["local_path"] for d in done} == {str(local), str(ms_root / "2024.1.99998.S" / "ngc9998_1_7m_single.ms")}
    assert project.ms_path(project.ms_entries("ngc9997")[0]) == local
    got = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert got == MS_FILES
    assert json.loads(marker_path(local).read_text())["source"] == f"{archive_uri}/2024.1.99999.S/ngc9997_12m_single.ms"
    assert not [p for p in local.parent.iterdir() if ".part-" in p.name or ".old-" in p.name]

    assert record_scan(catalog, scan.to_dict()) == 2
    rows = _rows(catalog)
    assert {v[1] for v in rows.values()} == {"ngc9997", "ngc9998"} and {v[2] for v in rows.values()} == {"triggered"}

    # second scan: nothing new, and the downloaded copies are not counted as new local MS
    again = scan_archive(project, catalog, [archive])
    assert (again.new, again.changed, again.unknown, again.triggers) == ([], [], [], [])
    assert again.unchanged == 2

    # a changed object (recalibrated main table) re-triggers that target only, with a new run id
    s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/2024.1.99999.S/ngc9997_12m_single.ms/table.f0",
                  Body=b"\x01" * 300)  # same size, different ETag
    third = scan_archive(project, catalog, [archive])
    assert [i["ms"].rsplit("/", 1)[1] for i in third.changed] == ["ngc9997_12m_single.ms"]
    assert [t["trigger_dag_id"] for t in third.triggers] == ["phangs_ngc9997"]
    old_run = next(t for t in scan.triggers if t["trigger_dag_id"] == "phangs_ngc9997")["trigger_run_id"]
    assert third.triggers[0]["trigger_run_id"] != old_run
    fetch_archive(project, third.to_dict())
    assert (local / "table.f0").read_bytes() == b"\x01" * 300
    record_scan(catalog, third.to_dict())
    assert scan_archive(project, catalog, [archive]).triggers == []


def test_unknown_ms_is_reported_not_downloaded(moto_s3, project, catalog, archive_uri):
    s3 = moto_s3.client()
    _upload(s3, moto_s3.bucket, f"{_prefix(archive_uri)}/2025.1.00001.S/ngc0001_12m.ms", MS_FILES)
    archive = S3Archive(archive_uri, moto_s3.conn_id)
    scan = scan_archive(project, catalog, [archive])
    assert [i["ms"] for i in scan.unknown] == [f"{archive_uri}/2025.1.00001.S/ngc0001_12m.ms"]
    assert scan.triggers == [] and scan.new == []
    assert fetch_archive(project, scan.to_dict()) == []
    assert not (project.roots["ms_root"][0] / "2025.1.00001.S").exists()
    record_scan(catalog, scan.to_dict())
    assert _rows(catalog)[f"{archive_uri}/2025.1.00001.S/ngc0001_12m.ms"][2] == "unknown"
    assert scan_archive(project, catalog, [archive]).unknown == []  # reported once per change


def test_listing_is_paginated_beyond_1000_objects(moto_s3, project, tmp_path, archive_uri):
    files = {f"POINTING/table.f{i}": f"row {i}".encode() for i in range(1100)}
    files.update(MS_FILES)
    ms_prefix = f"{_prefix(archive_uri)}/2024.1.99999.S/ngc9997_12m_single.ms"
    _upload(moto_s3.client(), moto_s3.bucket, ms_prefix, files)
    calls = []
    archive = S3Archive(archive_uri, moto_s3.conn_id)
    archive._client.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda **kw: calls.append(kw["params"]))
    listing = archive.list_ms()
    assert listing.objects == len(files) == 1106
    assert listing.pages == 2 and len(calls) == 2 and "ContinuationToken" in calls[1]
    objects = listing.ms["2024.1.99999.S/ngc9997_12m_single.ms"]
    assert sorted(o.key for o in objects) == sorted(files)
    # ETags of single-part uploads are MD5s: the fingerprint is over the real listing
    assert {o.key: o.etag for o in objects}["table.dat"] == hashlib.md5(b"main table").hexdigest()  # noqa: S324
    # smaller pages give the same MS
    small = S3Archive(archive_uri, moto_s3.conn_id, page_size=300)
    assert small.list_ms().pages == 4
    assert fingerprint_objects(small.list_ms().ms["2024.1.99999.S/ngc9997_12m_single.ms"]) == \
        fingerprint_objects(objects)
    # and the download gets all 1106 files
    cat = Catalog.from_url(f"sqlite:///{tmp_path / 'c.db'}")
    scan = scan_archive(project, cat, [archive])
    (info,) = fetch_archive(project, scan.to_dict())
    assert info["objects"] == 1106
    assert sum(1 for p in Path(info["local_path"]).rglob("*") if p.is_file()) == 1106


def test_unreachable_endpoint_names_it_and_writes_no_state(moto_s3, project, catalog, monkeypatch):
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_PHANGS_ARCHIVE_DOWN", aws_conn_json(f"http://127.0.0.1:{port}"))
    # a folder MS is found too, but nothing may be triggered or recorded from a partial view
    ms = project.roots["ms_root"][0] / "2024.1.99999.S" / "ngc9999_12m_mosaic.ms"
    ms.mkdir(parents=True)
    (ms / "table.dat").write_bytes(b"x")
    down = S3Archive("s3://phangs-archive/calibrated", "phangs_archive_down")
    with pytest.raises(ArchiveError, match=rf"s3://phangs-archive/calibrated at http://127.0.0.1:{port}.*"
                                           r"bucket 'phangs-archive'"):
        scan_archive(project, catalog, [down])
    assert _rows(catalog) == {}

    missing = S3Archive(f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/x", moto_s3.conn_id)
    with pytest.raises(ArchiveError, match=rf"{moto_s3.endpoint_url}.*no-such-bucket.*NoSuchBucket"):
        scan_archive(project, catalog, [missing])
    assert _rows(catalog) == {}

    with pytest.raises(ArchiveError, match="connection 'phangs_archive_undefined'.*not defined"):
        S3Archive("s3://phangs-archive/calibrated", "phangs_archive_undefined")


def test_recent_uploads_wait_for_a_later_scan(moto_s3, project, catalog, archive_uri):
    _upload(moto_s3.client(), moto_s3.bucket, f"{_prefix(archive_uri)}/2024.1.99999.S/ngc9997_12m_single.ms",
            MS_FILES)
    archive = S3Archive(archive_uri, moto_s3.conn_id)
    scan = scan_archive(project, catalog, [archive], min_age_s=600)
    assert [i["relpath"] for i in scan.settling] == ["2024.1.99999.S/ngc9997_12m_single.ms"]
    assert scan.triggers == [] and scan.new == []
    later = scan_archive(project, catalog, [archive], min_age_s=600, now=datetime.now(UTC) + timedelta(hours=1))
    assert [t["trigger_dag_id"] for t in later.triggers] == ["phangs_ngc9997"]


def test_download_is_atomic_and_never_replaces_foreign_data(moto_s3, project, catalog, archive_uri):
    s3 = moto_s3.client()
    prefix = f"{_prefix(archive_uri)}/2024.1.99999.S/ngc9997_12m_single.ms"
    _upload(s3, moto_s3.bucket, prefix, MS_FILES)
    archive = S3Archive(archive_uri, moto_s3.conn_id)
    scan = scan_archive(project, catalog, [archive]).to_dict()
    # the MS changes between scan and fetch: no partial or stale copy appears, a clear error
    s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/table.dat", Body=b"main table v2")
    dest = project.roots["ms_root"][0] / "2024.1.99999.S" / "ngc9997_12m_single.ms"
    with pytest.raises(ArchiveError, match="ngc9997_12m_single.ms changed since it was scanned"):
        fetch_archive(project, scan)
    assert not dest.exists() and not marker_path(dest).exists()
    assert not dest.parent.exists() or not list(dest.parent.iterdir())

    # an MS placed there by hand (no marker) is never overwritten by the archive copy
    dest.mkdir(parents=True)
    (dest / "table.dat").write_bytes(b"hand-made")
    scan = scan_archive(project, catalog, [archive]).to_dict()
    with pytest.raises(ArchiveError, match=r"refusing to replace .*ngc9997_12m_single.ms"):
        fetch_archive(project, scan)
    assert (dest / "table.dat").read_bytes() == b"hand-made"

    # the download folder must be an ms_root search path
    with pytest.raises(ArchiveError, match="is not an ms_root search path"):
        fetch_archive(project, scan, dest_root=os.fspath(project.roots["ms_root"][0].parent))


def test_large_objects_use_ranged_downloads(moto_s3, project, tmp_path, archive_uri):
    """Objects above ``large_object`` go through s3transfer (parallel ranged GETs): same bytes."""
    big = os.urandom(3 * 1024 * 1024 + 17)
    files = dict(MS_FILES, **{"table.f1": big})
    _upload(moto_s3.client(), moto_s3.bucket, f"{_prefix(archive_uri)}/2024.1.99999.S/ngc9997_12m_single.ms", files)
    archive = S3Archive(archive_uri, moto_s3.conn_id, large_object=1024 * 1024, part_size=1024 * 1024)
    gets = []
    archive._client.meta.events.register("before-parameter-build.s3.GetObject", lambda **kw: gets.append(kw["params"]))
    cat = Catalog.from_url(f"sqlite:///{tmp_path / 'c.db'}")
    scan = scan_archive(project, cat, [archive])
    (info,) = fetch_archive(project, scan.to_dict(), archives={archive.uri: archive})
    local = Path(info["local_path"])
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()} == files
    ranged = [g for g in gets if g["Key"].endswith("table.f1")]
    small = [g for g in gets if not g["Key"].endswith("table.f1")]
    assert len(ranged) == 4 and all("Range" in g for g in ranged)  # s3transfer's 1 MiB ranged parts
    assert len(small) == len(MS_FILES) and all("IfMatch" in g and "Range" not in g for g in small)
