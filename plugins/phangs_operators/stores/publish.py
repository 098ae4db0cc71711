"""Publish a set of product files as one unit of work, and verify what was published.

The unit of work (:func:`publish_products`), for files ``F1..Fn``:

1. hash every file (SHA-256) and read its FITS essentials; skip files whose bytes are
   already the current version (re-publishing identical bytes is a no-op);
2. upload each remaining file to a deterministic temporary key
   ``_tmp/{target}/{config}/{product}/{sha[:32]}/{filename}`` (hashing while streaming,
   SHA-256 in the object metadata) and verify it (re-read and re-hash by default);
3. in ONE catalog transaction holding a per-product lock: choose each file's version
   (same bytes as current -> unchanged; else ``max(version) + 1``), copy the temporary object
   to its final, never-reused key (``{target}/{config}/{product}/{filename}`` for version 1,
   ``.../_v{N}/{filename}`` after), check the copy's size and checksum, mark earlier versions
   not current, upsert the rows and commit;
4. delete the temporary objects (and stale ones of the same products).

Failure anywhere before the commit leaves the catalog untouched: the previous version stays
current and the new objects are not visible *as current* (the catalog is the source of truth;
final objects created by a failed attempt are deleted when that is provably safe, otherwise
the retry reuses them because their checksum matches). A retry after a crash at any step
converges to exactly one visible copy, one row, and no temporary keys.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from phangs_operators.errors import StoreError
from phangs_operators.stores.catalog import Catalog, NaturalKey, ProductRecord, product_id_for
from phangs_operators.stores.fitsmeta import fits_essentials
from phangs_operators.stores.names import TEMP_PREFIX, product_key, product_prefix, temp_key, validate_name
from phangs_operators.stores.objectstore import ObjectInfo, ProductStore, sha256_file
from phangs_operators.stores.provenance import Provenance, RunContext

__all__ = [
    "FAULT_STEPS",
    "ProductFile",
    "PublishResult",
    "PublishedProduct",
    "VerifyReport",
    "publish_products",
    "verify_products",
    "with_quicklooks",
]

log = logging.getLogger(__name__)

#: steps at which the ``fault`` hook of :func:`publish_products` is called (fault injection)
FAULT_STEPS = ("after_temp_upload", "after_copy", "before_commit", "during_commit", "after_commit")


@dataclass(frozen=True)
class ProductFile:
    """One local file to publish and what it is.

    Attributes
    ----------
    path : Path
        Local file.
    target, config, product, stage, kind : str
        Identity (see :class:`~phangs_operators.stores.catalog.NaturalKey`).
    resolution : str
        Resolution tag (``''`` = native).
    provenance : Provenance
        Inputs, key-set hash, recipe, software versions.
    parent : NaturalKey, optional
        Product this file derives from *in the same publish* (e.g. the cube of a quick-look);
        stored as ``parent_id``.
    filename : str, optional
        Name in the store (default: the local file name).
    """

    path: Path
    target: str
    config: str
    product: str
    stage: str
    kind: str
    resolution: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    parent: NaturalKey | None = None
    filename: str | None = None

    @property
    def name(self) -> str:
        """File name in the store."""
        return self.filename or Path(self.path).name

    @property
    def key(self) -> NaturalKey:
        """Natural key (validates the names)."""
        return NaturalKey(self.target, self.config, self.product, self.stage, self.kind, self.resolution)


@dataclass
class PublishedProduct:
    """Outcome for one file: ``action`` is ``published`` (new version) or ``unchanged``."""

    uri: str
    version: int
    sha256: str
    size_bytes: int
    action: Literal["published", "unchanged"]
    product_id: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dict(self.__dict__)


@dataclass
class PublishResult:
    """Outcome of :func:`publish_products` (small, JSON-serialisable: the XCom value)."""

    products: list[PublishedProduct] = field(default_factory=list)
    bytes_uploaded: int = 0
    temp_keys_removed: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "products": [p.to_dict() for p in self.products],
            "bytes_uploaded": self.bytes_uploaded,
            "temp_keys_removed": self.temp_keys_removed,
            "warnings": list(self.warnings),
        }


@dataclass
class _Item:
    spec: ProductFile
    key: NaturalKey
    sha256: str
    size: int
    essentials: dict[str, Any]
    temp: str
    uploaded: bool = False
    version: int = 0
    final: str = ""
    action: str = ""
    product_id: str = ""


def _content_type(name: str) -> str:
    if name.lower().endswith((".fits", ".fits.gz")):
        return "application/fits"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _object_metadata(item: _Item, version: int) -> dict[str, str]:
    return {
        "sha256": item.sha256,
        "phangs-product-id": product_id_for(item.key, version),
        "phangs-version": str(version),
    }


def _matches(info: ObjectInfo | None, sha256: str, size: int) -> bool:
    return info is not None and info.sha256 == sha256 and info.size == size


def publish_products(
    store: ProductStore,
    catalog: Catalog,
    files: Sequence[ProductFile],
    *,
    run: RunContext | None = None,
    verify: Literal["full", "metadata"] = "full",
    stale_temp_after: timedelta = timedelta(hours=6),
    fault: Callable[[str], None] | None = None,
) -> PublishResult:
    """Upload ``files`` and write their catalog rows as one unit (see the module docstring).

    Parameters
    ----------
    store : ProductStore
        Destination store.
    catalog : Catalog
        Catalog to record the products in.
    files : sequence of ProductFile
        Files to publish; their natural keys must be distinct. A file whose ``parent`` is
        given must come after that parent in the sequence.
    run : RunContext, optional
        Task attempt (default: from the ``AIRFLOW_CTX_*`` environment).
    verify : {"full", "metadata"}
        After uploading, re-read and re-hash the temporary object (``full``) or only check
        its size and metadata checksum (``metadata``).
    stale_temp_after : timedelta
        Temporary objects of the same products older than this are removed after a
        successful publish (leftovers of crashed attempts with other bytes).
    fault : callable, optional
        Fault-injection hook for tests, called with each step name of :data:`FAULT_STEPS`.

    Returns
    -------
    PublishResult

    Raises
    ------
    StoreError
        Bad names, unreadable files, store or catalog failures (nothing becomes current).
    """
    run = run or RunContext.from_env()
    fault = fault or (lambda _step: None)
    if verify not in ("full", "metadata"):
        raise StoreError(f"verify must be 'full' or 'metadata', not {verify!r}")
    result = PublishResult()

    # 1. validate, hash, read FITS essentials ------------------------------------------------
    items: list[_Item] = []
    seen: set[NaturalKey] = set()
    names: set[tuple[str, str, str, str]] = set()
    for spec in files:
        key = spec.key
        name = validate_name(spec.name, "file name")
        if key in seen:
            raise StoreError(f"two files in one publish have the same identity {key}")
        if (key.target, key.config, key.product, name) in names:
            raise StoreError(f"two files in one publish would both be stored as {key.target}/{key.config}/"
                             f"{key.product}/{name}")
        names.add((key.target, key.config, key.product, name))
        if spec.parent is not None and spec.parent not in seen:
            raise StoreError(f"parent {spec.parent} of {name} must be published before it, in the same call")
        seen.add(key)
        path = Path(spec.path)
        if not path.is_file():
            raise StoreError(f"cannot publish {path}: not a file")
        sha, size = sha256_file(path)
        items.append(_Item(spec, key, sha, size, fits_essentials(path),
                           temp_key(key.target, key.config, key.product, name, sha)))
    if not items:
        return result

    # 2. skip what is already current with the same bytes; upload + verify the rest ----------
    current = _current_rows(catalog, [i.key for i in items])
    for item in items:
        row = current.get(item.key)
        row_key = _key_in(store, row.uri) if row is not None else None
        if row is not None and row.sha256 == item.sha256 and row_key is not None and _matches(
            store.head(row_key), item.sha256, item.size
        ):
            continue
        _upload_temp(store, catalog, item, verify)
        result.bytes_uploaded += item.size if item.uploaded else 0
        fault("after_temp_upload")

    # 3. one catalog transaction: versions, copies, rows --------------------------------------
    created: list[str] = []
    try:
        with catalog.transaction() as conn:
            catalog.lock_keys(conn, [i.key for i in items])
            run_key = None
            ids: dict[NaturalKey, str] = {}
            records: list[ProductRecord] = []
            for item in items:
                versions = catalog.versions(conn, item.key)
                cur = next((v for v in versions if v.is_current), None)
                name = item.spec.name
                cur_key = _key_in(store, cur.uri) if cur is not None else None
                if cur is not None and cur.sha256 == item.sha256 and cur_key is not None:
                    item.version, item.action, item.product_id = cur.version, "unchanged", cur.product_id
                    item.final = cur_key
                    if not _matches(store.head(item.final), item.sha256, item.size):
                        if not item.uploaded:
                            raise StoreError(
                                f"{cur.uri} is catalogued but missing or damaged and changed while publishing; retry"
                            )
                        store.copy(item.temp, item.final, metadata=_object_metadata(item, cur.version))
                        log.warning("restored damaged/missing %s from the new upload", cur.uri)
                        result.warnings.append(f"restored {cur.uri}")
                    ids[item.key] = cur.product_id
                    continue
                if not item.uploaded:
                    raise StoreError(f"{item.key} changed while publishing (concurrent publish?); retry")
                item.version = max((v.version for v in versions), default=0) + 1
                item.final = product_key(item.key.target, item.key.config, item.key.product, name, item.version)
                meta = _object_metadata(item, item.version)
                owner = catalog.row_for_uri(conn, store.uri_for(item.final))
                if owner is not None:  # never overwrite a catalogued object
                    raise StoreError(
                        f"{store.uri_for(item.final)} is already catalogued as {owner.natural_key} v{owner.version}; "
                        f"file names must be unique within {item.key.target}/{item.key.config}/{item.key.product}"
                    )
                if not _matches(store.head(item.final), item.sha256, item.size):
                    # absent, or an uncatalogued leftover of a crashed attempt: (re)write it
                    store.copy(item.temp, item.final, metadata=meta)
                    created.append(item.final)
                    if not _matches(store.head(item.final), item.sha256, item.size):
                        raise StoreError(f"copy to {store.uri_for(item.final)} does not match its checksum")
                fault("after_copy")
                if run_key is None:
                    catalog.upsert_target(conn, [i.key.target for i in items])
                    run_key = catalog.upsert_run(conn, run, item.spec.provenance.software)
                catalog.clear_current(conn, item.key)
                rec = ProductRecord(
                    **item.key.as_dict(), version=item.version, filename=name, uri=store.uri_for(item.final),
                    size_bytes=item.size, sha256=item.sha256, is_current=True,
                    parent_id=ids.get(item.spec.parent) if item.spec.parent else None,
                    content_type=_content_type(name), **item.essentials,
                )
                rec.set_provenance(item.spec.provenance, run, run_key)
                records.append(rec)
                item.action, item.product_id = "published", rec.product_id
                ids[item.key] = rec.product_id
            fault("before_commit")
            catalog.upsert_products(conn, records)
            fault("during_commit")
    except BaseException:
        _compensate(store, catalog, created, [i.key for i in items])
        raise
    fault("after_commit")

    # 4. remove temporary objects ------------------------------------------------------------
    for item in items:
        result.temp_keys_removed += _remove_temps(store, item, stale_temp_after)
        result.products.append(PublishedProduct(
            store.uri_for(item.final), item.version, item.sha256, item.size, item.action,  # type: ignore[arg-type]
            item.product_id, item.key.kind,
        ))
        log.info("%s %s (v%d, %d bytes, sha256 %s)", item.action, store.uri_for(item.final), item.version,
                 item.size, item.sha256[:12])
    return result


def _current_rows(catalog: Catalog, keys: Sequence[NaturalKey]) -> dict[NaturalKey, ProductRecord]:
    out: dict[NaturalKey, ProductRecord] = {}
    with catalog.transaction() as conn:
        for key in keys:
            for rec in catalog.versions(conn, key):
                if rec.is_current:
                    out[key] = rec
    return out


def _key_in(store: ProductStore, uri: str) -> str | None:
    """Key of ``uri`` in ``store`` or ``None`` if the URI belongs elsewhere."""
    try:
        return store.key_from_uri(uri)
    except StoreError:
        return None


def _upload_temp(store: ProductStore, catalog: Catalog, item: _Item, verify: str) -> None:
    """Upload to the temporary key (reusing a verified leftover of a crashed attempt)."""
    existing = store.head(item.temp)
    if not _matches(existing, item.sha256, item.size):
        store.upload(item.spec.path, item.temp, sha256=item.sha256, metadata={"phangs-temp": "1"})
    if verify == "full":
        try:
            digest, size = store.hash_object(item.temp)
        except StoreError:
            # a concurrent publisher of the same bytes may have finished and removed the shared
            # temporary key: then the bytes are current already and nothing is left to do
            row = _current_rows(catalog, [item.key]).get(item.key)
            if row is not None and row.sha256 == item.sha256:
                return
            raise
        if digest != item.sha256 or size != item.size:
            store.delete(item.temp)
            raise StoreError(
                f"verification of {store.uri_for(item.temp)} failed: stored {size} bytes sha256 {digest}, "
                f"expected {item.size} bytes sha256 {item.sha256}"
            )
    elif not _matches(store.head(item.temp), item.sha256, item.size):
        raise StoreError(f"verification of {store.uri_for(item.temp)} failed (size or metadata checksum)")
    item.uploaded = True


def _compensate(store: ProductStore, catalog: Catalog, created: list[str], keys: list[NaturalKey]) -> None:
    """After a failed transaction, delete final objects this attempt created if no row names them.

    Runs under the same product locks as a publish, so a concurrent publisher cannot
    catalogue the object between the check and the delete. If the catalog cannot be asked
    (it is down), the objects are left: a retry reuses them (same checksum) or replaces them
    (they are not catalogued, hence never current).
    """
    if not created:
        return
    try:
        with catalog.transaction() as conn:
            catalog.lock_keys(conn, keys)
            for key in created:
                if catalog.row_for_uri(conn, store.uri_for(key)) is None:
                    store.delete(key)
                    log.info("rolled back %s (catalog transaction failed)", store.uri_for(key))
    except Exception as exc:  # noqa: BLE001 - best effort, the original error is re-raised
        log.warning("could not roll back %s: %s (a retry will reuse or replace them)",
                    ", ".join(store.uri_for(k) for k in created), exc)


def _remove_temps(store: ProductStore, item: _Item, stale_after: timedelta) -> int:
    """Delete this item's temporary object and stale temporary objects of the same file."""
    removed = 0
    if store.head(item.temp) is not None:
        store.delete(item.temp)
        removed += 1
    k = item.key
    prefix = f"{TEMP_PREFIX}/{product_prefix(k.target, k.config, k.product)}"
    cutoff = datetime.now(UTC) - stale_after
    for obj in store.list(prefix):
        if obj.key.endswith("/" + item.spec.name) and obj.last_modified is not None and obj.last_modified < cutoff:
            store.delete(obj.key)
            removed += 1
    swept = store.sweep_incomplete(prefix, cutoff)
    if swept:
        log.info("removed %d unfinished uploads under %s", swept, store.uri_for(prefix.rstrip("/")))
    return removed


