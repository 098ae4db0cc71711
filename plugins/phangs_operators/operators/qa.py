"""QA report operator and the "QA report" operator extra links.

:class:`QAReportOperator` is the last task of a target DAG: it collects the QA records of the
target's working directories, scores them (and the FITS products they name), writes the
static HTML + JSON report next to the products and returns its path. When the worst score
is below ``min_score`` (a DAG param) the task fails with the reasons, so the run shows red.

Links: :class:`QAReportLink` (on the QA task; Airflow 3 evaluates it in the worker when the
task ends, pass or fail, and stores the URL as an XCom) and :class:`QAReportRunLink` (a
global link, registered by :mod:`phangs_operators.plugin`, that shows the same URL on every
task of a ``phangs_*`` DAG run once its QA task has run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException

from phangs_operators.operators.base import PhangsBaseOperator

if TYPE_CHECKING:  # pragma: no cover
    from airflow.sdk.types import TaskInstanceKey

#: task id the DAG factory should give the QA task (the global link looks it up)
QA_TASK_ID = "qa_report"
LINK_NAME = "QA report"
#: optional URL template of served reports: ``{target}``, ``{run_id}``, ``{path}`` (the HTML path)
URL_ENV = "PHANGS_QA_REPORT_URL"


def report_url(html_path: str | os.PathLike[str], target: str = "", run_id: str = "") -> str:
    """URL of a report: ``$PHANGS_QA_REPORT_URL`` formatted, else a ``file://`` URI."""
    template = os.environ.get(URL_ENV)
    if template:
        return template.format(target=target, run_id=run_id, path=str(html_path).lstrip("/"))
    return Path(html_path).resolve().as_uri()


def _parse_min_score(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"min_score must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {v}")
    return v


