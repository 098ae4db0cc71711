"""Airflow plugin of phangs-airflow: registers the "QA report" operator extra links.

Airflow 3 stores an operator's own extra links (``operator_extra_links`` on the class, here
:class:`~phangs_operators.operators.qa.QAReportLink` on the QA task) as XComs when the task
ends; listing the link here also makes it known to the plugin manager (``airflow plugins``).
The global link puts the same "QA report" button on every task of a ``phangs_*`` DAG run.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from phangs_operators.operators.qa import QAReportLink, QAReportRunLink


class PhangsPlugin(AirflowPlugin):
    """phangs-airflow UI additions."""

    name = "phangs_airflow"
    operator_extra_links = [QAReportLink()]
    global_operator_extra_links = [QAReportRunLink()]
