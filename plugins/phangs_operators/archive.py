"""Archive-driven processing: find new or changed measurement sets and the targets they feed.

Two kinds of archive are scanned, with the same state table and the same exactly-once rule:

* the ``ms_root`` search paths of the key set (local or shared POSIX folders): every ``*.ms``
  directory is fingerprinted from the relative path, size and mtime of each of its files;
* S3 prefixes (``s3://bucket/prefix``; AWS, MinIO, Ceph RGW, moto), configured outside the key
  set by ``$PHANGS_ARCHIVE_URI`` or the Airflow Variable ``phangs_archive_uri`` (a list of
  URIs), read through an Airflow ``aws`` connection (``$PHANGS_ARCHIVE_CONN_ID`` / Variable
  ``phangs_archive_conn_id``, default ``phangs_archive``; ``endpoint_url`` in its extra). A
  measurement set in object storage is a key prefix whose last component ends in ``.ms``
  (``<prefix>/<project>/<name>.ms/table.dat``, ``.../ANTENNA/table.f0``...); its objects are
  listed with paginated ``ListObjectsV2`` only, and its fingerprint is the SHA-256 over the
  sorted (key relative to the MS, size, ETag) of its objects.

The fingerprints are compared with the state recorded in the catalog (table
``archive_state``, catalog migration 0002; never in memory, so a restarted scheduler or
another worker sees the same history). Each MS is mapped to its target through the
``ms_file_key``: the MS path relative to its root (folder or S3 prefix) is the key's file
name; a mosaic part maps to its whole target, whose DAG runs. An MS no key file knows about
is *reported* (logged and recorded with status ``unknown``), never silently dropped.

CASA reads only local files, so an object-store MS is downloaded before its target is
triggered (:func:`fetch_archive`): into the first ``ms_root`` search path (where the target
DAG looks for it, ``<ms_root>/<file name of the ms_file_key>``), into a hidden temporary
folder first, checked against the listing and renamed into place. A hidden marker next to
it (``.<name>.ms.archive.json``) records its source and fingerprint; the folder scan skips
marked MS, so a downloaded copy is never counted twice.

Exactly once: the trigger run id of a target is derived from the fingerprints that caused it
(``archive__<sha256[:16]>``), so a scan that is repeated before its state was recorded
triggers a run id that already exists, which the trigger skips.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa

from phangs_operators.dag_factory import dag_id_for
from phangs_operators.errors import StoreError
from phangs_operators.keys.model import Project
from phangs_operators.stores.catalog import Catalog, utc_now

log = logging.getLogger(__name__)

#: Airflow connection of the S3 archive unless configured otherwise
DEFAULT_ARCHIVE_CONN_ID = "phangs_archive"
#: objects at least this large [bytes] are downloaded with parallel ranged GETs
_LARGE_OBJECT = 64 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024

archive_state = sa.Table(
    "archive_state", sa.MetaData(),
    sa.Column("ms_path", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("seen_at", sa.Text, nullable=False),
)


class ArchiveError(StoreError):
    """An archive (S3 prefix or download folder) is misconfigured, unreachable or inconsistent."""


# ============================================================================================
# local folders
def fingerprint_ms(ms: str | os.PathLike[str]) -> str:
    """SHA-256 over (relative path, size, mtime_ns) of every file of an MS directory."""
    root = Path(ms)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def marker_path(ms: str | os.PathLike[str]) -> Path:
    """Hidden marker of an MS downloaded from an S3 archive: ``<dir>/.<name>.ms.archive.json``."""
    ms = Path(ms)
    return ms.with_name(f".{ms.name}.archive.json")


def find_measurement_sets(roots: list[Path]) -> list[Path]:
    """Every ``*.ms`` directory under the roots (not descending into an MS nor hidden folders)."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            log.warning("ms_root %s does not exist", root)
            continue
        for dirpath, dirnames, _ in os.walk(root):
            keep = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue  # temporary downloads (.<name>.ms.part-*) and other hidden folders
                if d.endswith(".ms"):
                    found.append(Path(dirpath) / d)
                else:
                    keep.append(d)
            dirnames[:] = keep
    return found


