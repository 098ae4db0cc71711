"""Scale-out: the demo target DAG through the CeleryExecutor, triggered over the REST API.

api-server, scheduler, dag-processor and one ``airflow celery worker`` (queues ``default`` and
``casa``) run as child processes with their own ``AIRFLOW_HOME``, a fresh PostgreSQL
metadata database (also the Celery result backend) and an empty Redis database as broker
(:class:`tests.airflow.cluster.AirflowCluster`). The test gets a JWT from ``POST /auth/token``,
unpauses ``phangs_ngc9997`` and starts it with ``POST /api/v2/dags/{id}/dagRuns``, waits for
success, checks that every task instance that ran was executed by the Celery worker, and stops
everything. PostgreSQL or Redis missing FAILS the test (it never skips).
"""

from __future__ import annotations

import re
import shutil
import urllib.error

import pytest

from tests.airflow.cluster import AirflowCluster, ServiceMissing, demo_env

pytestmark = [pytest.mark.airflow, pytest.mark.casa, pytest.mark.services, pytest.mark.slow]

DAG_ID = "phangs_ngc9997"
RUN_ID = "celery_api_run_1"
CONF = {"configs": ["12m"], "products": ["co21"], "chunk_size": 12}


@pytest.fixture(scope="module")
def celery_run(tiny_demo, tmp_path_factory):
    """Start the Celery deployment, run the demo DAG once through the REST API, stop it."""
    home = tmp_path_factory.mktemp("celery_cluster")
    demo_root = home / "demo"  # own copy: the outputs must not be shared with other tests
    shutil.copytree(tiny_demo.data, demo_root / "data", symlinks=True)
    cluster = AirflowCluster(home=home, executor="CeleryExecutor", extra_env=demo_env(demo_root),
                             parallelism=2, casa_slots=2)
    try:
        cluster.start()
    except ServiceMissing as exc:
        cluster.stop()
        pytest.fail(f"the Celery test needs its services: {exc}")
    except BaseException:
        cluster.stop()
        raise
    try:
        # without a token the REST API refuses
        with pytest.raises(urllib.error.HTTPError) as denied:
            cluster.request("GET", f"/api/v2/dags/{DAG_ID}", auth=False)
        assert denied.value.code == 401
        cluster.wait_dag(DAG_ID)
        created = cluster.trigger(DAG_ID, CONF, RUN_ID)
        run = cluster.wait_run(DAG_ID, RUN_ID, timeout=600)
        tis = cluster.task_instances(DAG_ID, RUN_ID)
        worker_log = cluster.log_tail("celery-worker", 10**9)
        health = cluster.request("GET", "/api/v2/monitor/health", auth=False)
        yield {"created": created, "run": run, "tis": tis, "worker_log": worker_log, "health": health,
               "demo_root": demo_root, "cluster": cluster}
    finally:
        procs = dict(cluster.procs)
        cluster.stop()
        for name, p in procs.items():
            assert p.poll() is not None, f"{name} still running after stop()"


def test_run_triggered_through_rest_succeeds(celery_run):
    created, run = celery_run["created"], celery_run["run"]
    assert created["triggered_by"] == "rest_api" and created["conf"] == CONF
    states = {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in celery_run["tis"]}
    assert run["state"] == "success", states
    assert not [k for k, s in states.items() if s not in ("success", "skipped")], states
    clean = [t for t in celery_run["tis"] if t["task_id"] == "12m_co21.clean_chunk"]
    assert len(clean) >= 2 and all(t["state"] == "success" for t in clean)
    # selection by the conf: the continuum product was not asked for
    assert states["12m_cont.stage_visibilities[-1]"] == "skipped"


def test_every_task_ran_on_the_celery_worker(celery_run):
    ran = [t for t in celery_run["tis"] if t["state"] == "success"]
    assert len(ran) >= 10
    log = celery_run["worker_log"]
    # log paths: .../run_id=R/task_id=T/[map_index=M/]attempt=N.log (no map_index for unmapped tasks)
    executed = {(task, index or "-1") for task, index in
                re.findall(rf"run_id={RUN_ID}/task_id=([^/']+)/(?:map_index=(-?\d+)/)?attempt=", log)}
    missing = [(t["task_id"], t["map_index"]) for t in ran if (t["task_id"], str(t["map_index"])) not in executed]
    assert not missing, f"task instances not executed by the Celery worker: {missing}"
    assert "Executing workload in Celery" in log
    assert {t["queue"] for t in ran} <= {"default", "casa"}
    assert all(t["hostname"] for t in ran)
    assert celery_run["health"]["scheduler"]["status"] == "healthy"


def test_products_of_the_run_exist(celery_run):
    derived = celery_run["demo_root"] / "derived" / "ngc9997"
    assert (derived / "ngc9997_12m_co21_strict_mom0.fits").is_file()
    qa = celery_run["demo_root"] / "imaging" / "ngc9997" / "qa" / "12m_co21.clean_chunk.0.json"
    assert qa.is_file() and RUN_ID in qa.read_text()
