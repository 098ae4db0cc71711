"""Benchmark of staging and imaging (issue 5): monolithic PHANGS recipe vs chunks on N workers.

Every measured step runs in a fresh ``spawn`` process (as an Airflow task would), so its wall
time includes the CASA import and its peak RSS (``ru_maxrss``) is that step's alone:

1. simulate the preset (skipped with ``--simdir`` pointing at an existing simulation);
2. stage ngc9999 12m+7m co21 (split, uvcontsub, regrid + average, concat, statwt);
3. image geometry; the monolithic dirty cube (its noise is the whole-cube noise);
4. monolithic ``clean_cube`` (dirty -> multiscale loop -> signal mask -> single-scale loop) with
   the whole-cube noise fixed (``noise_jy``) - the baseline;
5. the same recipe as ``image_chunk`` tasks over ``--chunks`` channel chunks on ``--workers``
   processes, then ``gather_chunks``.

Reported: stage/dirty/multiscale/singlescale times, chunked wall time (workers + gather) over
the monolithic wall time (goal <= 0.65 on 2 workers), and the peak memory of each chunk
worker over the monolithic process (goal <= 0.5). Ratios are measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_imaging.py --preset bench --workdir /tmp/bench_imaging
    .venv/bin/python benchmarks/bench_imaging.py --preset tiny --channel-kms 25   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REST_GHZ = 230.538


def _child(step: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one step in this (fresh) process; return its result, wall time and peak RSS."""
    t0 = time.perf_counter()
    if step == "import":
        from phangs_operators.casa import casatasks

        casatasks()
        out: Any = {}
    elif step == "simulate":
        from phangs_operators.routines.simulate import simulate

        out = {"manifest_targets": list(simulate(**kwargs)["targets"])}
    elif step == "stage":
        from phangs_operators.routines import vis

        out = vis.stage_line_product(**kwargs).to_dict()
    elif step == "geometry":
        from phangs_operators.routines import imaging

        out = imaging.image_geometry(**kwargs)
    elif step == "dirty":
        from phangs_operators.routines import imaging

        out = imaging.make_dirty_cube(**kwargs).to_dict()
    elif step == "clean":
        from phangs_operators.routines import imaging

        out = imaging.clean_cube(**kwargs).to_dict()
    elif step == "chunk":
        from phangs_operators.routines import imaging

        out = imaging.image_chunk(**kwargs).to_dict()
    elif step == "gather":
        from phangs_operators.routines import imaging

        out = imaging.gather_chunks(**kwargs).to_dict()
    else:  # pragma: no cover
        raise ValueError(step)
    wall = time.perf_counter() - t0
    return {"result": out, "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_step(step: str, **kwargs: Any) -> dict[str, Any]:
    """One step in one fresh spawned process (wall time measured around the process too)."""
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
        res = ex.submit(_child, step, kwargs).result()
    res["process_wall_s"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench"])
    ap.add_argument("--simdir", type=Path, default=None, help="existing simulation (skips step 1)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_imaging"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=None, help="number of chunks (default: --workers)")
    ap.add_argument("--channel-kms", type=float, default=5.1,
                    help="staged channel width (bench: 2 x 2.54 km/s native -> 5.08 km/s, ~71 channels)")
    ap.add_argument("--scales", default="0,2.5,5,10", help="multiscale scales in arcsec")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default: <workdir>/bench_imaging.json)")
    args = ap.parse_args(argv)

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"preset": args.preset, "workers": args.workers, "channel_kms": args.channel_kms}

    report["import"] = run_step("import")
    print(f"import: {report['import']['process_wall_s']:.1f} s, {report['import']['peak_rss_mb']:.0f} MB",
          flush=True)

    simdir = args.simdir.resolve() if args.simdir else work / f"sim_{args.preset}"
    if not (simdir / "manifest.json").exists():
        r = run_step("simulate", outdir=str(simdir), preset=args.preset, seed=42)
        report["simulate_s"] = r["wall_s"]
        print(f"simulate: {r['wall_s']:.1f} s", flush=True)
    manifest = json.loads((simdir / "manifest.json").read_text())
    target = manifest["targets"]["ngc9999"]
    ms = {n: str(simdir / i["path"]) for n, i in manifest["measurement_sets"].items()}

    staged = work / "ngc9999_12m+7m_co21.ms"
    r = run_step(
        "stage", ms_by_array={"12m": [ms["ngc9999_12m_mosaic.ms"]], "7m": [ms["ngc9999_7m_mosaic.ms"]]},
        out_ms=str(staged), line="co21", vsys_kms=target["vsys_kms"], vwidth_kms=target["vwidth_kms"],
        channel_kms=args.channel_kms, target_field="NGC9999", statwt_edge_kms=50.0,
        workdir=str(work / "scratch"), overwrite=True,
    )
    nchan = r["result"]["nchan"]
    report["stage"] = {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "nchan": nchan,
                       "chan_width_kms": r["result"]["chan_width_kms"]}
    print(f"stage: {r['wall_s']:.1f} s, {nchan} channels of {r['result']['chan_width_kms']:.3f} km/s, "
          f"{r['peak_rss_mb']:.0f} MB", flush=True)

    geometry = run_step("geometry", ms=str(staged),
                        phasecenter=f"J2000 {target['ra']} {target['dec']}")["result"]
    report["geometry"] = geometry
    print(f"geometry: cell {geometry['cell']} imsize {geometry['imsize']}", flush=True)

    from phangs_operators.routines.recipes import DEFAULT_CUBE_TCLEAN

    tclean_kw = dict(DEFAULT_CUBE_TCLEAN)
    scales = [float(x) for x in args.scales.split(",")]
    common = {"geometry": geometry, "tclean_kw": tclean_kw, "restfreq_ghz": REST_GHZ,
              "workdir": str(work / "scratch")}

    r = run_step("dirty", ms=str(staged), imagename_root=str(work / "mono_dirty"), overwrite=True, **common)
    noise = r["result"]["noise_jy"]
    report["dirty"] = {"wall_s": r["wall_s"], "tclean_s": r["result"]["timings"]["dirty"],
                       "peak_rss_mb": r["peak_rss_mb"], "noise_jy": noise}
    print(f"dirty: {r['wall_s']:.1f} s (tclean {r['result']['timings']['dirty']:.1f} s), noise {noise:.4g} Jy/beam, "
          f"{r['peak_rss_mb']:.0f} MB", flush=True)

    # monolithic baseline (per-plane beams as the chunks, whole-cube noise fixed)
    mono = run_step("clean", ms=str(staged), imagename_root=str(work / "mono"), noise_jy=noise,
                    scales_arcsec=scales, per_plane_beam=True, keep_backups=False, overwrite=True, **common)
    t = mono["result"]["timings"]
    report["monolithic"] = {"wall_s": mono["wall_s"], "process_wall_s": mono["process_wall_s"],
                            "peak_rss_mb": mono["peak_rss_mb"], "timings": t,
                            "loops": {k: len(v) for k, v in mono["result"]["stages"].items()},
                            "model_flux_jy": mono["result"]["model_flux_jy"]}
    print(f"monolithic: {mono['process_wall_s']:.1f} s (dirty {t['dirty']:.1f}, multiscale {t['multiscale']:.1f}, "
          f"singlescale {t['singlescale']:.1f}), {mono['peak_rss_mb']:.0f} MB", flush=True)

    from phangs_operators.routines.imaging import chunk_root, plan_chunks

    nchunks = args.chunks or args.workers
    plan = plan_chunks(nchan, math.ceil(nchan / nchunks))
    roots = [chunk_root(work / "chunks" / "cube", c["start"], c["nchan"]) for c in plan]
    t0 = time.perf_counter()
    chunk_runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as ex:
        futs = {
            ex.submit(_child, "chunk", dict(ms=str(staged), imagename_root=root, start=c["start"], nchan=c["nchan"],
                                            noise_jy=noise, scales_arcsec=scales, overwrite=True, **common)): c
            for c, root in zip(plan, roots, strict=True)
        }
        for f in as_completed(futs):
            res = f.result()
            c = futs[f]
            chunk_runs.append({"start": c["start"], "nchan": c["nchan"], "wall_s": res["wall_s"],
                               "peak_rss_mb": res["peak_rss_mb"], "timings": res["result"]["timings"],
                               "loops": {k: len(v) for k, v in res["result"]["stages"].items()}})
            print(f"  chunk {c['start']}-{c['start'] + c['nchan'] - 1}: {res['wall_s']:.1f} s, "
                  f"{res['peak_rss_mb']:.0f} MB", flush=True)
    chunks_wall = time.perf_counter() - t0
    g = run_step("gather", chunk_roots=roots, out_root=str(work / "gathered"), overwrite=True)
    total = chunks_wall + g["process_wall_s"]
    worst_rss = max(c["peak_rss_mb"] for c in chunk_runs)
    base_rss = report["import"]["peak_rss_mb"]
    report["chunked"] = {
        "chunks": chunk_runs, "chunks_wall_s": chunks_wall, "gather_s": g["process_wall_s"], "total_wall_s": total,
        "max_worker_rss_mb": worst_rss,
    }
    report["ratios"] = {
        "chunked_over_monolithic_wall": total / mono["process_wall_s"],
        "worker_over_monolithic_peak_rss": worst_rss / mono["peak_rss_mb"],
        "worker_over_monolithic_rss_above_import": (worst_rss - base_rss) / max(mono["peak_rss_mb"] - base_rss, 1.0),
    }
    print(f"chunked: {chunks_wall:.1f} s on {args.workers} workers + gather {g['process_wall_s']:.1f} s = "
          f"{total:.1f} s -> {report['ratios']['chunked_over_monolithic_wall']:.2f} x monolithic; "
          f"peak worker RSS {worst_rss:.0f} MB = {report['ratios']['worker_over_monolithic_peak_rss']:.2f} x "
          f"monolithic ({report['ratios']['worker_over_monolithic_rss_above_import']:.2f} above the "
          f"{base_rss:.0f} MB import baseline)", flush=True)
    out = args.out or work / "bench_imaging.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