# ============================================================================================
# S3 prefixes
@dataclass(frozen=True)
class S3Object:
    """One object of an MS prefix: key relative to the MS, size [bytes], ETag, modification time."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None


@dataclass
class S3Listing:
    """Measurement sets under an S3 archive root (MS path relative to the root -> its objects)."""

    ms: dict[str, list[S3Object]] = field(default_factory=dict)
    objects: int = 0
    pages: int = 0
    ignored: int = 0


def fingerprint_objects(objects: Sequence[S3Object]) -> str:
    """SHA-256 over the sorted (key relative to the MS, size, ETag) of the objects of an MS."""
    h = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.key):
        h.update(f"{obj.key}\0{obj.size}\0{obj.etag}\n".encode())
    return h.hexdigest()


def split_ms_key(rel: str) -> tuple[str, str] | None:
    """``'proj/x.ms/ANTENNA/table.f0'`` -> ``('proj/x.ms', 'ANTENNA/table.f0')``.

    The MS is the first path component ending in ``.ms`` that has something below it
    (``'x.ms/'`` directory markers give an empty inner key). Keys outside any MS, and keys
    with a hidden component before the MS (temporary uploads), give ``None``.
    """
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if not part or part.startswith("."):
            return None
        if part.endswith(".ms"):
            return "/".join(parts[: i + 1]), "/".join(parts[i + 1:])
    return None


class S3Archive:
    """A read-only S3 archive root ``s3://bucket/prefix`` opened through an Airflow connection.

    Parameters
    ----------
    uri : str
        ``s3://bucket`` or ``s3://bucket/prefix``.
    conn_id : str
        Airflow ``aws`` connection (``endpoint_url``/``region_name`` in its extra).
    page_size : int
        ``MaxKeys`` of each ``ListObjectsV2`` page (S3 returns at most 1000).
    max_workers : int
        Parallel object downloads of :meth:`download`.
    large_object : int
        Objects at least this large [bytes] are downloaded with parallel ranged GETs
        (``download_file``) of ``part_size`` [bytes]; smaller ones with one ``GetObject``
        conditional on their ETag.
    client : botocore S3 client, optional
        Use this client instead of resolving ``conn_id``.
    """

    def __init__(self, uri: str, conn_id: str = DEFAULT_ARCHIVE_CONN_ID, *, page_size: int = 1000,
                 max_workers: int = 8, large_object: int = _LARGE_OBJECT, part_size: int = _CHUNK, client: Any = None) -> None:
        parsed = urlparse(uri or "")
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ArchiveError(f"archive URI {uri!r} is not of the form s3://bucket[/prefix]")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if any(p in ("", ".", "..") for p in self.prefix.split("/")) and self.prefix:
            raise ArchiveError(f"archive URI {uri!r} has an empty, '.' or '..' path component")
        self.uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.conn_id = conn_id
        self.page_size = max(1, min(int(page_size), 1000))
        self.max_workers = max(1, int(max_workers))
        self.large_object = int(large_object)
        self.part_size = max(1024 * 1024, int(part_size))
        self._client = client if client is not None else self._make_client()
        self.endpoint = str(self._client.meta.endpoint_url)

    def __repr__(self) -> str:
        return f"S3Archive({self.uri!r}, conn_id={self.conn_id!r})"

    def _make_client(self) -> Any:
        from botocore.config import Config  # noqa: PLC0415

        from phangs_operators.stores.connections import get_connection  # noqa: PLC0415

        try:
            get_connection(self.conn_id, ("aws", "s3"))  # unknown id -> error, never anonymous access
        except StoreError as exc:
            raise ArchiveError(f"S3 archive {self.uri}: {exc}") from exc
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: PLC0415

        config = Config(connect_timeout=5, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"},
                        max_pool_connections=max(10, 5 * self.max_workers))
        try:
            return S3Hook(aws_conn_id=self.conn_id, config=config).get_conn()
        except Exception as exc:
            raise ArchiveError(f"cannot create an S3 client for the archive {self.uri} from connection "
                               f"{self.conn_id!r}: {exc}") from exc

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """botocore errors -> one :class:`ArchiveError` naming the bucket, prefix and endpoint."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        where = f"S3 archive {self.uri} at {self.endpoint} (bucket {self.bucket!r}, connection {self.conn_id!r})"
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ArchiveError(f"{what} failed on {where}: {err.get('Code')} {err.get('Message', '')}".rstrip()) from exc
        except BotoCoreError as exc:
            raise ArchiveError(f"{what} failed on {where}: {exc}") from exc

    def _list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def uri_of(self, ms_rel: str) -> str:
        """``s3://bucket/prefix/<ms_rel>`` (the MS's identity in the state table)."""
        return f"{self.uri}/{ms_rel}"

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                      PaginationConfig={"PageSize": self.page_size})

    def list_ms(self) -> S3Listing:
        """Every MS under the root with its objects (paginated ``ListObjectsV2``)."""
        start = self._list_prefix()
        out = S3Listing()
        with self._errors(f"ListObjectsV2 of {self.uri}/"):
            for page in self._pages(start):
                out.pages += 1
                for obj in page.get("Contents", []):
                    out.objects += 1
                    split = split_ms_key(obj["Key"][len(start):])
                    if split is None:
                        out.ignored += 1
                        continue
                    ms_rel, inner = split
                    out.ms.setdefault(ms_rel, []).append(S3Object(
                        inner, int(obj["Size"]), str(obj.get("ETag", "")).strip('"'), obj.get("LastModified")))
        return out

    def list_one(self, ms_rel: str) -> list[S3Object]:
        """The objects of one MS (paginated)."""
        start = f"{self._list_prefix()}{ms_rel}/"
        objects: list[S3Object] = []
        with self._errors(f"ListObjectsV2 of {self.uri_of(ms_rel)}/"):
            for page in self._pages(start):
                for obj in page.get("Contents", []):
                    objects.append(S3Object(obj["Key"][len(start):], int(obj["Size"]),
                                            str(obj.get("ETag", "")).strip('"'), obj.get("LastModified")))
        return objects

    def _get(self, s3key: str, obj: S3Object, dest: Path) -> None:
        """Download one object (``If-Match`` its listed ETag, so a replaced object fails)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if obj.size >= self.large_object:
            from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

            self._client.download_file(self.bucket, s3key, str(dest),
                                       Config=TransferConfig(multipart_threshold=self.large_object,
                                                             multipart_chunksize=self.part_size,
                                                             max_concurrency=4, use_threads=True))
        else:
            kwargs = {"IfMatch": f'"{obj.etag}"'} if obj.etag else {}
            body = self._client.get_object(Bucket=self.bucket, Key=s3key, **kwargs)["Body"]
            with open(dest, "wb") as f:
                while chunk := body.read(_CHUNK):
                    f.write(chunk)
        size = dest.stat().st_size
        if size != obj.size:
            raise ArchiveError(f"download of s3://{self.bucket}/{s3key} from {self.endpoint} is incomplete: "
                               f"{size} of {obj.size} bytes")

    def download(self, ms_rel: str, dest: Path, fingerprint: str) -> dict[str, Any]:
        """Download the MS ``ms_rel`` to the directory ``dest``, atomically.

        The objects go to a hidden ``.<name>.ms.part-*`` folder next to ``dest``; the MS is
        listed again afterwards and must still have ``fingerprint`` (else it changed while
        being copied and :class:`ArchiveError` is raised: the next scan picks it up again);
        then the marker is written and the folder renamed to ``dest`` (a previous copy is
        renamed away first and removed). A ``dest`` that was not downloaded by the archive
        watch (no marker) is never replaced.
        """
        dest = Path(dest)
        marker = marker_path(dest)
        source = self.uri_of(ms_rel)
        if dest.exists() and not marker.exists():
            raise ArchiveError(f"refusing to replace {dest} with {source}: it was not downloaded from an archive "
                               f"(no {marker.name}); move it away or remove {source} from the archive")
        if dest.exists():
            with contextlib.suppress(OSError, ValueError):
                known = json.loads(marker.read_text())
                if known.get("source") == source and known.get("fingerprint") == fingerprint:
                    return {"ms": source, "local_path": str(dest), "objects": 0, "bytes": 0, "reused": True}
        objects = self.list_one(ms_rel)
        if fingerprint_objects(objects) != fingerprint:
            raise ArchiveError(f"{source} changed since it was scanned; it is picked up by the next scan")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        start = self._list_prefix() + ms_rel + "/"
        try:
            tmp.mkdir()
            with self._errors(f"download of {source}/"), cf.ThreadPoolExecutor(self.max_workers) as pool:
                futures = []
                for obj in objects:
                    if not obj.key or obj.key.endswith("/"):  # directory marker objects
                        (tmp / obj.key).mkdir(parents=True, exist_ok=True)
                        continue
                    parts = obj.key.split("/")
                    if any(p in ("", ".", "..") for p in parts):
                        raise ArchiveError(f"{source}/{obj.key}: unsafe object key inside a measurement set")
                    futures.append(pool.submit(self._get, start + obj.key, obj, tmp.joinpath(*parts)))
                for fut in futures:
                    fut.result()
            if fingerprint_objects(self.list_one(ms_rel)) != fingerprint:
                raise ArchiveError(f"{source} changed while it was downloaded; it is picked up by the next scan")
            part = marker.with_name(f"{marker.name}.part-{uuid.uuid4().hex[:8]}")
            part.write_text(json.dumps({"source": source, "fingerprint": fingerprint, "endpoint": self.endpoint,
                                        "objects": len(objects), "downloaded_at": utc_now()}, sort_keys=True))
            os.replace(part, marker)
            if dest.exists():
                os.rename(dest, old)
            os.rename(tmp, dest)
        except OSError as exc:
            raise ArchiveError(f"cannot download {source} to {dest}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return {"ms": source, "local_path": str(dest), "objects": len(objects),
                "bytes": sum(o.size for o in objects), "reused": False}


def parse_archive_uris(value: Any, source: str = "archive URI setting") -> list[str]:
    """A list of ``s3://`` URIs from a list, a JSON list or a comma/space/newline separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ArchiveError(f"{source}: {text!r} is not a JSON list of s3:// URIs ({exc})") from exc
        else:
            value = [u for u in re.split(r"[\s,]+", text) if u]
    if not isinstance(value, list | tuple) or not all(isinstance(u, str) for u in value):
        raise ArchiveError(f"{source}: expected a list of s3:// URIs, got {value!r}")
    for uri in value:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ArchiveError(f"{source}: {uri!r} is not an s3://bucket[/prefix] URI")
    return list(value)


