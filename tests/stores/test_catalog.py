"""Catalog on SQLite and PostgreSQL: migrations, idempotent upserts, inert SQL-looking text."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from phangs_operators.errors import StoreError
from phangs_operators.stores import Catalog, ProductRecord, RunContext
from phangs_operators.stores.catalog import NaturalKey
from phangs_operators.stores.provenance import Provenance
from tests.fixtures.services import free_port

SQLISH = "x'); DROP TABLE products; --"


def record(version=1, sha="1" * 64, **kw):
    base = dict(target="ngc0628", config="12m+7m", product="co21", stage="pbcorr_trimmed_k", kind="cube",
                resolution="", version=version, filename="ngc0628_12m+7m_co21.fits",
                uri=f"s3://b/ngc0628/12m+7m/co21/v{version}.fits", size_bytes=10, sha256=sha)
    base.update(kw)
    return ProductRecord(**base)


def test_migrations_are_versioned_and_idempotent(catalog, catalog_url):
    assert catalog.schema_version() == 2
    assert catalog.migrate() == []  # nothing pending
    again = Catalog.from_url(catalog_url)
    assert again.schema_version() == 2
    with again.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        rows = conn.execute(sa.text("SELECT version, name FROM schema_migrations")).all()
    assert {"targets", "runs", "products", "inputs", "schema_migrations", "archive_state"} <= names
    assert sorted(tuple(r) for r in rows) == [(1, "initial"), (2, "archive_state")]
    again.close()


def test_upsert_is_idempotent_and_round_trips(catalog):
    rec = record(shape=[3, 4, 5], footprint=[[1.0, 2.0]] * 4, bmaj_arcsec=1.5, software={"astropy": "8"},
                 inputs=[("s3://b/in.ms", "2" * 64)])
    for _ in range(3):
        catalog.upsert_records([rec])
    assert catalog.count() == 1
    got = catalog.get_by_uri(rec.uri)
    assert got is not None
    assert got.shape == [3, 4, 5] and got.bmaj_arcsec == 1.5 and got.software == {"astropy": "8"}
    assert got.inputs == [("s3://b/in.ms", "2" * 64)]
    assert got.product_id == rec.product_id
    # an update of the same natural key + version rewrites, never duplicates
    catalog.upsert_records([record(size_bytes=99)])
    assert catalog.count() == 1
    assert catalog.get_by_uri(rec.uri).size_bytes == 99


def test_only_one_current_version_is_allowed(catalog):
    catalog.upsert_records([record(1)])
    with pytest.raises(StoreError, match="catalog write failed"):
        catalog.upsert_records([record(2, sha="2" * 64)])  # v1 still current: unique index refuses
    with catalog.transaction() as conn:
        catalog.clear_current(conn, NaturalKey("ngc0628", "12m+7m", "co21", "pbcorr_trimmed_k", "cube"))
        catalog.upsert_products(conn, [record(2, sha="2" * 64)])
    rows = catalog.list_products(current_only=False)
    assert [(r.version, r.is_current) for r in rows] == [(1, False), (2, True)]
    assert [r.version for r in catalog.list_products()] == [2]


def test_sql_looking_text_is_stored_inert(catalog):
    rec = record(recipe=SQLISH, keyset_hash=SQLISH, inputs=[(f"file:///d/{SQLISH}", None)])
    catalog.upsert_records([rec])
    got = catalog.get_by_uri(rec.uri)
    assert got.recipe == SQLISH and got.keyset_hash == SQLISH
    assert got.inputs == [(f"file:///d/{SQLISH}", None)]
    # filters are bound parameters: injection text matches nothing and drops nothing
    assert catalog.list_products(target=SQLISH) == []
    assert catalog.list_products(kind="cube' OR '1'='1") == []
    assert catalog.get_by_uri("' OR 1=1 --") is None
    assert catalog.count() == 1


def test_sql_looking_names_are_rejected(catalog):
    with pytest.raises(StoreError, match="invalid target"):
        record(target=SQLISH)
    with pytest.raises(StoreError, match="invalid"):
        NaturalKey("ngc0628", "12m", "co21", "s", "cube; DROP TABLE x")


def test_runs_table_keeps_one_row_per_task(catalog):
    run1 = RunContext("dag", "run1", "publish", try_number=1, host="w1")
    run2 = RunContext("dag", "run1", "publish", try_number=2, host="w2")
    with catalog.transaction() as conn:
        k1 = catalog.upsert_run(conn, run1, {"astropy": "8"})
    with catalog.transaction() as conn:
        k2 = catalog.upsert_run(conn, run2, {"astropy": "8"})
    assert k1 == k2
    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT try_number, host, software FROM runs")).all()
    assert [(r[0], r[1]) for r in rows] == [(2, "w2")]
    assert json.loads(rows[0][2]) == {"astropy": "8"}


def test_postgres_down_is_a_clear_store_error():
    port = free_port()
    with pytest.raises(StoreError, match=rf"catalog database not reachable at postgresql\+psycopg2://u:\*\*\*@127.0.0.1:{port}/x"):
        Catalog.from_url(f"postgresql://u:secret@127.0.0.1:{port}/x")


def test_unknown_connection_id_and_bad_urls(monkeypatch):
    with pytest.raises(StoreError, match="connection 'no_such_catalog' is not defined"):
        Catalog.from_url("no_such_catalog")
    with pytest.raises(StoreError, match="unsupported catalog URL scheme 'mysql'"):
        Catalog.from_url("mysql://u@h/db")
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_TYPE", json.dumps({"conn_type": "http", "host": "x"}))
    with pytest.raises(StoreError, match="has type 'http'"):
        Catalog.from_url("wrong_type")


def test_catalog_from_airflow_postgres_connection(monkeypatch, postgres_url):
    db = postgres_url.rsplit("/", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_PHANGS_CATALOG", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}))
    cat = Catalog.from_url()  # default connection id phangs_catalog
    assert cat.dialect == "postgresql" and cat.schema_version() >= 1
    assert db in cat.url
    cat.close()


def test_provenance_recorded(catalog):
    rec = record()
    rec.set_provenance(Provenance(inputs=[("s3://b/x.ms", "3" * 64)], keyset_hash="abc", recipe="r1",
                                  software={"casatools": "6.7"}),
                       RunContext("d", "r", "t", map_index=2, try_number=3, host="h"), None)
    catalog.upsert_records([rec])
    got = catalog.get_by_uri(rec.uri)
    assert (got.dag_id, got.run_id, got.task_id, got.try_number, got.host) == ("d", "r", "t", 3, "h")
    assert (got.keyset_hash, got.recipe, got.software) == ("abc", "r1", {"casatools": "6.7"})
    assert got.inputs == [("s3://b/x.ms", "3" * 64)]


def test_postgres_fixture_fails_loudly_when_the_server_is_down():
    from tests.fixtures.services import _pg_admin_connect

    port = free_port()
    with pytest.raises(pytest.fail.Exception, match=rf"PostgreSQL not reachable at 127.0.0.1:{port} .*pg_ctlcluster"):
        _pg_admin_connect(port=port)
