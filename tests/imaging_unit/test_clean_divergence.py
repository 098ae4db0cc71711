"""The clean loop stops on a diverging tclean and goes back to the model of the loop before.

tclean is replaced by a stand-in that writes the model image (a folder, as CASA's) and returns
the stop code: the loop logic, snapshots and the restore are exercised without CASA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phangs_operators.routines import imaging
from phangs_operators.routines.recipes import CleanSchedule


def _write_model(root: str, value: float) -> None:
    model = Path(root + ".model")
    model.mkdir(exist_ok=True)
    (model / "table.f0").write_text(repr(value))


@pytest.fixture
def job(tmp_path):
    root = str(tmp_path / "img")
    _write_model(root, 1.0)
    Path(root + ".residual").mkdir()
    return imaging._Job(ms=tmp_path / "x.ms", final_root=root, tmp_root=root, kw={"vis": "x.ms"}, suffix="",
                        mfs=False, nchan=1)


def _patch(monkeypatch, stopcodes, calls):
    def fake_tclean(kw):
        calls.append(dict(kw))
        if kw["niter"] == 0:  # the major cycle that rebuilds residual and image from the model
            return {"stopcode": 0}
        value = float((Path(kw["imagename"] + ".model") / "table.f0").read_text())
        code = stopcodes.pop(0)
        _write_model(kw["imagename"], value * (1000.0 if code in imaging.DIVERGED_STOPCODES else 2.0))
        return {"stopcode": code, "iterdone": kw["niter"]}

    monkeypatch.setattr(imaging, "_run_tclean", fake_tclean)
    monkeypatch.setattr(imaging, "_image_sum", lambda p: float((Path(p) / "table.f0").read_text()))
    monkeypatch.setattr(imaging, "measure_noise", lambda p: 0.001)


def _loop(job):
    return imaging._clean_loop(job, "singlescale", deconvolver="hogbom", scales=None, snr=1.0,
                               schedule=CleanSchedule(), fixed_noise=None, stop_at_negative=False,
                               usemask="user", pbmask=None)


def test_diverging_loop_restores_the_previous_model_and_stops(job, monkeypatch):
    calls: list[dict] = []
    _patch(monkeypatch, [1, 1, 5, 1], calls)
    records = _loop(job)
    assert [r["stopcode"] for r in records] == [1, 1, 5]
    assert records[-1]["stop"] and records[-1]["reason"] == "diverged"
    # the model is the one after loop 2 (1 -> 2 -> 4), not the diverged 4000
    assert records[-1]["model_flux"] == pytest.approx(4.0)
    assert float((Path(job.tmp_root + ".model") / "table.f0").read_text()) == pytest.approx(4.0)
    # one extra major cycle (niter 0, calcres) rebuilt residual and image from that model
    assert calls[-1]["niter"] == 0 and calls[-1]["calcres"] is True
    assert not list(Path(job.tmp_root).parent.glob("*.prev"))  # no snapshot left behind


def test_converging_loops_leave_no_snapshots(job, monkeypatch):
    calls: list[dict] = []
    _patch(monkeypatch, [1] * 30, calls)
    records = _loop(job)
    assert all(r["reason"] != "diverged" for r in records)
    assert all(c["niter"] > 0 for c in calls)
    assert not list(Path(job.tmp_root).parent.glob("*.prev"))