class QAReportOperator(PhangsBaseOperator):
    """Score a target run and write its QA report (HTML + JSON, figures in ``img/``).

    Parameters
    ----------
    target
        Target name.
    workdirs
        The target's working directories (imaging, postprocess, derived, ...): their
        ``qa/*.json`` records are scored.
    out_dir
        Report folder; default ``<workdir>/qa_report`` (``workdir`` is the derived products'
        directory in the DAG, i.e. next to the products).
    min_score
        Worst acceptable score (0-1, templated: ``{{ params.min_score }}``); ``None`` uses the
        thresholds file's ``report.min_score``.
    thresholds
        Project thresholds file merged over the defaults (``None``: ``$PHANGS_QA_THRESHOLDS``).
    keyset_hash
        Hash of the key set, shown in the report.
    plots
        False writes the scores only (no figures).
    catalog
        Also upload ``report.json`` / ``report.html`` to the product store and list them in
        the catalog (kind ``qa_report``), for the overview page of all targets.
    products_uri, catalog_url
        Store and catalog (default as for the publish task: ``$PHANGS_PRODUCTS_URI`` ...).

    XCom: ``{"qa_report_html", "report_json", "worst_score", "status", "failing", ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "target", "workdirs", "out_dir",
                                      "min_score", "thresholds", "keyset_hash", "products_uri", "catalog_url")
    stage = "publish"
    ui_color = "#d9f2e6"
    operator_extra_links = ()  # set below (the link class needs the operator class)

    def __init__(self, *, target: str, workdirs: Sequence[str], out_dir: str | None = None,
                 min_score: float | str | None = None, thresholds: str | None = None,
                 keyset_hash: str | None = None, plots: bool = True, catalog: bool = False,
                 products_uri: str | None = None, catalog_url: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)  # a failing score does not go away by retrying
        super().__init__(**kwargs)
        self.target = target
        self.workdirs = list(workdirs)
        self.out_dir = out_dir
        self.min_score = min_score
        self.thresholds = thresholds
        self.keyset_hash = keyset_hash
        self.plots = plots
        self.catalog = catalog
        self.products_uri, self.catalog_url = products_uri, catalog_url

    def report_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path(self.workdir) / "qa_report"

    def inputs(self, context: Mapping[str, Any]) -> list[str]:
        return sorted(str(p) for wd in self.workdirs for p in (Path(wd) / "qa").glob("*.json"))

    def outputs(self, context: Mapping[str, Any]) -> list[str]:
        return []  # always re-scored: the records may have changed since the last report

    def run_routine(self, context: Mapping[str, Any]) -> dict[str, Any]:
        from phangs_operators.qa.report import build_report  # noqa: PLC0415

        ti = context.get("ti")
        min_score = _parse_min_score(self.min_score)
        result = build_report(self.target, self.workdirs, self.report_dir(), thresholds=self.thresholds,
                              run_id=getattr(ti, "run_id", None), dag_id=getattr(ti, "dag_id", None),
                              keyset_hash=self.keyset_hash, min_score=min_score, make_plots=self.plots)
        self.log.info("QA report %s: %s, worst score %s", result.html, result.status, result.worst_score)
        out = result.to_dict()
        if self.catalog:
            out["catalog"] = self._publish(result, context)
        if result.failing:
            if ti is not None:
                ti.xcom_push(key="qa_report", value=out)
            lines = "\n".join(f"  - {r}" for r in result.failing)
            raise AirflowFailException(
                f"QA of {self.target} failed: {len(result.failing)} score(s) below the minimum; report "
                f"{result.html}\n{lines}")
        return out


    def _publish(self, result: Any, context: Mapping[str, Any]) -> dict[str, Any]:
        from phangs_operators.operators.publish import resolve_store_settings  # noqa: PLC0415
        from phangs_operators.qa.catalog import publish_report  # noqa: PLC0415
        from phangs_operators.stores import RunContext  # noqa: PLC0415

        uri, conn_id, catalog_url = resolve_store_settings(self.products_uri, self.catalog_url, self.workdir)
        ti = context.get("ti")
        run = RunContext(dag_id=getattr(ti, "dag_id", "manual") or "manual",
                         run_id=getattr(ti, "run_id", "manual") or "manual", task_id=self.task_id, map_index=-1,
                         try_number=int(getattr(ti, "try_number", 1) or 1))
        self.log.info("listing the QA report of %s in the catalog (store %s)", self.target, uri)
        return publish_report(result.json, result.html, target=self.target, products_uri=uri,
                              catalog_url=catalog_url, conn_id=conn_id, keyset_hash=self.keyset_hash, run=run)


class QAReportLink(BaseOperatorLink):
    """"QA report" button on the QA task: the report written by that task."""

    operators = [QAReportOperator]

    @property
    def name(self) -> str:
        return LINK_NAME

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        out_dir = getattr(operator, "out_dir", None)
        workdir = getattr(operator, "workdir", None)
        folder = Path(out_dir) if out_dir else (Path(workdir) / "qa_report" if workdir else None)
        if folder is None or "{{" in str(folder):
            return ""
        html = folder / "report.html"
        if not html.is_file():
            return ""
        return report_url(html, getattr(operator, "target", ""), getattr(ti_key, "run_id", ""))


QAReportOperator.operator_extra_links = (QAReportLink(),)


class QAReportRunLink(BaseOperatorLink):
    """Global "QA report" button on every task of a ``phangs_*`` DAG run.

    Evaluated in the API server: reads the URL the run's ``qa_report`` task stored (the XCom
    of :class:`QAReportLink`); empty (button disabled) until that task has run.
    """

    @property
    def name(self) -> str:
        return LINK_NAME

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from phangs_operators.dag_factory import DAG_ID_PREFIX  # noqa: PLC0415

        if not str(getattr(ti_key, "dag_id", "")).startswith(DAG_ID_PREFIX):
            return ""
        try:
            from airflow.serialization.definitions.operatorlink import XComOperatorLink  # noqa: PLC0415

            key = ti_key._replace(task_id=QA_TASK_ID, map_index=-1)
            return XComOperatorLink(name=LINK_NAME, xcom_key=QAReportLink().xcom_key).get_link(operator, ti_key=key)
        except Exception:  # noqa: BLE001 - no metadata DB (e.g. in a worker): no link
            return ""
