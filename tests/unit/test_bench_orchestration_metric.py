"""The overhead metric of benchmarks/bench_orchestration.py on a hand-made timeline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_orchestration", ROOT / "benchmarks" / "bench_orchestration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_orchestration", module)
    spec.loader.exec_module(module)
    return module


def _ti(task_id, map_index, start, end, routine, casa=None, queued=None):
    return {"task_id": task_id, "map_index": map_index, "state": "success", "start": start, "end": end,
            "queued": queued, "scheduled": None, "routine_s": routine, "casa_import_s": casa}


def test_overhead_excludes_slot_waits(bench):
    # 2 slots; plan 1-2 s; three chunks after it; gather after the chunks
    tis = [
        _ti("plan", -1, 1.0, 2.0, 0.5),
        _ti("image_chunk", 0, 2.5, 10.0, 7.0, casa=1.0),    # ready 2.0 (plan end): gap 0.5
        _ti("image_chunk", 1, 3.0, 11.0, 7.5, casa=1.0),    # ready 2.0: gap 1.0
        _ti("image_chunk", 2, 10.25, 18.0, 7.5, casa=1.0),  # waits for the slot freed at 10.0: gap 0.25
        _ti("gather", -1, 19.0, 20.0, 0.8),                 # ready 18.0 (last chunk end): gap 1.0
    ]
    upstream = {"image_chunk": {"plan"}, "gather": {"image_chunk"}}
    out = bench.analyse(tis, upstream, parallelism=2, run_start=0.0)
    by = {(t["task_id"], t["map_index"]): t for t in tis}
    assert by[("plan", -1)]["startup_gap_s"] == pytest.approx(1.0)
    assert by[("image_chunk", 0)]["startup_gap_s"] == pytest.approx(0.5)
    assert by[("image_chunk", 1)]["startup_gap_s"] == pytest.approx(1.0)
    chunk2 = by[("image_chunk", 2)]
    assert chunk2["startup_gap_s"] == pytest.approx(0.25)
    assert chunk2["slot_wait_s"] == pytest.approx(8.0)  # parallelism, not overhead
    assert chunk2["in_ti_s"] == pytest.approx(0.25)
    assert by[("gather", -1)]["startup_gap_s"] == pytest.approx(1.0)
    # in-TI: 0.5, 0.5, 0.5, 0.25, 0.2 ; gaps: 1, 0.5, 1, 0.25, 1
    assert out["in_ti_mean_s"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.25 + 0.2) / 5, abs=1e-3)
    assert out["startup_gap_mean_s"] == pytest.approx((1 + 0.5 + 1 + 0.25 + 1) / 5, abs=1e-3)
    assert out["overhead_per_ti_s"] == pytest.approx(out["in_ti_mean_s"] + out["startup_gap_mean_s"], abs=2e-3)
    assert out["overhead_incl_casa_import_per_ti_s"] == pytest.approx(out["overhead_per_ti_s"] + 3 / 5, abs=2e-3)
    assert out["casa_import_mean_s"] == pytest.approx(1.0)
    assert out["chunks"] == 3 and out["n_ti_ran"] == 5
    assert out["slot_wait_mean_s"] == pytest.approx(8.0 / 5)
    assert out["negative_gaps_clamped"] == 0


def test_skipped_tis_take_no_part_and_bad_parallelism_fails(bench):
    tis = [_ti("plan", -1, 0.5, 1.0, 0.2), {**_ti("qa", -1, None, None, None), "state": "skipped"}]
    out = bench.analyse(tis, {"qa": {"plan"}}, parallelism=2, run_start=0.0)
    assert out["n_ti"] == 2 and out["n_ti_ran"] == 1
    assert out["n_ti_states"] == {"skipped": 1, "success": 1}
    with pytest.raises(ValueError, match="parallelism"):
        bench.analyse(tis, {}, parallelism=0, run_start=0.0)
