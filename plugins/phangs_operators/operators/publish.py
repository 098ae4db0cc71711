"""Publish operator: upload finished products and write their catalog rows, atomically."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phangs_operators.errors import StoreError
from phangs_operators.operators.base import PhangsBaseOperator

DEFAULT_PRODUCTS_URI = "file://" + str(Path(os.environ.get("PHANGS_DEMO_DIR", "/tmp/phangs-demo")) / "products")


def resolve_store_settings(products_uri: str | None, catalog_url: str | None,
                           workdir: str) -> tuple[str, str | None, str]:
    """(products URI, store conn id, catalog URL or conn id) for a run.

    Order: explicit arguments > ``$PHANGS_PRODUCTS_URI`` / ``$PHANGS_CATALOG_URL`` > Airflow
    Variable ``phangs_products_uri`` / connection ``phangs_catalog`` > a local folder and a
    SQLite catalog next to the working directory (the embedded default).
    """
    uri = products_uri or os.environ.get("PHANGS_PRODUCTS_URI")
    catalog = catalog_url or os.environ.get("PHANGS_CATALOG_URL")
    if not uri or not catalog:
        try:
            from airflow.sdk import Variable  # noqa: PLC0415

            uri = uri or Variable.get("phangs_products_uri", default=None)
            catalog = catalog or Variable.get("phangs_catalog_url", default=None)
        except Exception:  # noqa: BLE001 - no Airflow context: fall back to the defaults
            pass
    base = Path(workdir).resolve().parent
    uri = uri or (base / "products").as_uri()
    catalog = catalog or f"sqlite:///{base / 'catalog.db'}"
    conn_id = os.environ.get("PHANGS_PRODUCTS_CONN_ID", "phangs_products") if uri.startswith("s3://") else None
    return uri, conn_id, catalog


_KIND_RULES: tuple[tuple[str, str], ...] = (
    (r"^noise$", "noise"),
    (r"(^|_)pb$", "pb"),
    (r"^(strict|broad|flat\w*)mask$", "mask"),
    (r"^coverage(2d)?$", "coverage"),
    (r"^emom1wprior$", "emoment"),
    (r"^mom1wprior$", "moment"),
    (r"^vfield$", "vfield"),
    (r"^(strict|broad|flat)\w*_e\w+$", "emoment"),
    (r"^(strict|broad|flat)\w*$", "moment"),
)


def describe(path: str, target: str, config: str, product: str, res: str = "") -> tuple[str, str]:
    """(stage, kind) of a product file from its PHANGS name.

    ``stage`` is the variant after ``{target}_{config}_{product}[_{res}]_`` (``pbcorr_trimmed_k``,
    ``noise``, ``strictmask``, ``strict_mom0``...); ``kind`` its family (cube, noise, mask,
    moment, emoment, coverage, quicklook).
    """
    name = Path(path).name
    stem, suffix = (name[:-5], ".fits") if name.endswith(".fits") else (Path(name).stem, Path(name).suffix)
    prefix = f"{target}_{config}_{product}"
    rest = stem[len(prefix):] if stem.startswith(prefix) else stem
    rest = rest.lstrip("_")
    if res and rest.startswith(res):
        rest = rest[len(res):].lstrip("_")
    if suffix == ".png":
        return (rest or "quicklook"), "quicklook"
    if not rest:
        return "convolved" if res else "cube", "cube"
    for pattern, kind in _KIND_RULES:
        if re.search(pattern, rest):
            return rest, kind
    return rest, "cube"


def collect_files(values: Sequence[Any]) -> list[tuple[str, str]]:
    """(path, resolution tag) of every product file named in a list of XCom records."""
    out: list[tuple[str, str]] = []

    def visit(value: Any, res: str) -> None:
        if isinstance(value, Mapping):
            if value.get("skipped") or value.get("dry_run"):
                return
            res = value.get("res_tag") or res or ""
            for key in ("fits", "cube", "noise", "strictmask", "broadmask", "coverage", "coverage2d"):
                v = value.get(key)
                if isinstance(v, str) and v.endswith(".fits"):
                    out.append((v, res))
            for key in ("maps", "files", "quicklooks"):
                for v in value.get(key) or []:
                    if isinstance(v, str):
                        out.append((v, res))
                    else:
                        visit(v, res)
        elif isinstance(value, str):
            if value.endswith((".fits", ".png")):
                out.append((value, res))
        elif value is not None:
            for v in value:
                visit(v, res)

    for v in values:
        visit(v, "")
    seen: set[str] = set()
    unique = []
    for path, res in out:
        if path not in seen:
            seen.add(path)
            unique.append((path, res))
    return unique


class PublishProductsOperator(PhangsBaseOperator):
    """Upload the finished products of one (target, config, product) to the product store and
    record them in the catalog as one unit (temporary key -> verify -> final key -> catalog
    commit): a retry after a failure at any point converges to one visible copy and one row.

    ``files``: XCom records of the export and derived tasks (paths are picked out of them).
    The store and catalog come from ``products_uri``/``catalog_url``, else
    ``$PHANGS_PRODUCTS_URI``/``$PHANGS_CATALOG_URL``, else the Airflow Variable
    ``phangs_products_uri`` / connection ``phangs_catalog``, else a local folder + SQLite.
    XCom: ``{"products": [{"uri", "version", "sha256", "action"}...]}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "files", "products_uri",
                                      "catalog_url", "target", "config", "product")
    stage = "publish"
    ui_color = "#cce5ff"

    def __init__(self, *, files: Sequence[Any], target: str, config: str, product: str,
                 products_uri: str | None = None, catalog_url: str | None = None,
                 keyset_hash: str | None = None, recipe: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files = files
        self.target, self.config, self.product = target, config, product
        self.products_uri, self.catalog_url = products_uri, catalog_url
        self.keyset_hash, self.recipe = keyset_hash, recipe

    def run_routine(self, context):
        from phangs_operators.stores import (  # noqa: PLC0415
            Catalog,
            ProductFile,
            ProductStore,
            Provenance,
            RunContext,
            publish_products,
        )

        files = collect_files(list(self.files))
        missing = [p for p, _ in files if not Path(p).is_file()]
        if missing:
            raise StoreError(f"products to publish are missing: {missing}")
        uri, conn_id, catalog_url = resolve_store_settings(self.products_uri, self.catalog_url, self.workdir)
        self.log.info("publishing %d files of %s %s %s to %s (catalog %s)", len(files), self.target,
                      self.config, self.product, uri, catalog_url.split("@")[-1])
        store = ProductStore.from_uri(uri, conn_id=conn_id)
        catalog = Catalog.from_url(catalog_url)
        ti = context.get("ti")
        run = RunContext(dag_id=getattr(ti, "dag_id", "manual") or "manual",
                         run_id=getattr(ti, "run_id", "manual") or "manual",
                         task_id=self.task_id, map_index=-1,
                         try_number=int(getattr(ti, "try_number", 1) or 1))
        prov = Provenance(keyset_hash=self.keyset_hash, recipe=self.recipe)
        specs = []
        for p, res in files:
            stage, kind = describe(p, self.target, self.config, self.product, res)
            specs.append(ProductFile(path=Path(p), target=self.target, config=self.config,
                                     product=self.product, stage=stage, kind=kind, resolution=res,
                                     provenance=prov))
        result = publish_products(store, catalog, specs, run=run)
        return result.to_dict()