def archive_settings(uris: Any = None, conn_id: str | None = None) -> tuple[list[str], str]:
    """(S3 archive URIs, connection id) to scan.

    Order: explicit arguments > ``$PHANGS_ARCHIVE_URI`` / ``$PHANGS_ARCHIVE_CONN_ID`` >
    Airflow Variables ``phangs_archive_uri`` / ``phangs_archive_conn_id`` > none (folders
    only) and connection ``phangs_archive``.
    """
    source = "argument archive_uris"
    if uris is None and os.environ.get("PHANGS_ARCHIVE_URI") is not None:
        uris, source = os.environ["PHANGS_ARCHIVE_URI"], "$PHANGS_ARCHIVE_URI"
    conn_id = conn_id or os.environ.get("PHANGS_ARCHIVE_CONN_ID")
    if uris is None or not conn_id:
        try:
            from airflow.sdk import Variable  # noqa: PLC0415

            if uris is None:
                uris, source = Variable.get("phangs_archive_uri", default=None), "Airflow Variable phangs_archive_uri"
            conn_id = conn_id or Variable.get("phangs_archive_conn_id", default=None)
        except Exception:  # noqa: BLE001 - no Airflow context: folders only, default connection
            pass
    return parse_archive_uris(uris, source), conn_id or DEFAULT_ARCHIVE_CONN_ID


