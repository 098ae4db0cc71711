#!/usr/bin/env python3
"""Parse time of the per-target DAGs built from the real PHANGS-ALMA key set (issue 8).

Each run is a fresh interpreter (the dag-processor parses a DAG file in a fresh process):
Airflow and the phangs_operators modules are imported first, then it times loading the key
set alone (baseline) and building every whole-target DAG from it (90 DAGs, every task of
each: what ``dags/phangs_targets.py`` hands to the dag-processor), as wall-clock and as CPU
time of the process. The machine is shared: the load average is reported with the numbers,
CPU time is less sensitive to it. Median of ``--repeat`` runs. Goal: all DAGs < 2 s.
Usage: python benchmarks/bench_dag_parse.py [--keys DIR] [--repeat N] [--plugins DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


_CHILD = r"""
import collections, json, logging, sys, time
sys.path.insert(0, sys.argv[1])
logging.disable(logging.WARNING)
import airflow.sdk  # noqa: F401  (the dag-processor has Airflow imported before it parses)
from phangs_operators import dag_factory
from phangs_operators.keys import load_project
from phangs_operators.operators import base, derived, imaging, postprocess, publish, qa, singledish, staging  # noqa: F401
t0 = time.perf_counter()
load_project(sys.argv[2])
load_s = time.perf_counter() - t0
t0, c0 = time.perf_counter(), time.process_time()
dags = dag_factory.build_dags(sys.argv[2])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
kinds = collections.Counter("publish" if t.task_id.startswith("publish_") else t.task_id.rsplit(".", 1)[-1]
                            for d in dags.values() for t in d.tasks)
print(json.dumps({"wall": wall, "cpu": cpu, "load": load_s, "dags": len(dags),
                  "tasks": sum(len(d.tasks) for d in dags.values()), "kinds": kinds}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=Path, default=ROOT.parent / "shared" / "reference" / "phangs-alma_keys")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--plugins", type=Path, default=ROOT / "plugins",
                    help="directory holding the phangs_operators package to measure")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_dag_parse.json")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load_before = os.getloadavg()
    runs = []
    for _ in range(args.repeat):
        # a fresh interpreter per run, as the dag-processor parses a DAG file in a fresh
        # process: imports done first, then the key set is loaded and every DAG built
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(args.plugins), str(args.keys)],
                              capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    n_dags, n_tasks = runs[-1]["dags"], runs[-1]["tasks"]
    load_s = statistics.median(r["load"] for r in runs)
    out = {"dags": n_dags, "tasks": n_tasks, "tasks_by_step": dict(collections.Counter(runs[-1]["kinds"]).most_common()),
           "load_keys_s": load_s,
           "build_all_dags_s": wall, "build_all_dags_min_s": min(r["wall"] for r in runs),
           "build_all_dags_cpu_s": cpu, "build_all_dags_cpu_min_s": min(r["cpu"] for r in runs),
           "per_dag_ms": 1000 * wall / max(n_dags, 1), "per_task_us": 1e6 * wall / max(n_tasks, 1),
           "per_task_cpu_us": 1e6 * cpu / max(n_tasks, 1),
           "ratio_build_over_load": wall / load_s if load_s else None, "goal_s": 2.0,
           "repeat": args.repeat, "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
           "cpus": os.cpu_count(), "plugins": str(args.plugins)}
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
