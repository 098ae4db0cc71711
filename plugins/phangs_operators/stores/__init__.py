"""Product store (S3 / local folder) and product catalog (PostgreSQL / SQLite).

Public API::

    from phangs_operators.stores import ProductStore, Catalog, publish_products

    store = ProductStore.from_uri("s3://phangs-products/alma", conn_id="phangs_products")
    store = ProductStore.from_uri("file:///data/products")            # embedded default
    catalog = Catalog.from_url("phangs_catalog")                      # Airflow postgres connection
    catalog = Catalog.from_url("sqlite:////data/catalog.db")          # embedded default
    result = publish_products(store, catalog, [ProductFile(path, "ngc0628", "12m+7m", "co21",
                                                           stage="pbcorr_trimmed_k", kind="cube")])
    report = verify_products(store, catalog)

* :class:`ProductStore` - one interface; :class:`LocalProductStore` and
  :class:`S3ProductStore` (boto3 client from Airflow's ``S3Hook`` for an ``aws``
  connection, ``endpoint_url`` in its extra). Object keys
  ``{target}/{config}/{product}/{filename}`` (version 1; ``.../_v{N}/{filename}`` for later
  versions) built from validated names (:mod:`~phangs_operators.stores.names`).
* :class:`Catalog` - SQLAlchemy Core, numbered SQL migrations, idempotent upserts keyed by
  ``(target, config, product, stage, kind, resolution, version)``; tables ``targets``,
  ``runs``, ``products``, ``inputs`` (+ ``schema_migrations``).
* :func:`publish_products` - upload + verify + catalog as one unit of work (atomic: temp
  key -> verify -> copy to final -> commit rows -> delete temp); identical bytes are a no-op,
  different bytes a new version. :func:`verify_products` re-hashes objects against the
  catalog. :func:`with_quicklooks` adds quick-look PNGs (kind ``quicklook``) of each FITS
  product so they are published and catalogued with it.
* :class:`ProductFile`, :class:`Provenance`, :class:`RunContext` describe what is published.

All failures raise :class:`phangs_operators.errors.StoreError` with a one-line message.
Importing this package does not import Airflow (only resolving a connection id does).
"""

from __future__ import annotations

from phangs_operators.stores.catalog import Catalog, NaturalKey, ProductRecord
from phangs_operators.stores.names import product_key, validate_name
from phangs_operators.stores.objectstore import LocalProductStore, ObjectInfo, ProductStore, S3ProductStore
from phangs_operators.stores.provenance import Provenance, RunContext
from phangs_operators.stores.publish import (
    ProductFile,
    PublishResult,
    VerifyReport,
    publish_products,
    verify_products,
    with_quicklooks,
)

__all__ = [
    "Catalog",
    "LocalProductStore",
    "NaturalKey",
    "ObjectInfo",
    "ProductFile",
    "ProductRecord",
    "ProductStore",
    "Provenance",
    "PublishResult",
    "RunContext",
    "S3ProductStore",
    "VerifyReport",
    "product_key",
    "publish_products",
    "validate_name",
    "verify_products",
    "with_quicklooks",
]
