"""publish_products as a unit of work: idempotence, versions, faults, outages, concurrency."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from phangs_operators.errors import StoreError
from phangs_operators.stores import Catalog, ProductStore, publish_products, verify_products, with_quicklooks
from phangs_operators.stores.names import TEMP_PREFIX
from phangs_operators.stores.publish import FAULT_STEPS
from tests.stores.helpers import TcpProxy, cube_file, fork_and_run, small_cube, small_map


class Boom(RuntimeError):
    pass


def fail_at(step):
    def hook(s):
        if s == step:
            raise Boom(step)
    return hook


def visible(store: ProductStore) -> list[str]:
    return sorted(o.key for o in store.list() if not o.key.startswith(TEMP_PREFIX + "/"))


def temps(store: ProductStore) -> list[str]:
    return sorted(o.key for o in store.list(TEMP_PREFIX + "/"))


def test_publish_round_trip_and_catalog_row(backend, tmp_path):
    store, cat = backend
    path = small_cube(tmp_path / "ngc0628_12m+7m_co21_pbcorr_trimmed_k.fits")
    res = publish_products(store, cat, [cube_file(path, inputs=[("s3://raw/x.ms", "9" * 64)], keyset_hash="ks1")])
    (p,) = res.products
    assert p.action == "published" and p.version == 1
    assert p.uri == store.uri_for("ngc0628/12m+7m/co21/ngc0628_12m+7m_co21_pbcorr_trimmed_k.fits")
    row = cat.get_by_uri(p.uri)
    assert row.is_current and row.sha256 == p.sha256 and row.size_bytes == path.stat().st_size
    assert row.shape == [12, 16, 16] and row.bunit == "K" and row.chan_width_kms == pytest.approx(2.5)
    assert row.bmaj_arcsec == pytest.approx(2.0) and row.pixel_arcsec == pytest.approx(0.5)
    assert row.vel_min_kms == pytest.approx(925.0) and row.restfreq_hz > 2e11 and len(row.footprint) == 4
    assert row.inputs == [("s3://raw/x.ms", "9" * 64)] and row.keyset_hash == "ks1"
    assert row.software["astropy"] and row.host and row.try_number == 1
    assert temps(store) == [] and len(visible(store)) == 1
    assert res.to_dict()["products"][0]["uri"] == p.uri  # JSON-serialisable XCom


def test_identical_bytes_is_a_noop_different_bytes_a_new_version(backend, tmp_path):
    store, cat = backend
    path = small_cube(tmp_path / "c.fits", seed=1)
    spec = cube_file(path)
    first = publish_products(store, cat, [spec]).products[0]
    again = publish_products(store, cat, [spec])
    assert again.products[0].action == "unchanged" and again.bytes_uploaded == 0
    assert cat.count() == 1
    small_cube(path, seed=2)  # different bytes, same name
    second = publish_products(store, cat, [spec]).products[0]
    assert second.version == 2 and second.uri != first.uri and second.uri.endswith("/_v2/c.fits")
    rows = cat.list_products(current_only=False)
    assert [(r.version, r.is_current) for r in rows] == [(1, False), (2, True)]
    # version 1 was not overwritten
    assert store.hash_object(store.key_from_uri(first.uri))[0] == first.sha256
    assert verify_products(store, cat).healthy


@pytest.mark.parametrize("step", FAULT_STEPS[:4])
def test_fault_then_rerun_converges(backend, tmp_path, step):
    store, cat = backend
    specs = [cube_file(small_cube(tmp_path / "cube.fits", seed=3)),
             cube_file(small_map(tmp_path / "mom0.fits"), kind="moment", stage="strict_mom0")]
    with pytest.raises(Boom):
        publish_products(store, cat, specs, fault=fail_at(step))
    assert cat.count() == 0  # nothing catalogued, so nothing is current
    res = publish_products(store, cat, specs)
    assert [p.action for p in res.products] == ["published", "published"]
    assert cat.count() == 2 and len(visible(store)) == 2 and temps(store) == []
    report = verify_products(store, cat)
    assert report.healthy and len(report.ok) == 2 and report.temp_keys == []


@pytest.mark.parametrize("step", FAULT_STEPS[:4])
def test_worker_killed_then_rerun_converges(backend, tmp_path, step):
    """A SIGKILL (no cleanup code runs) at each step, then a retry in a new process state."""
    store, cat = backend
    spec = cube_file(small_cube(tmp_path / "cube.fits", seed=4))

    def die(s):
        if s == step:
            os.kill(os.getpid(), signal.SIGKILL)

    def child():
        cat.engine.dispose(close=False)  # never share pooled DB connections with the parent
        fresh = ProductStore.from_uri(store.base_uri, conn_id=getattr(store, "conn_id", None))  # no shared sockets
        publish_products(fresh, cat, [spec], fault=die)

    assert fork_and_run(child) == -signal.SIGKILL
    assert cat.count() == 0
    res = publish_products(store, cat, [spec])
    assert res.products[0].version == 1
    assert cat.count() == 1 and visible(store) == ["ngc0628/12m+7m/co21/cube.fits"] and temps(store) == []
    assert verify_products(store, cat).healthy


def test_failed_new_version_keeps_old_current(backend, tmp_path):
    store, cat = backend
    path = small_cube(tmp_path / "c.fits", seed=5)
    v1 = publish_products(store, cat, [cube_file(path)]).products[0]
    small_cube(path, seed=6)
    with pytest.raises(Boom):
        publish_products(store, cat, [cube_file(path)], fault=fail_at("during_commit"))
    (cur,) = cat.list_products()
    assert cur.uri == v1.uri and cur.version == 1
    assert visible(store) == ["ngc0628/12m+7m/co21/c.fits"]  # the failed v2 copy was rolled back


def test_corrupted_object_is_detected_by_verify(backend, tmp_path):
    store, cat = backend
    res = publish_products(store, cat, [cube_file(small_cube(tmp_path / "c.fits", seed=7)),
                                        cube_file(small_map(tmp_path / "m.fits"), kind="moment", stage="mom0")])
    cube_uri, map_uri = (p.uri for p in res.products)
    # damage the cube behind the store's back (metadata checksum untouched), delete the map
    bad = tmp_path / "bad.fits"
    small_cube(bad, seed=8)
    store.upload(bad, store.key_from_uri(cube_uri), metadata={"sha256": res.products[0].sha256})
    store.delete(store.key_from_uri(map_uri))
    report = verify_products(store, cat)
    assert not report.healthy
    assert [m["uri"] for m in report.mismatched] == [cube_uri] and report.missing == [map_uri]
    assert report.mismatched[0]["expected"] == res.products[0].sha256


def test_bad_inputs_are_rejected_before_anything_is_written(backend, tmp_path):
    store, cat = backend
    path = small_cube(tmp_path / "c.fits")
    for kwargs in ({"target": "../etc"}, {"target": "a/b"}, {"product": "x'; DROP TABLE products;--"}):
        with pytest.raises(StoreError, match="invalid"):
            publish_products(store, cat, [cube_file(path, **kwargs)])
    with pytest.raises(StoreError, match="same identity"):
        publish_products(store, cat, [cube_file(path), cube_file(path)])
    with pytest.raises(StoreError, match="not a file"):
        publish_products(store, cat, [cube_file(tmp_path / "missing.fits")])
    assert cat.count() == 0 and store.list() is not None and visible(store) == [] and temps(store) == []


def test_quicklooks_are_published_next_to_their_product(backend, tmp_path):
    store, cat = backend
    specs = with_quicklooks([cube_file(small_cube(tmp_path / "c.fits")),
                             cube_file(small_map(tmp_path / "m.fits"), kind="moment", stage="mom0")],
                            tmp_path / "ql")
    res = publish_products(store, cat, specs)
    ql = [p for p in res.products if p.kind == "quicklook"]
    assert sorted(Path(p.uri).name for p in ql) == ["c_peak.png", "c_spectrum.png", "m_map.png"]
    assert all(p.uri.rsplit("/", 1)[0] == res.products[0].uri.rsplit("/", 1)[0] for p in ql)
    rows = {r.filename: r for r in cat.list_products(kind="quicklook")}
    assert rows["c_peak.png"].parent_id == res.products[0].product_id
    assert rows["m_map.png"].parent_id == res.products[1].product_id
    assert rows["c_peak.png"].content_type == "image/png"
    # deterministic PNGs: re-running everything is a no-op
    again = publish_products(store, cat, with_quicklooks(specs[:2], tmp_path / "ql2"))
    assert {p.action for p in again.products} == {"unchanged"}


def test_concurrent_publishes(backend, tmp_path, catalog_url_for_backend):
    """8 different products in parallel + 2 publishes of the same product: no lost rows."""
    store, cat = backend
    specs = [cube_file(small_cube(tmp_path / f"p{i}" / "cube.fits", seed=10 + i), product=f"co{i}")
             for i in range(8)]
    same = [cube_file(small_cube(tmp_path / f"s{i}" / "same.fits", seed=30 + i), product="hcn") for i in range(2)]
    errors: list[BaseException] = []

    def work(spec):
        try:
            c = Catalog.from_url(catalog_url_for_backend)
            publish_products(store, c, [spec])
            c.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in specs + same]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    rows = cat.list_products(current_only=False)
    assert len({r.product for r in rows if r.product.startswith("co")}) == 8
    hcn = [r for r in rows if r.product == "hcn"]
    assert sorted(r.version for r in hcn) == [1, 2] and sum(r.is_current for r in hcn) == 1
    assert temps(store) == [] and verify_products(store, cat).healthy


def test_same_bytes_in_parallel_give_one_row(backend, tmp_path, catalog_url_for_backend):
    store, cat = backend
    spec = cube_file(small_cube(tmp_path / "same.fits", seed=40))
    out: list = []

    def work():
        c = Catalog.from_url(catalog_url_for_backend)
        out.append(publish_products(store, c, [spec]).products[0])
        c.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(p.action for p in out) == ["published", "unchanged"]
    assert cat.count() == 1 and len(visible(store)) == 1


def test_s3_outage_then_retry_succeeds(moto_s3, pg_url, tmp_path, monkeypatch):
    """S3 endpoint down mid-publish -> StoreError, nothing catalogued; back up -> retry works."""
    from urllib.parse import urlparse

    from tests.fixtures.services import aws_conn_json

    up = urlparse(moto_s3.endpoint_url)
    proxy = TcpProxy(up.hostname, up.port).start()
    monkeypatch.setenv("AIRFLOW_CONN_FLAKY_S3", aws_conn_json(f"http://127.0.0.1:{proxy.port}"))
    store = ProductStore.from_uri(f"s3://{moto_s3.bucket}/flaky", conn_id="flaky_s3")
    cat = Catalog.from_url(pg_url)
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=50))

    def outage(step):
        if step == "after_temp_upload":
            proxy.stop()

    try:
        with pytest.raises(StoreError, match=f"S3 endpoint http://127.0.0.1:{proxy.port} failed"):
            publish_products(store, cat, [spec], fault=outage)
        assert cat.count() == 0
        proxy.start()
        res = publish_products(store, cat, [spec])
        assert res.products[0].action == "published" and cat.count() == 1
        assert temps(store) == [] and verify_products(store, cat).healthy
    finally:
        proxy.stop()
        cat.close()


def test_postgres_outage_then_retry_succeeds(local_store, postgres_url, tmp_path):
    """Catalog down during the transaction -> StoreError, no current object; back up -> retry works."""
    proxy = TcpProxy("127.0.0.1", 5432).start()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cat = Catalog.from_url(url)
    cat_direct = Catalog.from_url(postgres_url)
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=60), target="ngc9999")

    def outage(step):
        if step == "before_commit":
            proxy.stop()

    try:
        with pytest.raises(StoreError, match="catalog"):
            publish_products(local_store, cat, [spec], fault=outage)
        assert cat_direct.list_products(target="ngc9999") == []
        proxy.start()
        res = publish_products(local_store, cat, [spec])
        assert res.products[0].action == "published"
        assert len(cat_direct.list_products(target="ngc9999")) == 1
        assert temps(local_store) == [] and visible(local_store) == ["ngc9999/12m+7m/co21/c.fits"]
    finally:
        proxy.stop()
        cat.close()
        cat_direct.close()


def test_a_catalogued_object_is_never_overwritten_by_another_identity(backend, tmp_path):
    store, cat = backend
    path = small_cube(tmp_path / "c.fits", seed=70)
    first = publish_products(store, cat, [cube_file(path)]).products[0]
    small_cube(path, seed=71)  # other bytes, same file name, but filed under another stage
    with pytest.raises(StoreError, match="already catalogued"):
        publish_products(store, cat, [cube_file(path, stage="other_stage")])
    assert store.hash_object(store.key_from_uri(first.uri))[0] == first.sha256
    assert cat.count() == 1 and temps(store) != []  # the verified upload is kept for a retry
    with pytest.raises(StoreError, match="would both be stored as"):
        publish_products(store, cat, [cube_file(path), cube_file(path, stage="x")])


def test_republish_after_after_commit_crash_cleans_temps(backend, tmp_path):
    store, cat = backend
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=72))
    with pytest.raises(Boom):
        publish_products(store, cat, [spec], fault=fail_at("after_commit"))
    assert cat.count() == 1 and temps(store) != []
    res = publish_products(store, cat, [spec])
    assert res.products[0].action == "unchanged" and res.temp_keys_removed == 1 and temps(store) == []


def test_failure_of_the_commit_itself(backend, tmp_path):
    """The database refuses the COMMIT (not a hook inside the transaction): same convergence."""
    import sqlalchemy as sa

    store, cat = backend
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=80))
    armed = {"on": True}

    def refuse_commit(conn):
        if armed["on"]:
            armed["on"] = False
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    sa.event.listen(cat.engine, "commit", refuse_commit)
    try:
        with pytest.raises(StoreError, match="catalog write failed.*server closed"):
            publish_products(store, cat, [spec])
    finally:
        sa.event.remove(cat.engine, "commit", refuse_commit)
    assert cat.count() == 0 and visible(store) == []  # the new object was rolled back
    res = publish_products(store, cat, [spec])
    assert res.products[0].action == "published" and cat.count() == 1 and temps(store) == []


def test_stale_temporaries_and_unfinished_uploads_are_swept(backend, tmp_path):
    """Leftovers of killed attempts with OTHER bytes (other temp keys) go once they are stale."""
    from datetime import timedelta

    store, cat = backend
    old = small_cube(tmp_path / "old" / "c.fits", seed=90)
    from phangs_operators.stores.names import temp_key
    from phangs_operators.stores.objectstore import sha256_file

    sha_old = sha256_file(old)[0]
    store.upload(old, temp_key("ngc0628", "12m+7m", "co21", "c.fits", sha_old), sha256=sha_old)
    if hasattr(store, "_client"):  # an unfinished multipart upload of a killed S3 attempt
        store._client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.prefix}/_tmp/ngc0628/12m+7m/co21/x/c.fits")
    else:  # a hidden partial file of a killed local upload
        (store.base / "_tmp/ngc0628/12m+7m/co21/.c.fits.part-dead").write_bytes(b"partial")
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=91))
    publish_products(store, cat, [spec])  # default grace period: the leftovers stay
    assert len(temps(store)) == 1
    publish_products(store, cat, [cube_file(small_cube(tmp_path / "c.fits", seed=92))],
                     stale_temp_after=timedelta(seconds=-1))
    assert temps(store) == []
    if hasattr(store, "_client"):
        ups = store._client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix + "/").get("Uploads", [])
        assert ups == []
    else:
        assert not (store.base / "_tmp/ngc0628/12m+7m/co21/.c.fits.part-dead").exists()


def test_credentials_never_reach_the_catalog_or_the_logs(moto_s3, pg_url, tmp_path, monkeypatch, caplog):
    import json as _json
    import logging

    import sqlalchemy as sa

    secret = "Zq9-very-secret-key-Zq9"
    monkeypatch.setenv("AIRFLOW_CONN_SECRET_S3", _json.dumps({
        "conn_type": "aws", "login": "AKIAEXAMPLEKEY", "password": secret,
        "extra": {"endpoint_url": moto_s3.endpoint_url, "region_name": "us-east-1"}}))
    caplog.set_level(logging.DEBUG, logger="phangs_operators")
    store = ProductStore.from_uri(f"s3://{moto_s3.bucket}/sec", conn_id="secret_s3")
    cat = Catalog.from_url(pg_url)
    spec = cube_file(small_cube(tmp_path / "c.fits", seed=95),
                     inputs=[(f"s3://AKIAEXAMPLEKEY:{secret}@raw/x.ms", None)])
    res = publish_products(store, cat, [spec])
    dump = []
    with cat.engine.connect() as conn:
        for table in ("targets", "runs", "products", "inputs"):
            dump += [str(tuple(r)) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    text = "\n".join(dump) + _json.dumps(res.to_dict()) + caplog.text
    assert secret not in text and "AKIAEXAMPLEKEY" not in text
    assert "s3://raw/x.ms" in text  # the input is recorded, without its credentials
    cat.close()
