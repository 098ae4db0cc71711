"""Catalog of published products: SQLAlchemy Core on PostgreSQL or SQLite, same schema.

The schema lives in numbered SQL files (``migrations/NNNN_name.sql``, portable SQL accepted
by both databases) applied in order and recorded in ``schema_migrations``; applying them is
idempotent and serialised (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``).

Every statement uses bound parameters (SQLAlchemy Core expressions); writes are upserts
keyed by ``(target, config, product, stage, kind, resolution, version)``, so re-running a
task rewrites the same rows and never duplicates them. At most one version of a natural key
is *current* (``is_current = 1``, enforced by a partial unique index).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from phangs_operators.errors import StoreError
from phangs_operators.stores.names import validate_label, validate_name, validate_sha256
from phangs_operators.stores.provenance import Provenance, RunContext

__all__ = [
    "DEFAULT_CATALOG_CONN_ID",
    "Catalog",
    "NaturalKey",
    "ProductRecord",
    "product_id_for",
    "utc_now",
]

log = logging.getLogger(__name__)

DEFAULT_CATALOG_CONN_ID = "phangs_catalog"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x5048414E4753  # "PHANGS"

metadata = sa.MetaData()
schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Text, nullable=False),
)
targets = sa.Table(
    "targets", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("created_at", sa.Text), sa.Column("updated_at", sa.Text),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("run_key", sa.Text, primary_key=True),
    *(sa.Column(n, sa.Text) for n in ("dag_id", "run_id", "task_id")),
    sa.Column("map_index", sa.Integer), sa.Column("try_number", sa.Integer),
    *(sa.Column(n, sa.Text) for n in ("host", "software", "created_at", "updated_at")),
)
_FLOAT_COLS = (
    "bmaj_arcsec", "bmin_arcsec", "bpa_deg", "pixel_arcsec", "chan_width_kms", "vel_min_kms",
    "vel_max_kms", "restfreq_hz", "ra_deg", "dec_deg", "ra_min_deg", "ra_max_deg", "dec_min_deg",
    "dec_max_deg",
)
products = sa.Table(
    "products", metadata,
    sa.Column("product_id", sa.Text, primary_key=True),
    *(sa.Column(n, sa.Text) for n in ("target", "config", "product", "stage", "kind", "resolution")),
    sa.Column("version", sa.Integer), sa.Column("is_current", sa.Integer),
    *(sa.Column(n, sa.Text) for n in ("parent_id", "filename", "uri")),
    sa.Column("size_bytes", sa.BigInteger),
    *(sa.Column(n, sa.Text) for n in ("sha256", "content_type", "bunit", "shape")),
    *(sa.Column(n, sa.Float) for n in _FLOAT_COLS),
    *(sa.Column(n, sa.Text) for n in ("footprint", "keyset_hash", "recipe", "software", "run_key",
                                      "dag_id", "run_id", "task_id")),
    sa.Column("try_number", sa.Integer),
    *(sa.Column(n, sa.Text) for n in ("host", "created_at", "updated_at")),
)
inputs = sa.Table(
    "inputs", metadata,
    sa.Column("product_id", sa.Text, primary_key=True),
    sa.Column("input_uri", sa.Text, primary_key=True),
    sa.Column("input_sha256", sa.Text),
)
NATURAL_KEY = ("target", "config", "product", "stage", "kind", "resolution")


def utc_now() -> str:
    """Current UTC time as ISO-8601 text (the catalog's timestamp format)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, order=True)
class NaturalKey:
    """Identity of a product across versions: ``(target, config, product, stage, kind, resolution)``.

    ``stage`` is the processing stage/variant (e.g. ``pbcorr_trimmed_k``, ``strict``),
    ``kind`` the family (``cube``, ``noise``, ``mask``, ``moment``, ``emoment``, ``quicklook``...),
    ``resolution`` the resolution tag (``''`` for native, ``150pc``, ``2as``...). All are
    validated names.
    """

    target: str
    config: str
    product: str
    stage: str
    kind: str
    resolution: str = ""

    def __post_init__(self) -> None:
        for name in ("target", "config", "product", "stage", "kind"):
            validate_name(getattr(self, name), name)
        validate_label(self.resolution, "resolution")

    def as_dict(self) -> dict[str, str]:
        """Column -> value."""
        return {n: getattr(self, n) for n in NATURAL_KEY}

    def lock_id(self) -> int:
        """Signed 64-bit integer for ``pg_advisory_xact_lock``."""
        digest = hashlib.sha256("\x1f".join(self.as_dict().values()).encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def __str__(self) -> str:
        return "/".join(v or "native" for v in self.as_dict().values())


def product_id_for(key: NaturalKey, version: int) -> str:
    """Deterministic id of one version of a product (same inputs -> same row)."""
    raw = "\x1f".join([*key.as_dict().values(), str(int(version))])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class ProductRecord:
    """One catalog row (plus its inputs).

    Attributes are the ``products`` columns; ``shape``/``footprint``/``software`` are
    Python lists/dicts here and JSON text in the database; ``inputs`` is a list of
    ``(uri, sha256)`` for the ``inputs`` table.
    """

    target: str
    config: str
    product: str
    stage: str
    kind: str
    resolution: str
    version: int
    filename: str
    uri: str
    size_bytes: int
    sha256: str
    is_current: bool = True
    parent_id: str | None = None
    content_type: str = "application/octet-stream"
    bunit: str | None = None
    shape: list[int] | None = None
    bmaj_arcsec: float | None = None
    bmin_arcsec: float | None = None
    bpa_deg: float | None = None
    pixel_arcsec: float | None = None
    chan_width_kms: float | None = None
    vel_min_kms: float | None = None
    vel_max_kms: float | None = None
    restfreq_hz: float | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    ra_min_deg: float | None = None
    ra_max_deg: float | None = None
    dec_min_deg: float | None = None
    dec_max_deg: float | None = None
    footprint: list[list[float]] | None = None
    keyset_hash: str | None = None
    recipe: str | None = None
    software: dict[str, Any] = field(default_factory=dict)
    run_key: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    host: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    inputs: list[tuple[str, str | None]] = field(default_factory=list)
    product_id: str = ""

    def __post_init__(self) -> None:
        self.natural_key  # validates the names  # noqa: B018
        validate_name(self.filename, "file name")
        validate_sha256(self.sha256)
        if not isinstance(self.version, int) or self.version < 1:
            raise StoreError(f"invalid version {self.version!r} for {self.filename}")
        if not self.product_id:
            self.product_id = product_id_for(self.natural_key, self.version)

    @property
    def natural_key(self) -> NaturalKey:
        """The product's :class:`NaturalKey`."""
        return NaturalKey(self.target, self.config, self.product, self.stage, self.kind, self.resolution)

    def set_provenance(self, provenance: Provenance, run: RunContext, run_key: str | None) -> None:
        """Copy provenance and run identifiers into the row."""
        self.inputs = list(provenance.inputs)
        self.keyset_hash = provenance.keyset_hash
        self.recipe = provenance.recipe
        self.software = dict(provenance.software)
        self.run_key = run_key
        self.dag_id, self.run_id, self.task_id = run.dag_id, run.run_id, run.task_id
        self.try_number, self.host = run.try_number, run.host

    def to_row(self) -> dict[str, Any]:
        """Column values for the ``products`` table."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inputs"}
        row["is_current"] = 1 if self.is_current else 0
        for name in ("shape", "footprint"):
            row[name] = json.dumps(row[name]) if row[name] is not None else None
        row["software"] = json.dumps(self.software, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: Any, inputs_rows: Iterable[Any] = ()) -> ProductRecord:
        """Build from a ``products`` row (mapping) and its ``inputs`` rows."""
        data = dict(row._mapping if hasattr(row, "_mapping") else row)
        data["is_current"] = bool(data["is_current"])
        for name in ("shape", "footprint"):
            data[name] = json.loads(data[name]) if data.get(name) else None
        data["software"] = json.loads(data["software"]) if data.get("software") else {}
        data["inputs"] = [(r[0], r[1]) for r in inputs_rows]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for ``phangs catalog show --json``, XCom, QA)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["inputs"] = [list(i) for i in self.inputs]
        return out


def _migration_files() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of the packaged migrations, in order."""
    folder = resources.files("phangs_operators.stores") / "migrations"
    out = []
    for entry in folder.iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"catalog migrations must be numbered 0001, 0002, ... without gaps; found {versions}")
    return out


def _statements(sql: str) -> list[str]:
    """Split a migration on lines holding only ``;`` (comments stripped)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r"^\s*;\s*$", body, flags=re.MULTILINE) if s.strip()]


class Catalog:
    """The product catalog.

    Use :meth:`from_url` to open it. Reads and writes go through :meth:`transaction`, which
    on SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so that concurrent writers
    serialise instead of failing, and on PostgreSQL combines with advisory locks taken by
    :meth:`lock_keys`.
    """

    def __init__(self, engine: Engine, *, migrate: bool = True) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("postgresql", "sqlite"):
            raise StoreError(f"unsupported catalog database {self.dialect!r}: use PostgreSQL or SQLite")
        self.url = engine.url.render_as_string(hide_password=True)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog database not reachable at {self.url}: {_short(exc)}") from exc
        if migrate:
            self.migrate()

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url_or_conn_id: str | None = None, *, migrate: bool = True) -> Catalog:
        """Open a catalog from a SQLAlchemy URL or an Airflow connection id.

        Parameters
        ----------
        url_or_conn_id : str, optional
            ``sqlite:////abs/catalog.db``, ``postgresql://user@host:5432/db`` (driver
            psycopg2 is used), or an Airflow ``postgres`` connection id (default
            ``phangs_catalog``). Credentials never appear in messages (password hidden).
        migrate : bool
            Apply pending schema migrations.

        Raises
        ------
        StoreError
            Unknown connection id, unsupported URL or unreachable database.
        """
        target = url_or_conn_id or DEFAULT_CATALOG_CONN_ID
        if "://" in target or target.startswith("sqlite:"):
            url = _parse_url(target)
        else:
            url = _url_from_connection(target)
        return cls(_make_engine(url), migrate=migrate)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # ---- transactions and locks -------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction (committed on success, rolled back on error)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog write failed on {self.url}: {_short(exc)}") from exc

    def lock_keys(self, conn: Connection, keys: Iterable[NaturalKey]) -> None:
        """Serialise writers of the same products until the transaction ends.

        PostgreSQL: transaction-scoped advisory locks in sorted order (no deadlocks).
        SQLite: nothing to do, the transaction already holds the database write lock.
        """
        if self.dialect == "postgresql":
            for lock in sorted({k.lock_id() for k in keys}):
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})

    # ---- schema -----------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied now."""
        applied_now: list[int] = []
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.execute(sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            ))
            done = set(conn.execute(sa.select(schema_migrations.c.version)).scalars())
            for version, name, sql in _migration_files():
                if version in done:
                    continue
                for stmt in _statements(sql):
                    conn.exec_driver_sql(stmt)
                conn.execute(schema_migrations.insert().values(version=version, name=name, applied_at=utc_now()))
                applied_now.append(version)
                log.info("catalog %s: applied migration %04d_%s", self.url, version, name)
        return applied_now

    def schema_version(self) -> int:
        """Highest applied migration (0 for an empty database)."""
        with self.engine.connect() as conn:
            try:
                return int(conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0)
            except sa.exc.SQLAlchemyError:
                return 0

    # ---- writes (inside a transaction) ------------------------------------------------------
    def _upsert(self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]],
                conflict: Sequence[str], update: Sequence[str]) -> None:
        """``INSERT ... ON CONFLICT`` of ``rows`` (one compiled statement, executemany, bound parameters).

        Rows with the same conflict key are collapsed (last wins).
        """
        if not rows:
            return
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        unique = list({tuple(r[c] for c in conflict): r for r in rows}.values())
        stmt = insert(table)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        conn.execute(stmt, unique)

    def upsert_target(self, conn: Connection, name: str | Sequence[str]) -> None:
        """Insert the target(s) if new (``updated_at`` refreshed otherwise)."""
        now = utc_now()
        names = [name] if isinstance(name, str) else sorted(set(name))
        self._upsert(conn, targets, [{"name": validate_name(n, "target"), "created_at": now, "updated_at": now}
                                     for n in names], ["name"], ["updated_at"])

    def upsert_run(self, conn: Connection, run: RunContext, software: dict[str, Any]) -> str:
        """Record the task (one row per dag/run/task/map index; latest try wins). Returns its key."""
        raw = "\x1f".join([run.dag_id, run.run_id, run.task_id, str(run.map_index)])
        run_key = hashlib.sha256(raw.encode()).hexdigest()[:32]
        now = utc_now()
        row = {**run.to_dict(), "run_key": run_key, "software": json.dumps(software, sort_keys=True),
               "created_at": now, "updated_at": now}
        self._upsert(conn, runs, [row], ["run_key"],
                     ["try_number", "host", "software", "updated_at"])
        return run_key

    def upsert_products(self, conn: Connection, records: Sequence[ProductRecord]) -> None:
        """Upsert product rows and replace their inputs (keyed by natural key + version).

        Callers publishing a new current version must first clear the previous one with
        :meth:`clear_current` (the partial unique index allows one current row per key).
        """
        if not records:
            return
        now = utc_now()
        rows = []
        for rec in records:
            row = rec.to_row()
            row["created_at"] = row["created_at"] or now
            row["updated_at"] = now
            rows.append(row)
        update = [c.name for c in products.columns if c.name not in (*NATURAL_KEY, "version", "product_id",
                                                                        "created_at")]
        self._upsert(conn, products, rows, [*NATURAL_KEY, "version"], update)
        ids = [r.product_id for r in records]
        for start in range(0, len(ids), 500):  # bounded IN lists
            conn.execute(inputs.delete().where(inputs.c.product_id.in_(ids[start:start + 500])))
        in_rows = [
            {"product_id": r.product_id, "input_uri": uri, "input_sha256": sha}
            for r in records for uri, sha in dict(r.inputs).items()
        ]
        self._upsert(conn, inputs, in_rows, ["product_id", "input_uri"], ["input_sha256"])

    def clear_current(self, conn: Connection, key: NaturalKey, except_version: int | None = None) -> None:
        """Mark every version of ``key`` (but ``except_version``) as not current."""
        cond = sa.and_(*(products.c[n] == v for n, v in key.as_dict().items()), products.c.is_current == 1)
        if except_version is not None:
            cond = sa.and_(cond, products.c.version != except_version)
        conn.execute(products.update().where(cond).values(is_current=0, updated_at=utc_now()))

    def upsert_records(self, records: Sequence[ProductRecord]) -> None:
        """Convenience: targets + products in one transaction (no versioning logic)."""
        with self.transaction() as conn:
            self.upsert_target(conn, [r.target for r in records])
            self.upsert_products(conn, records)

    # ---- reads ------------------------------------------------------------------------------
    def versions(self, conn: Connection, key: NaturalKey) -> list[ProductRecord]:
        """All versions of ``key`` (oldest first), read inside ``conn``'s transaction."""
        cond = sa.and_(*(products.c[n] == v for n, v in key.as_dict().items()))
        rows = conn.execute(sa.select(products).where(cond).order_by(products.c.version)).all()
        return [ProductRecord.from_row(r) for r in rows]

    def row_for_uri(self, conn: Connection, uri: str) -> ProductRecord | None:
        """The row whose URI is ``uri`` read inside ``conn``'s transaction (no inputs)."""
        row = conn.execute(sa.select(products).where(products.c.uri == uri)).first()
        return ProductRecord.from_row(row) if row is not None else None

    def _with_inputs(self, conn: Connection, rows: Sequence[Any]) -> list[ProductRecord]:
        ids = [r.product_id for r in rows]
        by_id: dict[str, list[Any]] = {i: [] for i in ids}
        if ids:
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start:chunk_start + 500]
                q = sa.select(inputs.c.product_id, inputs.c.input_uri, inputs.c.input_sha256).where(
                    inputs.c.product_id.in_(chunk)).order_by(inputs.c.input_uri)
                for pid, uri, sha in conn.execute(q):
                    by_id[pid].append((uri, sha))
        return [ProductRecord.from_row(r, by_id[r.product_id]) for r in rows]

    def list_products(
        self,
        *,
        target: str | None = None,
        kind: str | None = None,
        current_only: bool = True,
        limit: int | None = None,
    ) -> list[ProductRecord]:
        """Products, optionally filtered (values are bound parameters, never SQL text)."""
        q = sa.select(products)
        if target is not None:
            q = q.where(products.c.target == target)
        if kind is not None:
            q = q.where(products.c.kind == kind)
        if current_only:
            q = q.where(products.c.is_current == 1)
        q = q.order_by(*(products.c[n] for n in NATURAL_KEY), products.c.version)
        if limit is not None:
            q = q.limit(int(limit))
        try:
            with self.engine.connect() as conn:
                return self._with_inputs(conn, conn.execute(q).all())
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog query failed on {self.url}: {_short(exc)}") from exc

    def get_by_uri(self, uri: str) -> ProductRecord | None:
        """The row whose URI is ``uri`` (any version) or ``None``."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(products).where(products.c.uri == uri)).all()
                out = self._with_inputs(conn, rows)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog query failed on {self.url}: {_short(exc)}") from exc
        return out[0] if out else None

    def count(self, *, current_only: bool = False) -> int:
        """Number of product rows."""
        q = sa.select(sa.func.count()).select_from(products)
        if current_only:
            q = q.where(products.c.is_current == 1)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)


# ---- engine helpers ----------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    """First line of a database error, without SQL echo."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _parse_url(text: str) -> URL:
    try:
        url = sa.engine.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"invalid catalog URL: {exc}") from exc
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg2")
    elif url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise StoreError(
            f"unsupported catalog URL scheme {url.drivername!r}: use sqlite:////abs/catalog.db or postgresql://..."
        )
    return url


def _url_from_connection(conn_id: str) -> URL:
    from phangs_operators.stores.connections import get_connection

    conn = get_connection(conn_id, ("postgres", "postgresql", "sqlite"))
    if conn.conn_type == "sqlite":
        return sa.engine.make_url(f"sqlite:///{conn.host}")
    extra = conn.extra_dejson or {}
    query = {k: str(extra[k]) for k in ("sslmode", "sslrootcert", "sslcert", "sslkey") if k in extra}
    return URL.create(
        "postgresql+psycopg2",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 5432),
        database=conn.schema or None,
        query=query,
    )


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below drive transactions
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": 5, "application_name": "phangs-catalog"}
    )
