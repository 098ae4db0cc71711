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
    """Scan the key set's ``ms_root`` folders for new or changed measurement sets.

    Compares MS fingerprints with the state recorded in the catalog and returns which target
    DAGs to trigger (``triggers``, for ``TriggerDagRunOperator.expand_kwargs``), plus the MS
    that belong to no target (``unknown``: reported, never dropped). Writes nothing: the
    state is recorded by :class:`ArchiveRecordOperator` once the triggers succeeded.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "key_dir", "catalog_url")
    stage = "staging"

    def __init__(self, *, key_dir: str | None = None, catalog_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key_dir, self.catalog_url = key_dir, catalog_url

    def run_routine(self, context):
        from phangs_operators.archive import scan_archive  # noqa: PLC0415

        project, catalog = _open(self.key_dir, self.catalog_url, self.workdir)
        result = scan_archive(project, catalog)
        self.log.info("archive scan: %d new, %d changed, %d unknown, %d unchanged MS; triggering %s",
                      len(result.new), len(result.changed), len(result.unknown), result.unchanged,
                      [t["trigger_dag_id"] for t in result.triggers])
        for item in result.unknown:
            self.log.warning("unknown measurement set (no target in the key set): %s", item["ms"])
        return result.to_dict()


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
