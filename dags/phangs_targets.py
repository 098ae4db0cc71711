# airflow DAG file (the words "airflow" and "dag" let the DAG processor pick it up)
"""One DAG per whole target of the PHANGS key set (``$PHANGS_KEY_DIR`` / Variable
``phangs_key_dir`` / ``include/keys``), built by :mod:`phangs_operators.dag_factory`.

Nothing heavy happens here: the key files are parsed once (well under a second for the
160-target PHANGS-ALMA key set); CASA is imported only inside the tasks.
"""

from phangs_operators.dag_factory import build_dags

for _dag_id, _dag in build_dags().items():
    globals()[_dag_id] = _dag
