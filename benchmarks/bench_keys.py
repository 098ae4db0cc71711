"""Benchmark: load and validate the whole PHANGS-ALMA reference key set.

Goal: ``load_project`` on the reference key set (160 targets, 663 MS, ~2,900 lines) in
under 0.5 s.  Baseline measured in the same run: reading the same files and splitting
every line into words (the I/O + tokenising floor), so the ratio shows the cost of
validation and modelling on top of that.

Run::

    .venv/bin/python benchmarks/bench_keys.py [--repeat 20] [--keys PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from phangs_operators.keys import load_project

REFERENCE_KEYS = Path("/work/shared/reference/phangs-alma_keys")


def _baseline(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        for line in p.read_bytes().decode("utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                n += len(line.split())
    return n


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--keys", type=Path, default=REFERENCE_KEYS)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    project = load_project(args.keys)  # first (cold) load
    cold = time.perf_counter() - t0
    files = list(project.key_files)
    n_lines = sum(len(p.read_text().splitlines()) for p in files)

    load_times = _time(lambda: load_project(args.keys), args.repeat)
    base_times = _time(lambda: _baseline(files), args.repeat)
    summary_times = _time(project.summary, args.repeat)

    med_load = statistics.median(load_times)
    med_base = statistics.median(base_times)
    print(f"key set: {project.master_key} ({len(files)} files, {n_lines} lines)")
    print(f"cold load_project:           {cold * 1e3:8.2f} ms")
    print(f"load_project (median of {args.repeat}): {med_load * 1e3:8.2f} ms  (min {min(load_times) * 1e3:.2f})")
    print(f"baseline read+split:         {med_base * 1e3:8.2f} ms")
    print(f"ratio load/baseline:         {med_load / med_base:8.1f} x")
    print(f"Project.summary():           {statistics.median(summary_times) * 1e3:8.2f} ms")
    goal = 0.5
    print(f"goal < {goal} s: {'PASS' if cold < goal and med_load < goal else 'FAIL'}")
    return 0 if med_load < goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
