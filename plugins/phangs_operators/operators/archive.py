"""Operators of the archive watcher DAG (``phangs_archive_watch``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phangs_operators.operators.base import PhangsBaseOperator


def _open(key_dir: str | None, catalog_url: str | None, workdir: str):
    from phangs_operators.dag_factory import key_dir_from_environment  # noqa: PLC0415
    from phangs_operators.keys import load_project  # noqa: PLC0415
    from phangs_operators.operators.publish import resolve_store_settings  # noqa: PLC0415
    from phangs_operators.stores import Catalog  # noqa: PLC0415

    project = load_project(key_dir or key_dir_from_environment())
    _, _, url = resolve_store_settings(None, catalog_url, workdir)
    return project, Catalog.from_url(url)


class ArchiveScanOperator(PhangsBaseOperator):
    """Scan the key set's ``ms_root`` folders and the S3 archive prefixes for new or changed MS.

    Compares MS fingerprints with the state recorded in the catalog and returns which target
    DAGs to trigger (``triggers``, for ``TriggerDagRunOperator.expand_kwargs``), plus the MS
    that belong to no target (``unknown``: reported, never dropped). Writes nothing: the
    state is recorded by :class:`ArchiveRecordOperator` once the triggers succeeded.

    Parameters
    ----------
    archive_uris
        S3 archive roots (``s3://bucket/prefix``; a list or a comma/space separated string).
        Default: ``$PHANGS_ARCHIVE_URI``, else the Airflow Variable ``phangs_archive_uri``,
        else none (folders only).
    archive_conn_id
        Airflow ``aws`` connection of the archive. Default: ``$PHANGS_ARCHIVE_CONN_ID``, the
        Variable ``phangs_archive_conn_id``, else ``phangs_archive``.
    min_age_s
        Leave S3 MS with an object younger than this [s] for a later scan (uploads in
        progress). Default ``$PHANGS_ARCHIVE_MIN_AGE_S`` or 0.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "key_dir", "catalog_url",
                                      "archive_uris", "archive_conn_id")
    stage = "staging"

    def __init__(self, *, key_dir: str | None = None, catalog_url: str | None = None,
                 archive_uris: list[str] | str | None = None, archive_conn_id: str | None = None,
                 min_age_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_dir, self.catalog_url = key_dir, catalog_url
        self.archive_uris, self.archive_conn_id, self.min_age_s = archive_uris, archive_conn_id, min_age_s

    def run_routine(self, context):
        import os  # noqa: PLC0415

        from phangs_operators.archive import S3Archive, archive_settings, scan_archive  # noqa: PLC0415

        project, catalog = _open(self.key_dir, self.catalog_url, self.workdir)
        uris, conn_id = archive_settings(self.archive_uris, self.archive_conn_id)
        min_age = self.min_age_s if self.min_age_s is not None else float(os.environ.get("PHANGS_ARCHIVE_MIN_AGE_S", 0))
        archives = [S3Archive(uri, conn_id) for uri in uris]
        result = scan_archive(project, catalog, archives, min_age_s=min_age)
        for a in result.archives:
            self.log.info("S3 archive %s at %s: %d MS in %d objects (%d list pages)", a["uri"], a["endpoint"],
                          a["ms"], a["objects"], a["pages"])
        self.log.info("archive scan: %d new, %d changed, %d unknown, %d unchanged, %d settling MS; triggering %s",
                      len(result.new), len(result.changed), len(result.unknown), result.unchanged,
                      len(result.settling), [t["trigger_dag_id"] for t in result.triggers])
        for item in result.unknown:
            self.log.warning("unknown measurement set (no target in the key set): %s", item["ms"])
        return result.to_dict()


class ArchiveFetchOperator(PhangsBaseOperator):
    """Download the new or changed S3 measurement sets of a scan before their targets start.

    Each goes to ``<first ms_root>/<ms_file_key file name>`` (or ``download_root``, which must
    be an ``ms_root`` search path), atomically (temporary folder, checked, renamed). Returns
    the scan unchanged plus ``downloaded``; a failed download fails the task, so nothing is
    triggered or recorded and the next scan tries again.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "scan", "key_dir", "download_root")
    stage = "staging"

    def __init__(self, *, scan: Any, key_dir: str | None = None, download_root: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scan, self.key_dir, self.download_root = scan, key_dir, download_root

    def run_routine(self, context):
        import os  # noqa: PLC0415

        from phangs_operators.archive import fetch_archive  # noqa: PLC0415
        from phangs_operators.dag_factory import key_dir_from_environment  # noqa: PLC0415
        from phangs_operators.keys import load_project  # noqa: PLC0415

        project = load_project(self.key_dir or key_dir_from_environment())
        scan = dict(self.scan)
        scan["downloaded"] = fetch_archive(project, scan,
                                           dest_root=self.download_root or os.environ.get("PHANGS_ARCHIVE_DOWNLOAD_ROOT"))
        return scan


class ArchiveRecordOperator(PhangsBaseOperator):
    """Record the scanned fingerprints in the catalog after the target DAGs were triggered."""

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "scan", "catalog_url")
    stage = "staging"

    def __init__(self, *, scan: Any, catalog_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scan, self.catalog_url = scan, catalog_url

    def run_routine(self, context):
        from phangs_operators.archive import record_scan  # noqa: PLC0415
        from phangs_operators.operators.publish import resolve_store_settings  # noqa: PLC0415
        from phangs_operators.stores import Catalog  # noqa: PLC0415

        _, _, url = resolve_store_settings(None, self.catalog_url, self.workdir)
        return {"recorded": record_scan(Catalog.from_url(url), dict(self.scan))}