# ============================================================================================
# scan, fetch, record
@dataclass
class ScanResult:
    """What a scan found. ``triggers`` are ready for ``TriggerDagRunOperator.expand_kwargs``.

    ``settling`` are S3 MS with an object younger than ``min_age_s`` (probably still being
    uploaded): neither triggered nor recorded, so a later scan takes them.
    """

    new: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    triggers: list[dict[str, Any]] = field(default_factory=list)
    settling: list[dict[str, Any]] = field(default_factory=list)
    archives: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ensure_table(catalog: Catalog) -> None:
    """The table comes with catalog migration 0002; opening the catalog migrates it."""
    if catalog.schema_version() < 2:
        catalog.migrate()


def _ms_index(project: Project) -> dict[Path, str]:
    """Resolved MS path -> whole target (a mosaic part maps to its mosaic)."""
    index: dict[Path, str] = {}
    for entry in project.ms_entries():
        whole = project.mosaic_of(entry.target) or entry.target
        for cand in project.ms_candidates(entry):
            index[cand.resolve()] = whole
    return index


def _filename_index(project: Project) -> dict[str, str]:
    """ms_file_key file name (relative to an ms_root, normalised) -> whole target."""
    return {posixpath.normpath(entry.filename.replace("\\", "/")).strip("/"):
            project.mosaic_of(entry.target) or entry.target for entry in project.ms_entries()}


