"""In a real (in-process) DAG run, the QA task stores its "QA report" link and the global link
shows it on the other tasks of the run; a failing QA fails the task (red in the UI)."""

from __future__ import annotations

import pendulum
import pytest

from phangs_operators.qa.synthetic import make_synthetic_target

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return make_synthetic_target(tmp_path_factory.mktemp("qa_dag"), "dagt", n=64, nchan=16)


def _run(target, tmp_path, dag_id, min_score):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Param

    from phangs_operators.operators.qa import QA_TASK_ID, QAReportOperator

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
             params={"min_score": Param(min_score, type="number", minimum=0, maximum=1)},
             render_template_as_native_obj=True) as dag:
        other = EmptyOperator(task_id="other")
        qa = QAReportOperator(task_id=QA_TASK_ID, target=target.target, workdirs=target.workdirs,
                              workdir=str(tmp_path / "derived"), min_score="{{ params.min_score }}", plots=False)
        other >> qa
    _serialize(dag)
    return dag, dag.test()


def _serialize(dag):
    """Write the in-memory DAG to the metadata DB (dag.test() needs a serialized version)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session)


def _ti_state(run, task_id):
    return next(ti.state for ti in run.get_task_instances() if ti.task_id == task_id)


def test_failed_qa_task_is_red_and_links_its_report(airflow_db, target, tmp_path):
    from airflow.models.taskinstancekey import TaskInstanceKey

    from phangs_operators.operators.qa import QA_TASK_ID, QAReportRunLink

    dag, run = _run(target, tmp_path / "fail", "phangs_qa_link_fail", 1.0)
    assert _ti_state(run, QA_TASK_ID) == "failed" and run.state == "failed"
    url = QAReportRunLink().get_link(None, ti_key=TaskInstanceKey(dag.dag_id, "other", run.run_id, 1, -1))
    assert url == (tmp_path / "fail" / "derived" / "qa_report" / "report.html").resolve().as_uri()
