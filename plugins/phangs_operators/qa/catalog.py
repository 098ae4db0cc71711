"""QA reports in the product store and the catalog, and the overview page built from the catalog.

A published report is two catalog products of the target with ``config="qa"``,
``product="report"``, ``kind="qa_report"`` and ``stage`` ``report_json`` / ``report_html``
(figures stay next to the products on the working filesystem: a store version folder
``_vN/`` per changed file would break the relative image links). ``report.json`` records the
absolute folder of the full report (``report_dir``), which the overview page links to.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

QA_CONFIG, QA_PRODUCT, QA_KIND = "qa", "report", "qa_report"


def publish_report(report_json: str | os.PathLike[str], report_html: str | os.PathLike[str], *, target: str,
                   products_uri: str, catalog_url: str, conn_id: str | None = None,
                   keyset_hash: str | None = None, run: Any = None) -> dict[str, Any]:
    """Upload ``report.json`` + ``report.html`` and record them in the catalog (atomically)."""
    from phangs_operators.stores import Catalog, ProductFile, ProductStore, Provenance, publish_products  # noqa: PLC0415

    store = ProductStore.from_uri(products_uri, conn_id=conn_id)
    catalog = Catalog.from_url(catalog_url)
    prov = Provenance(keyset_hash=keyset_hash, recipe="qa_report")
    specs = [ProductFile(path=Path(p), target=target, config=QA_CONFIG, product=QA_PRODUCT, stage=stage,
                         kind=QA_KIND, resolution="", provenance=prov)
             for p, stage in ((report_json, "report_json"), (report_html, "report_html"))]
    try:
        return publish_products(store, catalog, specs, run=run).to_dict()
    finally:
        catalog.close()


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def reports_from_catalog(catalog_url: str, *, products_uri: str | None = None, conn_id: str | None = None,
                         dest: str | os.PathLike[str] | None = None) -> list[Path]:
    """Local ``report.json`` files of the current QA reports listed in the catalog.

    Reports in a local store are read in place; others are downloaded to ``dest`` (a new
    temporary folder by default) through the product store at ``products_uri``.
    """
    from phangs_operators.stores import Catalog, ProductStore  # noqa: PLC0415

    catalog = Catalog.from_url(catalog_url)
    try:
        rows = [r for r in catalog.list_products(kind=QA_KIND) if r.stage == "report_json"]
    finally:
        catalog.close()
    out: list[Path] = []
    store = None
    for row in rows:
        local = _local_path(row.uri)
        if local is not None and local.is_file():
            out.append(local)
            continue
        if products_uri is None:
            log.warning("QA report %s is not local and no products URI was given: skipped", row.uri)
            continue
        store = store or ProductStore.from_uri(products_uri, conn_id=conn_id)
        folder = Path(dest or tempfile.mkdtemp(prefix="qa_reports_")) / row.target
        folder.mkdir(parents=True, exist_ok=True)
        store.download(store.key_from_uri(row.uri), folder / "report.json")
        out.append(folder / "report.json")
    return out


def overview_from_catalog(catalog_url: str, out_html: str | os.PathLike[str], **kwargs: Any) -> str:
    """The overview page of every target whose QA report is in the catalog."""
    from phangs_operators.qa.report import build_overview  # noqa: PLC0415

    reports = reports_from_catalog(catalog_url, **kwargs)
    return build_overview(reports, out_html, link_for=_report_dir_link)


def _report_dir_link(report_json: Path, doc: dict[str, Any]) -> Path:
    """The full report (next to the products) when it still exists, else the catalogued HTML."""
    full = Path(doc.get("report_dir") or "") / doc.get("html", "report.html")
    return full if doc.get("report_dir") and full.is_file() else report_json.with_name(doc.get("html", "report.html"))


__all__ = ["overview_from_catalog", "publish_report", "reports_from_catalog"]
