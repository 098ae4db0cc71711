"""Fixtures of the QA report tests: synthetic targets (QA records + FITS products) made once."""

from __future__ import annotations

import pytest

from phangs_operators.qa.report import build_report
from phangs_operators.qa.synthetic import make_synthetic_target


@pytest.fixture(scope="session")
def good_target(tmp_path_factory):
    """A fault-free synthetic target."""
    root = tmp_path_factory.mktemp("qa_good")
    return make_synthetic_target(root, "synth")


@pytest.fixture(scope="session")
def good_report(good_target, tmp_path_factory):
    """The full report (with figures) of the fault-free target."""
    out = tmp_path_factory.mktemp("qa_good_report") / "synth"
    return build_report("synth", good_target.workdirs, out, run_id="manual__test", keyset_hash="abc123")


@pytest.fixture(scope="session")
def fault_reports(tmp_path_factory):
    """Score-only reports of one synthetic target per fault: {fault: (target, report doc)}."""
    import json

    out = {}
    for fault, kw in {"bowl": {"bowl": True}, "loop_cap": {"loop_cap": True}, "tp_error": {"tp_error": 0.2},
                      "stripe": {"stripe": True}}.items():
        root = tmp_path_factory.mktemp(f"qa_{fault}")
        st = make_synthetic_target(root, f"synth_{fault}", **kw)
        res = build_report(st.target, st.workdirs, root / "report", make_plots=False)
        out[fault] = (res, json.loads(open(res.json).read()))
    return out
