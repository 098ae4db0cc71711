"""Archive-driven processing: find new or changed measurement sets and the targets they feed.

The scan walks the ``ms_root`` search paths of a key set, fingerprints every measurement
set (relative path, size and mtime of each file of the MS directory), and compares the
fingerprints with the state recorded in the catalog (table ``archive_state``, catalog
migration 0002; never in
memory, so a restarted scheduler or another worker sees the same history). Each MS is mapped
to its target through the ``ms_file_key``; a mosaic part maps to its whole target, whose DAG
runs. An MS no key file knows about is *reported* (logged and recorded with status
``unknown``), never silently dropped.

Exactly once: the trigger run id of a target is derived from the fingerprints that caused it
(``archive__<sha256[:16]>``), so a scan that is repeated before its state was recorded
triggers a run id that already exists, which the trigger skips.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from phangs_operators.dag_factory import dag_id_for
from phangs_operators.keys.model import Project
from phangs_operators.stores.catalog import Catalog, utc_now

log = logging.getLogger(__name__)

archive_state = sa.Table(
    "archive_state", sa.MetaData(),
    sa.Column("ms_path", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("seen_at", sa.Text, nullable=False),
)


def fingerprint_ms(ms: str | os.PathLike[str]) -> str:
    """SHA-256 over (relative path, size, mtime_ns) of every file of an MS directory."""
    root = Path(ms)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def find_measurement_sets(roots: list[Path]) -> list[Path]:
    """Every ``*.ms`` directory under the roots (not descending into an MS)."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            log.warning("ms_root %s does not exist", root)
            continue
        for dirpath, dirnames, _ in os.walk(root):
            keep = []
            for d in sorted(dirnames):
                if d.endswith(".ms"):
                    found.append(Path(dirpath) / d)
                else:
                    keep.append(d)
            dirnames[:] = keep
    return found


@dataclass
class ScanResult:
    """What a scan found. ``triggers`` are ready for ``TriggerDagRunOperator.expand_kwargs``."""

    new: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    triggers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ensure_table(catalog: Catalog) -> None:
    """The table comes with catalog migration 0002; opening the catalog migrates it."""
    if catalog.schema_version() < 2:
        catalog.migrate()


def _ms_index(project: Project) -> dict[Path, str]:
    """Resolved MS path -> whole target (a mosaic part maps to its mosaic)."""
    index: dict[Path, str] = {}
    for entry in project.ms_entries():
        whole = project.mosaic_of(entry.target) or entry.target
        for cand in project.ms_candidates(entry):
            index[cand.resolve()] = whole
    return index


def scan_archive(project: Project, catalog: Catalog) -> ScanResult:
    """Compare the MS under the ``ms_root`` paths with the recorded state (no writes)."""
    _ensure_table(catalog)
    index = _ms_index(project)
    with catalog.engine.connect() as conn:
        state = {row.ms_path: (row.fingerprint, row.status) for row in conn.execute(sa.select(archive_state))}
    result = ScanResult()
    per_target: dict[str, list[str]] = {}
    for ms in find_measurement_sets(project.roots.get("ms_root", [])):
        key = str(ms.resolve())
        fp = fingerprint_ms(ms)
        target = index.get(ms.resolve())
        item = {"ms": key, "fingerprint": fp, "target": target}
        seen_fp, seen_status = state.get(key, (None, None))
        if seen_fp == fp and not (seen_status == "unknown" and target is not None):
            result.unchanged += 1
            continue
        if target is None:
            log.warning("measurement set %s belongs to no target of the key set %s: reported, not run",
                        key, project.master_key)
            result.unknown.append(item)
            continue
        (result.changed if key in state else result.new).append(item)
        per_target.setdefault(target, []).append(f"{key}\0{fp}")
    for target, items in sorted(per_target.items()):
        digest = hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]
        result.triggers.append({
            "trigger_dag_id": dag_id_for(target),
            "trigger_run_id": f"archive__{digest}",
            "conf": {},
        })
    return result


def record_scan(catalog: Catalog, scan: dict[str, Any]) -> int:
    """Record the fingerprints of a scan (after its targets were triggered); idempotent."""
    _ensure_table(catalog)
    run_of = {t["trigger_dag_id"]: t["trigger_run_id"] for t in scan.get("triggers", [])}
    rows = []
    for status in ("new", "changed", "unknown"):
        for item in scan.get(status, []):
            target = item.get("target")
            run_id = run_of.get(dag_id_for(target)) if target else None
            rows.append({"ms_path": item["ms"], "fingerprint": item["fingerprint"], "target": target,
                         "status": "unknown" if status == "unknown" else "triggered",
                         "run_id": run_id, "seen_at": utc_now()})
    with catalog.transaction() as conn:
        for row in rows:
            conn.execute(archive_state.delete().where(archive_state.c.ms_path == row["ms_path"]))
            conn.execute(archive_state.insert().values(**row))
    return len(rows)
