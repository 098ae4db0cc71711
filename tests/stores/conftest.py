"""Fixtures of the store/catalog tests (real services come from tests/fixtures/services.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from phangs_operators.stores import Catalog, ProductStore


@pytest.fixture
def local_store(tmp_path) -> ProductStore:
    return ProductStore.from_uri((tmp_path / "store").as_uri())


@pytest.fixture
def s3_store(moto_s3) -> ProductStore:
    """A fresh prefix of the session bucket, opened through the Airflow connection."""
    return ProductStore.from_uri(f"s3://{moto_s3.bucket}/t{uuid.uuid4().hex[:8]}", conn_id=moto_s3.conn_id,
                                 part_size=5 * 1024 * 1024, multipart_threshold=5 * 1024 * 1024)


@pytest.fixture(params=["local", "s3"])
def store(request) -> ProductStore:
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def catalog(catalog_url) -> Iterator[Catalog]:
    cat = Catalog.from_url(catalog_url)
    yield cat
    cat.close()


@pytest.fixture(params=["local+sqlite", "s3+postgres"])
def backend(request) -> tuple[ProductStore, Catalog]:
    """The two deployments: embedded (folder + SQLite) and data centre (S3 + PostgreSQL)."""
    store_name, cat_name = request.param.split("+")
    store = request.getfixturevalue(f"{store_name}_store")
    cat = Catalog.from_url(request.getfixturevalue("sqlite_url" if cat_name == "sqlite" else "pg_url"))
    yield store, cat
    cat.close()


@pytest.fixture
def catalog_url_for_backend(backend, request) -> str:
    """URL of the catalog of ``backend`` (to open one Catalog per thread)."""
    _store, cat = backend
    return cat.engine.url.render_as_string(hide_password=False)
