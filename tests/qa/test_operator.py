"""QAReportOperator (Airflow-free execution with a fake task instance), links and plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from phangs_operators.operators.qa import (
    LINK_NAME,
    QA_TASK_ID,
    QAReportLink,
    QAReportOperator,
    QAReportRunLink,
    report_url,
)
from phangs_operators.qa.synthetic import make_synthetic_target


class FakeTI:
    dag_id, run_id, map_index, try_number = "phangs_synth", "manual__op", -1, 1

    def __init__(self):
        self.xcoms = {}

    def xcom_push(self, key, value):
        self.xcoms[key] = value


class Key:
    dag_id, task_id, run_id, map_index, try_number = "phangs_synth", QA_TASK_ID, "manual__op", -1, 1


@pytest.fixture(scope="module")
def small_target(tmp_path_factory):
    return make_synthetic_target(tmp_path_factory.mktemp("qa_op"), "small", n=64, nchan=16, loop_cap=True)


def _op(target, workdir, **kw):
    return QAReportOperator(task_id=QA_TASK_ID, target=target.target, workdirs=target.workdirs,
                            workdir=str(workdir), **kw)


def test_init_does_no_io(tmp_path):
    op = QAReportOperator(task_id=QA_TASK_ID, target="t", workdirs=[str(tmp_path / "nope")],
                          workdir=str(tmp_path / "derived"), min_score="{{ params.min_score }}")
    assert not (tmp_path / "derived").exists()
    assert op.stage == "publish" and op.retries == 0
    assert {"min_score", "workdirs", "out_dir"} <= set(op.template_fields)
    assert [link.name for link in op.operator_extra_links] == [LINK_NAME]


def test_execute_fails_below_min_score_with_reasons(small_target, tmp_path):
    op = _op(small_target, tmp_path / "derived", min_score=0.33)
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as exc:
        op.execute({"ti": ti, "params": {}})
    msg = str(exc.value)
    assert "QA of small failed" in msg and "clean_convergence" in msg and "loop cap" in msg
    html = tmp_path / "derived" / "qa_report" / "report.html"
    assert html.is_file() and ti.xcoms["qa_report"]["qa_report_html"] == str(html)
    # the link of the failed task still points at the report
    assert QAReportLink().get_link(op, ti_key=Key()) == html.resolve().as_uri()


def test_execute_passes_and_records(small_target, tmp_path):
    op = _op(small_target, tmp_path / "derived", min_score=0.1, out_dir=str(tmp_path / "out"), plots=False)
    out = op.execute({"ti": FakeTI(), "params": {}})
    assert out["status"] == "pass" and out["worst_score"] < 0.33
    assert Path(out["qa_report_html"]).parent == tmp_path / "out"
    record = json.loads((tmp_path / "derived" / "qa" / f"{QA_TASK_ID}.json").read_text())
    assert record["stage"] == "publish" and record["result"]["status"] == "pass"
    # its own record is not scored on the next run (no self-reference)
    out2 = op.execute({"ti": FakeTI(), "params": {}})
    assert out2["n_scores"] == out["n_scores"]


def test_bad_min_score_is_an_error(small_target, tmp_path):
    op = _op(small_target, tmp_path / "d", min_score="high")
    with pytest.raises(ValueError, match="min_score"):
        op.execute({"ti": FakeTI(), "params": {}})


def test_links(tmp_path, monkeypatch):
    op = QAReportOperator(task_id=QA_TASK_ID, target="t", workdirs=[], workdir=str(tmp_path))
    assert QAReportLink().get_link(op, ti_key=Key()) == ""  # no report yet
    (tmp_path / "qa_report").mkdir()
    (tmp_path / "qa_report" / "report.html").write_text("<html></html>")
    assert QAReportLink().get_link(op, ti_key=Key()).startswith("file://")
    monkeypatch.setenv("PHANGS_QA_REPORT_URL", "https://qa.example.org/{target}/{run_id}/report.html")
    assert report_url("/x/report.html", "t", "r1") == "https://qa.example.org/t/r1/report.html"
    other = type("K", (), {"dag_id": "not_phangs", "run_id": "r", "task_id": "x", "map_index": -1})()
    assert QAReportRunLink().get_link(op, ti_key=other) == ""
    assert QAReportRunLink().name == QAReportLink().name == "QA report"


def test_plugin_registers_the_links():
    from phangs_operators.plugin import PhangsPlugin

    assert any(isinstance(x, QAReportLink) for x in PhangsPlugin.operator_extra_links)
    assert any(isinstance(x, QAReportRunLink) for x in PhangsPlugin.global_operator_extra_links)


def test_catalog_listing_and_overview_from_catalog(small_target, tmp_path):
    from phangs_operators.qa.catalog import overview_from_catalog, reports_from_catalog
    from phangs_operators.stores import Catalog

    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    products = (tmp_path / "products").as_uri()
    for run in ("manual__1", "manual__2"):  # a re-run gives a new version, one current row per file
        ti = FakeTI()
        ti.run_id = run
        op = _op(small_target, tmp_path / "derived", min_score=0.0, plots=False, catalog=True,
                 products_uri=products, catalog_url=catalog_url)
        out = op.execute({"ti": ti, "params": {}})
        assert out["status"] == "pass" and out["catalog"]
    cat = Catalog.from_url(catalog_url)
    rows = cat.list_products(kind="qa_report")
    cat.close()
    assert sorted(r.stage for r in rows) == ["report_html", "report_json"]
    assert all(r.target == "small" and r.config == "qa" for r in rows)
    reports = reports_from_catalog(catalog_url)
    assert len(reports) == 1 and json.loads(reports[0].read_text())["run_id"] == "manual__2"
    page = Path(overview_from_catalog(catalog_url, tmp_path / "site" / "overview.html"))
    text = page.read_text()
    assert ">small<" in text
    href = text.split('href="')[1].split('"')[0]
    assert (page.parent / href).resolve() == (tmp_path / "derived" / "qa_report" / "report.html").resolve()