def scan_archive(project: Project, catalog: Catalog, archives: Sequence[S3Archive] = (), *,
                 min_age_s: float = 0.0, now: datetime | None = None) -> ScanResult:
    """Compare the MS under the ``ms_root`` paths and the S3 archives with the recorded state.

    Writes nothing. An unreachable or misconfigured archive raises :class:`ArchiveError`
    (nothing is triggered or recorded from a partial view).
    """
    _ensure_table(catalog)
    found: list[dict[str, Any]] = []  # {"ms", "fingerprint", "target", ...}
    index = _ms_index(project)
    for ms in find_measurement_sets(project.roots.get("ms_root", [])):
        if marker_path(ms).exists():
            continue  # a copy downloaded from an S3 archive: that archive's entry stands for it
        found.append({"ms": str(ms.resolve()), "fingerprint": fingerprint_ms(ms), "target": index.get(ms.resolve())})
    result = ScanResult()
    names = _filename_index(project)
    now = now or datetime.now(UTC)
    for archive in archives:
        listing = archive.list_ms()
        result.archives.append({"uri": archive.uri, "endpoint": archive.endpoint, "ms": len(listing.ms),
                                "objects": listing.objects, "pages": listing.pages, "ignored": listing.ignored})
        for ms_rel, objects in sorted(listing.ms.items()):
            item = {"ms": archive.uri_of(ms_rel), "fingerprint": fingerprint_objects(objects),
                    "target": names.get(ms_rel), "archive": archive.uri, "conn_id": archive.conn_id,
                    "relpath": ms_rel}
            newest = max((o.last_modified for o in objects if o.last_modified is not None), default=None)
            if min_age_s > 0 and newest is not None and (now - newest).total_seconds() < min_age_s:
                result.settling.append(item)
                continue
            found.append(item)
    with catalog.engine.connect() as conn:
        state = {row.ms_path: (row.fingerprint, row.status) for row in conn.execute(sa.select(archive_state))}
    per_target: dict[str, list[str]] = {}
    for item in found:
        key, fp, target = item["ms"], item["fingerprint"], item["target"]
        seen_fp, seen_status = state.get(key, (None, None))
        if seen_fp == fp and not (seen_status == "unknown" and target is not None):
            result.unchanged += 1
            continue
        if target is None:
            log.warning("measurement set %s belongs to no target of the key set %s: reported, not run",
                        key, project.master_key)
            result.unknown.append(item)
            continue
        (result.changed if key in state else result.new).append(item)
        per_target.setdefault(target, []).append(f"{key}\0{fp}")
    for item in result.settling:
        log.info("measurement set %s has objects younger than %.0f s: left for a later scan", item["ms"], min_age_s)
    for target, items in sorted(per_target.items()):
        digest = hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]
        result.triggers.append({
            "trigger_dag_id": dag_id_for(target),
            "trigger_run_id": f"archive__{digest}",
            "conf": {},
        })
    return result


