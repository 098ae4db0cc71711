"""SingleDishCubeOperator: thin wrapper of routines.singledish (stage total_power, CASA step)."""

from __future__ import annotations

import json

import pytest

from phangs_operators.operators.base import CASA_POOL, PhangsBaseOperator
from phangs_operators.operators.singledish import SingleDishCubeOperator

from .conftest import CHANNEL_KMS, PHASECENTER, RESTFREQ_GHZ, VWIDTH_KMS


def _op(tp_sim, tmp_path, **kw):
    args = dict(task_id="singledish_ngc9999_co21", workdir=str(tmp_path / "work"), tp_ms=[str(tp_sim["ms"])],
                out_fits=str(tmp_path / "sd" / "ngc9999_tp_co21.fits"), target="ngc9999", product="co21",
                restfreq_ghz=RESTFREQ_GHZ, vsys_kms=tp_sim["vsys"], vwidth_kms=VWIDTH_KMS,
                chan_dv_kms=CHANNEL_KMS, phasecenter=PHASECENTER, bl_order=1,
                velocity_grid_kms=list(tp_sim["grid"]))
    args.update(kw)
    return SingleDishCubeOperator(**args)


def test_operator_declares_stage_and_outputs(tp_sim, tmp_path):
    op = _op(tp_sim, tmp_path, jyperk_csv=str(tp_sim["jyperk"]))
    assert isinstance(op, PhangsBaseOperator)
    assert op.stage == "total_power" and op.casa_step and op.pool == CASA_POOL
    assert op.outputs({}) == [str(tmp_path / "sd" / "ngc9999_tp_co21.fits")]
    assert op.inputs({}) == [str(tp_sim["ms"]), str(tp_sim["jyperk"])]
    dry = op.execute({"params": {"dry_run": True}})
    assert dry["dry_run"] and not (tmp_path / "sd").exists()


@pytest.mark.casa
def test_operator_runs_the_routine_and_records_qa(tp_sim, tmp_path):
    op = _op(tp_sim, tmp_path)
    result = op.execute({"params": {}})
    assert result["out_fits"] == str(tmp_path / "sd" / "ngc9999_tp_co21.fits")
    assert (tmp_path / "sd" / "ngc9999_tp_co21.fits").is_file()
    qa = json.loads(op.qa_path({}).read_text())
    assert qa["stage"] == "total_power"
    assert set(qa["result"]["baseline_rms"]) == {f"ngc9999_tp.ms:{a}" for a in tp_sim["manifest"]["antennas"]}
    assert qa["result"]["total_flux_jykms"] > 0
    assert not (tmp_path / "work" / "scratch").exists() or not any((tmp_path / "work" / "scratch").iterdir())
    # finished outputs are not re-made
    again = op.execute({"params": {}})
    assert again == result
