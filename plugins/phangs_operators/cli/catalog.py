"""List, show and verify published products (``phangs catalog``).

The catalog is a SQLAlchemy URL (``sqlite:////abs/catalog.db``, ``postgresql://...``) or an
Airflow ``postgres`` connection id: ``--catalog``, else ``$PHANGS_CATALOG_URL`` (as the pipeline), else the
connection ``phangs_catalog``. ``verify`` re-hashes every catalogued object; the store is
``--store`` (``file:///dir`` or ``s3://bucket/prefix`` with ``--store-conn``), else it is
derived from each product's URI (S3 buckets through ``--store-conn``, default
``phangs_products``). Exit code 1 when anything is missing or damaged.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from phangs_operators.errors import StoreError


def register(subparsers, name: str, help_text: str) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--catalog", default=None, metavar="URL_OR_CONN",
                        help="catalog URL or Airflow connection id (default: $PHANGS_CATALOG_URL or phangs_catalog)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n")[0],
                              epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", parents=[common], help="list products (current versions by default)")
    ls.add_argument("--target", help="only this target")
    ls.add_argument("--kind", help="only this kind (cube, noise, mask, moment, emoment, quicklook...)")
    ls.add_argument("--all-versions", action="store_true", help="include superseded versions")
    ls.set_defaults(func=_run_list)
    sh = sub.add_parser("show", parents=[common], help="every catalogued field of one product")
    sh.add_argument("uri", help="product URI as listed (s3://... or file://...)")
    sh.set_defaults(func=_run_show)
    ve = sub.add_parser("verify", parents=[common], help="re-hash objects against the catalog")
    ve.add_argument("--store", default=os.environ.get("PHANGS_STORE"),
                    help="store base URI (default: $PHANGS_STORE, else derived from each URI)")
    ve.add_argument("--store-conn", default=None, help="Airflow aws connection id for s3:// stores")
    ve.add_argument("--target", help="only this target")
    ve.add_argument("--current-only", action="store_true", help="only current versions")
    ve.set_defaults(func=_run_verify)


def _catalog(args):
    from phangs_operators.stores import Catalog

    # read-only use: no migrations (works with a read-only database role)
    cat = Catalog.from_url(args.catalog or os.environ.get("PHANGS_CATALOG_URL") or os.environ.get("PHANGS_CATALOG") or "phangs_catalog", migrate=False)
    if cat.schema_version() == 0:
        cat.close()
        raise StoreError(f"catalog {cat.url} has no schema yet (nothing was ever published there)")
    return cat


def _run_list(args) -> int:
    cat = _catalog(args)
    try:
        rows = cat.list_products(target=args.target, kind=args.kind, current_only=not args.all_versions)
    finally:
        cat.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
        return 0
    if not rows:
        print("no products")
        return 0
    header = ("target", "config", "product", "kind", "stage", "res", "v", "size", "sha256", "uri")
    table = [header] + [
        (r.target, r.config, r.product, r.kind, r.stage, r.resolution or "-",
         f"{r.version}{'' if r.is_current else ' (old)'}", _size(r.size_bytes), r.sha256[:12], r.uri)
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + str(row[-1]))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)  # pragma: no cover


def _run_show(args) -> int:
    cat = _catalog(args)
    try:
        rec = cat.get_by_uri(args.uri)
    finally:
        cat.close()
    if rec is None:
        raise StoreError(f"{args.uri} is not in the catalog")
    data = rec.to_dict()
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    for key, value in data.items():
        if key == "inputs":
            print(f"{'inputs':16s}")
            for uri, sha in value:
                print(f"  {uri}  {sha or '-'}")
            continue
        print(f"{key:16s}{json.dumps(value) if isinstance(value, list | dict) else value}")
    return 0


def _resolver(args):
    from phangs_operators.stores import ProductStore

    if args.store:
        return ProductStore.from_uri(args.store, conn_id=args.store_conn)
    cache: dict[str, Any] = {}

    def resolve(uri: str):
        if uri.startswith("s3://"):
            base = "s3://" + uri[5:].split("/", 1)[0]
            if base not in cache:
                cache[base] = ProductStore.from_uri(base, conn_id=args.store_conn)
        elif uri.startswith("file:///"):
            base = "file:///"
            if base not in cache:
                cache[base] = ProductStore.from_uri(base, validate=False)
        else:
            return None
        return cache[base]

    return resolve


def _run_verify(args) -> int:
    from phangs_operators.stores import verify_products

    cat = _catalog(args)
    try:
        report = verify_products(_resolver(args), cat, target=args.target, current_only=args.current_only)
    finally:
        cat.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"checked {report.checked}: {len(report.ok)} ok, {len(report.mismatched)} damaged, "
              f"{len(report.missing)} missing, {len(report.foreign)} not checked, "
              f"{len(report.temp_keys)} temporary objects")
        for m in report.mismatched:
            print(f"DAMAGED  {m['uri']}  catalog {m['expected'][:12]} ({m['expected_size']} B), "
                  f"object {m['found'][:12]} ({m['found_size']} B)")
        for uri in report.missing:
            print(f"MISSING  {uri}")
        for uri in report.foreign:
            print(f"SKIPPED  {uri} (no store for it)")
        for uri in report.temp_keys:
            print(f"TEMP     {uri}")
    return 0 if report.healthy else 1