def download_root(project: Project, override: str | os.PathLike[str] | None = None) -> Path:
    """Where object-store MS are downloaded: the first ``ms_root`` search path (or ``override``,
    which must be one of them, since the target DAGs look for their MS there)."""
    roots = project.roots.get("ms_root", [])
    if not roots:
        raise ArchiveError(f"the key set {project.master_key} sets no ms_root: an MS downloaded from an S3 "
                           f"archive could not be found by the target DAGs")
    if override is None:
        return roots[0]
    chosen = Path(override)
    if chosen.resolve() not in {r.resolve() for r in roots}:
        raise ArchiveError(f"archive download folder {chosen} is not an ms_root search path of "
                           f"{project.master_key} ({', '.join(map(str, roots))})")
    return chosen


def fetch_archive(project: Project, scan: dict[str, Any], *, dest_root: str | os.PathLike[str] | None = None,
                  archives: dict[str, S3Archive] | None = None) -> list[dict[str, Any]]:
    """Download every new or changed S3 MS of a known target to ``<download root>/<file name>``.

    Run after :func:`scan_archive` and before the targets are triggered; a failed download
    raises (nothing is triggered or recorded, the next scan tries again). ``archives`` maps
    archive URIs to open :class:`S3Archive` (default: opened from the scan's URI and conn id).
    """
    items = [i for status in ("new", "changed") for i in scan.get(status, [])
             if i.get("archive") and i.get("target")]
    if not items:
        return []
    root = download_root(project, dest_root)
    opened = dict(archives or {})
    done = []
    for item in items:
        archive = opened.get(item["archive"])
        if archive is None:
            archive = opened[item["archive"]] = S3Archive(item["archive"], item.get("conn_id") or DEFAULT_ARCHIVE_CONN_ID)
        dest = root.joinpath(*item["relpath"].split("/"))
        info = archive.download(item["relpath"], dest, item["fingerprint"])
        log.info("downloaded %s -> %s (%d objects, %d bytes%s)", info["ms"], dest, info["objects"], info["bytes"],
                 ", already present" if info["reused"] else "")
        done.append(info)
    return done


def record_scan(catalog: Catalog, scan: dict[str, Any]) -> int:
    """Record the fingerprints of a scan (after its targets were triggered); idempotent."""
    _ensure_table(catalog)
    run_of = {t["trigger_dag_id"]: t["trigger_run_id"] for t in scan.get("triggers", [])}
    rows = []
    for status in ("new", "changed", "unknown"):
        for item in scan.get(status, []):
            target = item.get("target")
            run_id = run_of.get(dag_id_for(target)) if target else None
            rows.append({"ms_path": item["ms"], "fingerprint": item["fingerprint"], "target": target,
                         "status": "unknown" if status == "unknown" else "triggered",
                         "run_id": run_id, "seen_at": utc_now()})
    with catalog.transaction() as conn:
        for row in rows:
            conn.execute(archive_state.delete().where(archive_state.c.ms_path == row["ms_path"]))
            conn.execute(archive_state.insert().values(**row))
    return len(rows)
