#!/usr/bin/env python3
"""Parse time of the per-target DAGs built from the real PHANGS-ALMA key set (issue 8).

Measures, in one run: loading the key set alone (baseline), and building every whole-target
DAG (90 DAGs) from it, median of ``--repeat`` runs each. Goal: building all DAGs < 2 s.
Usage: python benchmarks/bench_dag_parse.py [--keys DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=Path, default=ROOT.parent / "shared" / "reference" / "phangs-alma_keys")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from phangs_operators.dag_factory import build_dags
    from phangs_operators.keys import load_project

    build_dags(args.keys)  # warm-up: imports
    load_t, build_t, n_dags, n_tasks = [], [], 0, 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        load_project(args.keys)
        load_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dags = build_dags(args.keys)
        build_t.append(time.perf_counter() - t0)
        n_dags, n_tasks = len(dags), sum(len(d.tasks) for d in dags.values())
    out = {"dags": n_dags, "tasks": n_tasks, "load_keys_s": statistics.median(load_t),
           "build_all_dags_s": statistics.median(build_t),
           "per_dag_ms": 1000 * statistics.median(build_t) / max(n_dags, 1),
           "ratio_build_over_load": statistics.median(build_t) / statistics.median(load_t), "goal_s": 2.0}
    print(json.dumps(out, indent=2))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_dag_parse.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