# ============================================================================================
@dataclass
class VerifyReport:
    """Outcome of :func:`verify_products`.

    Attributes
    ----------
    checked : int
        Rows checked.
    ok : list of str
        URIs whose bytes hash to the catalogued SHA-256 and size.
    mismatched : list of dict
        ``{"uri", "expected", "found", "expected_size", "found_size"}`` per damaged object.
    missing : list of str
        Catalogued URIs with no object.
    foreign : list of str
        Catalogued URIs outside this store (not checked).
    temp_keys : list of str
        Temporary objects left in the store (crashed or running publishes).
    """

    checked: int = 0
    ok: list[str] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    temp_keys: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True if nothing is missing or damaged."""
        return not self.mismatched and not self.missing

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {**self.__dict__, "healthy": self.healthy}


def verify_products(
    store: ProductStore | Callable[[str], ProductStore | None],
    catalog: Catalog,
    *,
    target: str | None = None,
    current_only: bool = False,
) -> VerifyReport:
    """Re-hash catalogued objects and report mismatches, missing and foreign objects.

    Parameters
    ----------
    store : ProductStore or callable
        The store, or a function URI -> store (``None`` for URIs it cannot serve), for a
        catalog whose products live in several stores.
    catalog : Catalog
        Catalog to check.
    target : str, optional
        Only this target.
    current_only : bool
        Only current versions (default: every version).
    """
    resolve = (lambda _uri: store) if isinstance(store, ProductStore) else store
    report = VerifyReport()
    used: dict[str, ProductStore] = {}
    for rec in catalog.list_products(target=target, current_only=current_only):
        report.checked += 1
        st = resolve(rec.uri)
        try:
            if st is None:
                raise StoreError(f"no store for {rec.uri}")
            key = st.key_from_uri(rec.uri)
        except StoreError:
            report.foreign.append(rec.uri)
            continue
        used[st.base_uri] = st
        if st.head(key) is None:
            report.missing.append(rec.uri)
            continue
        digest, size = st.hash_object(key)
        if digest == rec.sha256 and size == rec.size_bytes:
            report.ok.append(rec.uri)
        else:
            report.mismatched.append({"uri": rec.uri, "expected": rec.sha256, "found": digest,
                                      "expected_size": rec.size_bytes, "found_size": size})
            log.error("checksum mismatch for %s: catalog %s, object %s", rec.uri, rec.sha256, digest)
    if isinstance(store, ProductStore):
        used[store.base_uri] = store
    for st in used.values():
        report.temp_keys += [o.uri for o in st.list(TEMP_PREFIX + "/")]
    return report

def with_quicklooks(files: Sequence[ProductFile], workdir: str | Path) -> list[ProductFile]:
    """``files`` followed by quick-look PNGs of each FITS product (cubes: peak + spectrum, maps: map).

    Each PNG is a product of kind ``quicklook`` next to its parent (same target/config/product/
    resolution, ``stage = "{parent kind}.{parent stage}.{view}"``, ``parent`` = the FITS product),
    so :func:`publish_products` stores and catalogues it with the parent in one unit.
    """
    from phangs_operators.routines.quicklook import quicklooks_for

    out = list(files)
    for spec in files:
        if not spec.name.lower().endswith(".fits") or spec.kind == "quicklook":
            continue
        ql = quicklooks_for(spec.path, Path(workdir) / f"{spec.key.target}.{spec.key.config}.{spec.key.product}")
        for view, png in sorted(ql.outputs.items()):
            out.append(ProductFile(
                path=png, target=spec.target, config=spec.config, product=spec.product,
                stage=f"{spec.kind}.{spec.stage}.{view}", kind="quicklook", resolution=spec.resolution,
                provenance=Provenance(inputs=(), keyset_hash=spec.provenance.keyset_hash, recipe="quicklook",
                                      software=spec.provenance.software),
                parent=spec.key,
            ))
    return out
