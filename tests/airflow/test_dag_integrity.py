"""DAG integrity: the DAG files import cleanly, and every DAG is documented and safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_KEYS = ROOT.parent / "shared" / "reference" / "phangs-alma_keys"

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert any(d.startswith("phangs_ngc") for d in dagbag.dags)
    assert "phangs_example_image_one_ms" in dagbag.dags


def test_every_dag_is_documented_tagged_and_owned(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 40, dag_id
        assert "phangs" in dag.tags, dag_id
        for task in dag.tasks:
            assert task.owner == "phangs", (dag_id, task.task_id)
            assert task.doc_md, (dag_id, task.task_id)


def test_casa_tasks_retry_in_the_casa_pool(dagbag):
    dag = dagbag.dags["phangs_ngc9999"]
    casa = [t for t in dag.tasks if t.task_id.endswith(("stage_visibilities", "clean_chunk", "gather_cube"))]
    assert casa
    for task in casa:
        assert task.retries >= 1, task.task_id
        assert task.pool == "casa", task.task_id
        assert task.execution_timeout is not None


def test_target_dag_params_form(dagbag):
    dag = dagbag.dags["phangs_ngc9999"]
    params = dag.params
    assert set(params.keys()) >= {"configs", "products", "stages", "chunk_size", "force", "dry_run"}
    assert "12m+7m" in params["configs"]
    assert "co21" in params["products"]
    assert params["chunk_size"] >= 1 and params["force"] is False and params["dry_run"] is False


def test_invalid_conf_is_rejected_before_a_run(dagbag):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["phangs_ngc9999"]
    for bad, name in (({"chunk_size": "abc"}, "chunk_size"), ({"configs": ["../../etc"]}, "configs"),
                      ({"stages": ["rm -rf"]}, "stages")):
        params = copy.deepcopy(dag.params)
        with pytest.raises(ParamValidationError, match=name):
            params.update(bad)
            params.validate()


def test_dag_files_do_not_import_casa():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith('casat'))))"
    )
    for dag_file in [ROOT / "dags" / "phangs_targets.py", ROOT / "dags" / "examples" / "example_image_one_ms.py"]:
        proc = subprocess.run([sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_airflow_cli_reports_no_import_errors(airflow_db):
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "list-import-errors", "-l", "-o", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
