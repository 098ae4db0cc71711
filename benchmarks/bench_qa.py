"""Benchmark of the QA report: generation time of a synthetic target (or of a real run).

Measured in the same run:

* ``io_floor``: reading every FITS product the report reads once (numpy, no work): the floor;
* ``scores``: the report without figures (record checks + FITS product checks + HTML/JSON);
* ``report``: the full report with the figures.

Ratios are against the I/O floor. For a real run (``--workdir`` x3, the target's imaging,
postprocess and derived directories) the report time is also compared with the pipeline time
recorded in the QA records (sum of ``elapsed_s``: task time, not wall time) against the
issue's budget (report < 10 % of the pipeline).

Usage::

    python benchmarks/bench_qa.py                       # synthetic 40 x 128 x 128 target
    python benchmarks/bench_qa.py --n 256 --nchan 80    # larger synthetic cubes
    python benchmarks/bench_qa.py --workdir IMG --workdir POST --workdir DER --target ngc0628
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from phangs_operators.qa.checks import read_fits_cube  # noqa: E402
from phangs_operators.qa.collect import discover_products, load_records  # noqa: E402
from phangs_operators.qa.report import build_report  # noqa: E402
from phangs_operators.qa.synthetic import make_synthetic_target  # noqa: E402


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="synthetic image size (pixels)")
    ap.add_argument("--nchan", type=int, default=40, help="synthetic channels")
    ap.add_argument("--workdir", action="append", default=[], help="real run: a target working directory")
    ap.add_argument("--target", default="synth")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (best time is reported)")
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench_qa_"))
    if args.workdir:
        workdirs = args.workdir
        what = f"run of {args.target} ({', '.join(workdirs)})"
    else:
        t0 = time.perf_counter()
        st = make_synthetic_target(tmp / "data", args.target, n=args.n, nchan=args.nchan)
        print(f"synthetic target {args.nchan}x{args.n}x{args.n} written in {time.perf_counter() - t0:.2f} s")
        workdirs = st.workdirs
        what = f"synthetic target {args.nchan}x{args.n}x{args.n}"

    # warm up imports (matplotlib, astropy, scipy) so they do not count
    build_report(args.target, workdirs, tmp / "warm", make_plots=True)
    records, _ = load_records(workdirs)
    files = sorted({f for ps in discover_products(records) for f in
                    (ps.cube, ps.noise, ps.strictmask, ps.broadmask, ps.singledish, ps.interf_cube,
                     *ps.moments.values()) if f and Path(f).is_file()})
    io_floor = _best(lambda: [read_fits_cube(f) for f in files], args.repeat)
    scores = _best(lambda: build_report(args.target, workdirs, tmp / "s", make_plots=False), args.repeat)
    report = _best(lambda: build_report(args.target, workdirs, tmp / "r", make_plots=True), args.repeat)
    res = build_report(args.target, workdirs, tmp / "r", make_plots=True)
    nbytes = sum(Path(f).stat().st_size for f in files)
    out = {"what": what, "records": len(records), "fits_files": len(files), "fits_mb": round(nbytes / 2**20, 1),
           "figures": res.n_figures, "scores": res.n_scores, "io_floor_s": round(io_floor, 3),
           "scores_only_s": round(scores, 3), "report_s": round(report, 3),
           "scores_over_io": round(scores / io_floor, 1) if io_floor else None,
           "report_over_io": round(report / io_floor, 1) if io_floor else None,
           "load_average": os.getloadavg()[0]}
    pipeline = sum(float(r.get("elapsed_s") or 0.0) for r in records)
    if args.workdir and pipeline > 0:
        out["pipeline_task_s"] = round(pipeline, 1)
        out["report_over_pipeline"] = round(report / pipeline, 4)
        out["within_10_percent"] = report / pipeline < 0.10
    print(f"QA report benchmark, {what}: {len(records)} records, {len(files)} FITS ({out['fits_mb']} MB), "
          f"{res.n_scores} scores, {res.n_figures} figures")
    print(f"  I/O floor (read every FITS once): {io_floor:8.3f} s")
    print(f"  scores only (no figures):         {scores:8.3f} s  ({out['scores_over_io']} x I/O floor)")
    print(f"  full report (with figures):       {report:8.3f} s  ({out['report_over_io']} x I/O floor)")
    if "report_over_pipeline" in out:
        print(f"  pipeline task time from records:  {pipeline:8.1f} s -> report = "
              f"{100 * out['report_over_pipeline']:.2f} % (budget 10 %)")
    print(f"  (best of {args.repeat}; 1-min load average {out['load_average']:.1f})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
