-- phangs catalog schema, version 1.
-- Portable SQL accepted by both PostgreSQL (>= 12) and SQLite (>= 3.24): TEXT/BIGINT/INTEGER/
-- DOUBLE PRECISION columns, TEXT primary keys, ISO-8601 UTC timestamps as TEXT, JSON as TEXT.
-- Statements are separated by lines holding only ";".

CREATE TABLE IF NOT EXISTS targets (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
)
;
CREATE TABLE IF NOT EXISTS runs (
    run_key      TEXT PRIMARY KEY,
    dag_id       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    map_index    INTEGER NOT NULL,
    try_number   INTEGER NOT NULL,
    host         TEXT NOT NULL,
    software     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
)
;
CREATE TABLE IF NOT EXISTS products (
    product_id      TEXT PRIMARY KEY,
    target          TEXT NOT NULL REFERENCES targets (name),
    config          TEXT NOT NULL,
    product         TEXT NOT NULL,
    stage           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    resolution      TEXT NOT NULL,
    version         INTEGER NOT NULL,
    is_current      INTEGER NOT NULL,
    parent_id       TEXT,
    filename        TEXT NOT NULL,
    uri             TEXT NOT NULL UNIQUE,
    size_bytes      BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    bunit           TEXT,
    shape           TEXT,
    bmaj_arcsec     DOUBLE PRECISION,
    bmin_arcsec     DOUBLE PRECISION,
    bpa_deg         DOUBLE PRECISION,
    pixel_arcsec    DOUBLE PRECISION,
    chan_width_kms  DOUBLE PRECISION,
    vel_min_kms     DOUBLE PRECISION,
    vel_max_kms     DOUBLE PRECISION,
    restfreq_hz     DOUBLE PRECISION,
    ra_deg          DOUBLE PRECISION,
    dec_deg         DOUBLE PRECISION,
    ra_min_deg      DOUBLE PRECISION,
    ra_max_deg      DOUBLE PRECISION,
    dec_min_deg     DOUBLE PRECISION,
    dec_max_deg     DOUBLE PRECISION,
    footprint       TEXT,
    keyset_hash     TEXT,
    recipe          TEXT,
    software        TEXT NOT NULL,
    run_key         TEXT REFERENCES runs (run_key),
    dag_id          TEXT,
    run_id          TEXT,
    task_id         TEXT,
    try_number      INTEGER,
    host            TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CONSTRAINT uq_products_natural_version
        UNIQUE (target, config, product, stage, kind, resolution, version)
)
;
CREATE UNIQUE INDEX IF NOT EXISTS uq_products_one_current
    ON products (target, config, product, stage, kind, resolution) WHERE is_current = 1
;
CREATE INDEX IF NOT EXISTS ix_products_kind ON products (kind)
;
CREATE INDEX IF NOT EXISTS ix_products_sha256 ON products (sha256)
;
CREATE TABLE IF NOT EXISTS inputs (
    product_id    TEXT NOT NULL REFERENCES products (product_id),
    input_uri     TEXT NOT NULL,
    input_sha256  TEXT,
    PRIMARY KEY (product_id, input_uri)
)
;
