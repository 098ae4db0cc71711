"""Airflow hook resolving the product store and the catalog from connections.

A thin layer over :mod:`phangs_operators.stores`: operators ask the hook for a
:class:`~phangs_operators.stores.ProductStore` and a :class:`~phangs_operators.stores.Catalog`
instead of handling connection ids themselves. Nothing is opened in ``__init__`` (DAG
parsing stays free of I/O); :meth:`get_store`/:meth:`get_catalog` connect and validate.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from phangs_operators.stores.catalog import DEFAULT_CATALOG_CONN_ID, Catalog
from phangs_operators.stores.objectstore import DEFAULT_STORE_CONN_ID, ProductStore

__all__ = ["PhangsProductsHook"]


class PhangsProductsHook(BaseHook):
    """Product store + catalog of the PHANGS pipeline.

    Parameters
    ----------
    base_uri : str
        Store base: ``s3://bucket/prefix`` or ``file:///abs/dir``.
    products_conn_id : str, optional
        Airflow ``aws`` connection for an ``s3://`` base (default ``phangs_products``;
        ignored for a local folder).
    catalog : str
        Airflow ``postgres`` connection id or SQLAlchemy URL (default ``phangs_catalog``).
    """

    conn_name_attr = "products_conn_id"
    default_conn_name = DEFAULT_STORE_CONN_ID
    conn_type = "aws"
    hook_name = "PHANGS product store"

    def __init__(self, base_uri: str, products_conn_id: str | None = None,
                 catalog: str = DEFAULT_CATALOG_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_uri = base_uri
        self.products_conn_id = products_conn_id
        self.catalog = catalog
        self._store: ProductStore | None = None
        self._catalog: Catalog | None = None

    def get_store(self) -> ProductStore:
        """The validated store (cached)."""
        if self._store is None:
            conn_id = None
            if self.base_uri.startswith("s3://"):
                conn_id = self.products_conn_id or self.default_conn_name
            self._store = ProductStore.from_uri(self.base_uri, conn_id=conn_id)
        return self._store

    def get_catalog(self) -> Catalog:
        """The migrated, reachable catalog (cached)."""
        if self._catalog is None:
            self._catalog = Catalog.from_url(self.catalog)
        return self._catalog

    def get_conn(self) -> tuple[ProductStore, Catalog]:
        """``(store, catalog)``."""
        return self.get_store(), self.get_catalog()

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's connection test: both services reachable?"""
        try:
            store, catalog = self.get_conn()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return False, str(exc)
        return True, f"store {store.base_uri} and catalog {catalog.url} reachable"

    def close(self) -> None:
        """Dispose the catalog's connection pool."""
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
