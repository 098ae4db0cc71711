"""Benchmark of the total-power chain: simulate ALMA TP data, reduce them to a cube.

Each phase runs in its own process (spawn) so that its peak resident memory (``ru_maxrss``)
is its own.  The baseline, measured in the same run, is the ``tiny`` preset (2 antennas, one
coverage, 110 channels); the ``bench`` preset (4 antennas, 2 coverages of a 150" square,
218 channels of 5.08 km/s, model of the interferometric ``bench`` preset) is reported with
ratios against it.  Steps timed: model image, TP simulation (model / predict / corrupt),
reduction (inspect / calibrate / select_on / baseline / grid / export_validate), both K ->
Jy/beam paths (beam factor and jyperk.csv).

Usage::

    python benchmarks/bench_singledish.py                 # tiny baseline + bench
    python benchmarks/bench_singledish.py --presets tiny  # quick check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

RESTFREQ_GHZ = 230.538
PHASECENTER = "J2000 12h00m00.0s -30d00m00.0s"
VWIDTH_KMS = 360.0
CHANNEL_KMS = 12.5


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _phase_model(root: str, preset: str, q: Any) -> None:
    from phangs_operators.casa import casa_session, casatools
    from phangs_operators.routines import simulate as sim

    casatools()
    t0 = time.perf_counter()
    with casa_session(Path(root) / "scratch_model"):
        info = sim._write_model_image(casatools(), Path(root) / "model.image", sim.GALAXIES["ngc9999"],
                                      sim._presets()[preset])
    q.put({"time_s": time.perf_counter() - t0, "peak_mb": _peak_mb(), "flux": info["line_flux_jykms"]})


def _phase_simulate(root: str, preset: str, q: Any) -> None:
    from phangs_operators.casa import casatasks
    from phangs_operators.routines.simulate_tp import simulate_tp_ms

    casatasks()  # import cost not counted
    t0 = time.perf_counter()
    m = simulate_tp_ms(Path(root) / "tp", model_image=Path(root) / "model.image", vsys_kms=500.0,
                       ms_name="ngc9999_tp.ms", preset=preset, seed=11)
    m["time_s"] = time.perf_counter() - t0
    m["peak_mb"] = _peak_mb()
    q.put(m)


def _phase_reduce(root: str, preset: str, jyperk: bool, q: Any) -> None:
    from phangs_operators.casa import casa_session, casatasks
    from phangs_operators.routines import simulate as sim
    from phangs_operators.routines.singledish import make_singledish_cube, product_velocity_grid

    casatasks()
    p = sim._presets()[preset]
    grid = product_velocity_grid(500.0, VWIDTH_KMS, CHANNEL_KMS,
                                 interf_native_kms=[sim.C_KMS * p.chan_width_hz / sim.CO21_REST_HZ])
    tag = "jyperk" if jyperk else "beam"
    work = Path(root) / f"work_{tag}"
    t0 = time.perf_counter()
    with casa_session(work, work / "casa.log"):
        r = make_singledish_cube([Path(root) / "tp" / "ngc9999_tp.ms"], Path(root) / f"cube_{tag}.fits",
                                 restfreq_ghz=RESTFREQ_GHZ, vsys_kms=500.0, vwidth_kms=VWIDTH_KMS,
                                 chan_dv_kms=CHANNEL_KMS, bl_order=1, phasecenter=PHASECENTER,
                                 jyperk_csv=Path(root) / "tp" / "jyperk.csv" if jyperk else None,
                                 velocity_grid_kms=grid, workdir=work, overwrite=True)
    d = r.to_dict()
    d["time_s"] = time.perf_counter() - t0
    d["peak_mb"] = _peak_mb()
    q.put(d)


def _run(target, *args) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    proc.start()
    out = q.get()
    proc.join()
    return out


def bench(preset: str, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    model = _run(_phase_model, str(root), preset)
    simu = _run(_phase_simulate, str(root), preset)
    beam = _run(_phase_reduce, str(root), preset, False)
    jyk = _run(_phase_reduce, str(root), preset, True)
    ms_mb = sum(f.stat().st_size for f in (root / "tp" / "ngc9999_tp.ms").rglob("*") if f.is_file()) / 2**20
    return {
        "preset": preset,
        "ms_size_mb": round(ms_mb, 1),
        "rows_on": simu["n_on_integrations"] * len(simu["antennas"]) * 1,
        "n_channels": simu["n_channels"],
        "model_image": {"time_s": round(model["time_s"], 2), "peak_mb": round(model["peak_mb"])},
        "simulate_tp": {"time_s": round(simu["time_s"], 2), "steps_s": simu["timings_s"],
                        "peak_mb": round(simu["peak_mb"])},
        "reduce_beam_factor": {"time_s": round(beam["time_s"], 2), "steps_s": beam["timings_s"],
                               "peak_mb": round(beam["peak_mb"])},
        "reduce_jyperk": {"time_s": round(jyk["time_s"], 2), "steps_s": jyk["timings_s"],
                          "peak_mb": round(jyk["peak_mb"])},
        "model_flux_jykms": simu["model_line_flux_jykms"],
        "cube_flux_beam_jykms": beam["total_flux_jykms"],
        "cube_flux_jyperk_jykms": jyk["total_flux_jykms"],
        "flux_ratio_beam": beam["total_flux_jykms"] / simu["model_line_flux_jykms"],
        "jyperk_over_beam": jyk["total_flux_jykms"] / beam["total_flux_jykms"],
        "baseline_rms_over_noise": {k: v / simu["noise_k"] for k, v in beam["baseline_rms"].items()},
        "beam_arcsec": beam["beam_arcsec"]["bmaj"],
        "imsize": beam["imsize"],
        "cube_noise_jy_beam": beam["cube_noise_jy_beam"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "bench"])
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_sd_") as tmp:
        for preset in args.presets:
            results[preset] = bench(preset, Path(tmp) / preset)
    if "tiny" in results and len(results) > 1:
        base = results["tiny"]
        for name, r in results.items():
            if name == "tiny":
                continue
            r["ratio_vs_tiny"] = {
                phase: round(r[phase]["time_s"] / base[phase]["time_s"], 2)
                for phase in ("model_image", "simulate_tp", "reduce_beam_factor", "reduce_jyperk")}
            r["ratio_vs_tiny"]["rows_x_channels"] = round(
                r["rows_on"] * r["n_channels"] / (base["rows_on"] * base["n_channels"]), 2)
    text = json.dumps(results, indent=1, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
