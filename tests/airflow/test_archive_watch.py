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
