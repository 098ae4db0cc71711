"""Archive-driven processing: a new MS under ms_root starts its target's DAG exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.airflow


def _fake_ms(path: Path, content: bytes = b"table") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "table.dat").write_bytes(content)
    (path / "ANTENNA").mkdir(exist_ok=True)
    (path / "ANTENNA" / "table.dat").write_bytes(b"ant")
    return path


def _runs(dag_id: str) -> list[str]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return sorted(r.run_id for r in session.query(DagRun).filter(DagRun.dag_id == dag_id))


@pytest.fixture(scope="module")
def watch_dag(airflow_db, tmp_path_factory):
    demo = Path(os.environ["PHANGS_DEMO_ROOT"])
    catalog = tmp_path_factory.mktemp("archive") / "catalog.db"
    os.environ["PHANGS_CATALOG_URL"] = f"sqlite:///{catalog}"
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from airflow.models import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "phangs_archive_watch.py")).dags["phangs_archive_watch"]
    yield dag, demo / "data" / "ms"
    os.environ.pop("PHANGS_CATALOG_URL", None)


def test_new_ms_triggers_its_target_exactly_once(watch_dag):
    dag, ms_root = watch_dag
    _fake_ms(ms_root / "2024.1.99999.S" / "ngc9999_12m_mosaic.ms")
    _fake_ms(ms_root / "stray" / "unknown_galaxy.ms")
    before = _runs("phangs_ngc9999")

    run = dag.test()
    assert str(run.state).endswith("success")
    after_first = _runs("phangs_ngc9999")
    new_runs = sorted(set(after_first) - set(before))
    assert len(new_runs) == 1 and new_runs[0].startswith("archive__")

    scan = run.get_task_instance("scan_archive").xcom_pull(task_ids="scan_archive")
    assert [i["ms"].endswith("unknown_galaxy.ms") for i in scan["unknown"]] == [True]

    # a second scan finds nothing new and triggers nothing
    run2 = dag.test()
    assert str(run2.state).endswith("success")
    assert _runs("phangs_ngc9999") == after_first

    # a changed MS triggers one new run
    _fake_ms(ms_root / "2024.1.99999.S" / "ngc9999_12m_mosaic.ms", b"table, recalibrated")
    dag.test()
    assert len(_runs("phangs_ngc9999")) == len(after_first) + 1


def _catalog_rows() -> dict[str, str]:
    import sqlalchemy as sa

    from phangs_operators.archive import archive_state
    from phangs_operators.stores import Catalog

    catalog = Catalog.from_url(os.environ["PHANGS_CATALOG_URL"])  # migrated: the table exists
    try:
        with catalog.engine.connect() as conn:
            return {r.ms_path: r.status for r in conn.execute(sa.select(archive_state))}
    finally:
        catalog.close()


def test_s3_archive_ms_is_downloaded_and_triggers_once(watch_dag, moto_s3, monkeypatch):
    """An MS uploaded under the S3 archive prefix runs its target once, from a local copy."""
    from tests.fixtures.services import aws_conn_json, free_port

    dag, ms_root = watch_dag
    prefix = "archive-watch/calibrated"
    s3 = moto_s3.client()
    files = {"table.dat": b"main", "table.f0": b"rows", "ANTENNA/table.dat": b"ant"}
    for name, body in files.items():
        s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/2024.1.99999.S/ngc9997_12m_single.ms/{name}", Body=body)
    s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/2030.1.00001.S/ngc0001_12m.ms/table.dat", Body=b"?")
    uri = f"s3://{moto_s3.bucket}/{prefix}"

    # bucket unreachable: the run fails naming the endpoint, nothing is triggered or recorded
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_PHANGS_ARCHIVE", aws_conn_json(f"http://127.0.0.1:{port}"))
    monkeypatch.setenv("PHANGS_ARCHIVE_URI", uri)
    rows_before, runs_before = _catalog_rows(), _runs("phangs_ngc9997")
    failed = dag.test()
    assert str(failed.state).endswith("failed")
    assert str(failed.get_task_instance("scan_archive").state).endswith("failed")
    assert str(failed.get_task_instance("record_scan").state).endswith("upstream_failed")
    assert _catalog_rows() == rows_before and _runs("phangs_ngc9997") == runs_before

    monkeypatch.setenv("PHANGS_ARCHIVE_CONN_ID", moto_s3.conn_id)
    run = dag.test()
    assert str(run.state).endswith("success")
    new_runs = sorted(set(_runs("phangs_ngc9997")) - set(runs_before))
    assert len(new_runs) == 1 and new_runs[0].startswith("archive__")
    local = ms_root / "2024.1.99999.S" / "ngc9997_12m_single.ms"
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()} == files
    fetched = run.get_task_instance("fetch_archive").xcom_pull(task_ids="fetch_archive")
    assert [d["local_path"] for d in fetched["downloaded"]] == [str(local)]
    assert [i["ms"] for i in fetched["unknown"]] == [f"{uri}/2030.1.00001.S/ngc0001_12m.ms"]
    rows = _catalog_rows()
    assert rows[f"{uri}/2024.1.99999.S/ngc9997_12m_single.ms"] == "triggered"
    assert rows[f"{uri}/2030.1.00001.S/ngc0001_12m.ms"] == "unknown"
    assert not any(k.endswith("ngc9997_12m_single.ms") and k.startswith("/") for k in rows)  # copy not re-counted

    # second scan: no new run
    after_first = _runs("phangs_ngc9997")
    assert str(dag.test().state).endswith("success")
    assert _runs("phangs_ngc9997") == after_first

    # a changed object: one new run, and the local copy is replaced
    s3.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/2024.1.99999.S/ngc9997_12m_single.ms/table.f0",
                  Body=b"recalibrated rows")
    assert str(dag.test().state).endswith("success")
    assert len(_runs("phangs_ngc9997")) == len(after_first) + 1
    assert (local / "table.f0").read_bytes() == b"recalibrated rows"
