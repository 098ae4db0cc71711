# airflow DAG file (the words "airflow" and "dag" let the DAG processor pick it up)
"""One DAG per whole target of the PHANGS key set (``$PHANGS_KEY_DIR`` / Variable
``phangs_key_dir`` / ``include/keys``), built by :mod:`phangs_operators.dag_factory`.

Nothing heavy happens here: the key files are parsed once; CASA is imported only inside the
tasks. When a worker parses this file to run one task, only that task's DAG is built
(Airflow's parsing context), which keeps task start-up short.
"""

from airflow.sdk import get_parsing_context

from phangs_operators.dag_factory import DAG_ID_PREFIX, build_dags

_running = get_parsing_context().dag_id
_only = [_running[len(DAG_ID_PREFIX):]] if _running and _running.startswith(DAG_ID_PREFIX) else None
_dags = build_dags(targets=_only) if _only else {}
if not _dags:  # the DAG processor, or a DAG id that is not one target: build them all
    _dags = build_dags()
for _dag_id, _dag in _dags.items():
    globals()[_dag_id] = _dag
