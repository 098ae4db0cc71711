-- phangs catalog schema, version 2: state of the archive watcher (phangs_operators.archive).
-- One row per measurement set seen under an ms_root: its fingerprint, the target it feeds
-- (NULL when no key file knows it), whether its change triggered a run, and that run's id.

CREATE TABLE IF NOT EXISTS archive_state (
    ms_path      TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    target       TEXT,
    status       TEXT NOT NULL,
    run_id       TEXT,
    seen_at      TEXT NOT NULL
)
;
