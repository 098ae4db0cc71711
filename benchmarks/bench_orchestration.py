"""Orchestration overhead of the channel-chunk fan-out under a real LocalExecutor scheduler.

Starts api-server + scheduler + dag-processor (``AIRFLOW__CORE__EXECUTOR=LocalExecutor``,
parallelism 2, pool ``casa`` with 2 slots, PostgreSQL metadata DB made for the run and dropped
after it) with :class:`tests.airflow.cluster.AirflowCluster`, triggers runs through the REST
API and measures, per run:

* ``wall_s``: run start -> run end (REST ``dagRuns``);
* ``ti_sum_s``: sum over task instances of (end - start);
* ``routine_sum_s``: sum of the routine times, the ``elapsed_s`` of each task's QA JSON
  (this is the baseline measured in the same run);
* ``overhead_per_ti_s`` = (``ti_sum_s`` - ``routine_sum_s``) / n_TI over the TIs that ran a
  routine (task process start-up, DAG parse in the task process, XCom, API calls);
* ``latency_*``: scheduling latency queued -> start per TI (mean / median / max), and
  scheduled -> queued;
* ``slot_overhead_per_ti_s`` = (``wall_s`` x parallelism - ``routine_sum_s``) / n_TI: executor
  slot-seconds not spent in routines per TI (process start-up before ``start_date``, scheduling
  gaps, and slots left idle while a serial task runs: an upper bound of the DAG overhead);
* ``wall_over_ideal`` = ``wall_s`` / (``routine_sum_s`` / parallelism), the price of running
  the routines as Airflow tasks.

Two series (``--series``):

``example`` (default, the 4/16/64 sweep)
    a DAG written into the benchmark's own dags folder (``bench_chunk_sweep``: the three
    operators of the example DAG ``phangs_example_image_one_ms``, plan_chunks ->
    image_chunk[n] -> gather_cube, dirty cubes, complete image geometry) on a 64-channel MS: the tiny simulated 12m MS of ``ngc9997``
    (56 channels) extended to 64 channels of the same width (see :func:`make_example_ms`), ``nchan=64`` and
    ``chunk_size`` 16 / 4 / 1 -> 4 / 16 / 64 chunks with the same total imaging work. The demo
    target's staged co21 cube has only 36 channels, so 16 and 64 chunks cannot be made from it.
``demo``
    the demo target DAG ``phangs_ngc9997`` (configs 12m, products co21, stages staging +
    imaging: stage, geometry, plan, dirty[n], threshold, clean[n], gather) with ``chunk_size``
    9 / 3 / 2 / 1 -> 4 / 12 / 18 / 36 chunks of its 36-channel staged cube.

Before each run the series' working folder is emptied, so every task really runs.

Usage::

    .venv/bin/python benchmarks/bench_orchestration.py [--series example demo] [--chunks 4 16 64]
        [--data DIR_WITH_TINY_SIMULATION] [--keep]

Prints a table and writes ``benchmarks/results/orchestration_<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

from tests.airflow.cluster import AirflowCluster, demo_env  # noqa: E402

log = logging.getLogger("bench_orchestration")

DEMO_DAG = "phangs_ngc9997"
EXAMPLE_NCHAN = 64
DEMO_NCHAN = 36
PARALLELISM = 2


# The fan-out DAG of the chunk sweep: the three operators of dags/examples/example_image_one_ms.py
# (plan_chunks -> image_chunk[n] -> gather_cube), with a complete image geometry (that example
# passes neither a phase centre nor an [nx, ny] imsize, which ImageChunkOperator requires).
SWEEP_DAG = "bench_chunk_sweep"
SWEEP_DAG_FILE = '''# airflow DAG file written by benchmarks/bench_orchestration.py
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from phangs_operators.operators.imaging import GatherCubeOperator, ImageChunkOperator, PlanChunksOperator

MS = os.environ["PHANGS_EXAMPLE_MS"]
WORKDIR = os.environ["PHANGS_EXAMPLE_WORKDIR"]

with DAG(dag_id="bench_chunk_sweep", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         catchup=False, tags=["phangs", "benchmark"], default_args={"owner": "phangs", "retries": 0},
         render_template_as_native_obj=True,
         params={"nchan": Param(64, type="integer"), "chunk_size": Param(16, type="integer")}) as dag:
    plan = PlanChunksOperator(task_id="plan_chunks", nchan="{{ params.nchan }}",
                              chunk_size="{{ params.chunk_size }}", workdir=WORKDIR, retries=0)
    chunks = ImageChunkOperator.partial(
        task_id="image_chunk", ms=MS, chunk_dir=str(Path(WORKDIR) / "chunks"), name="sweep", mode="clean",
        workdir=WORKDIR, retries=0,
        geometry={"cell": "1.0arcsec", "imsize": [64, 64], "phasecenter": "J2000 12h00m00.0s -30d00m00.0s"},
        tclean_kw={"specmode": "cube", "deconvolver": "hogbom", "niter": 0, "gridder": "standard",
                   "weighting": "briggs", "robust": 0.5},
    ).expand_kwargs(plan.output)
    GatherCubeOperator(task_id="gather_cube", chunks=chunks.output, out_root=str(Path(WORKDIR) / "sweep_cube"),
                       workdir=WORKDIR, retries=0)
'''
TARGETS_DAG_FILE = '''# airflow DAG file: the project's per-target DAGs (as dags/phangs_targets.py)
from phangs_operators.dag_factory import build_dags

for _dag_id, _dag in build_dags().items():
    globals()[_dag_id] = _dag
'''


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def make_data(root: Path, data: Path | None) -> Path:
    """Tiny simulation in ``root/data`` (copied from ``data`` when given)."""
    target = root / "data"
    if data is not None:
        shutil.copytree(data, target, symlinks=True)
    else:
        from phangs_operators.routines.simulate import simulate

        simulate(target, preset="tiny", seed=42)
    return target


def make_example_ms(data: Path, out: Path, nchan: int = EXAMPLE_NCHAN) -> Path:
    """A ``nchan``-channel MS from the tiny ``ngc9997`` 12m MS (56 channels).

    CASA refuses to regrid onto channels narrower than the input, so the band is extended
    instead: a copy whose spectral window is shifted up by its own bandwidth is concatenated
    with the original and the two windows are combined into one, of which the first ``nchan``
    channels are kept (same channel width as the original).
    """
    from phangs_operators.casa import casa_session, casatasks, casatools

    manifest = json.loads((data / "manifest.json").read_text())
    info = manifest["measurement_sets"]["ngc9997_12m_single.ms"]
    work = out.parent / "casa_scratch"
    work.mkdir(parents=True, exist_ok=True)
    lo_ms, hi_ms = work / "lo.ms", work / "hi.ms"
    shutil.copytree(data / info["path"], lo_ms)
    shutil.copytree(data / info["path"], hi_ms)
    with casa_session(work, out.parent / "make_example_ms.log"):
        tb = casatools().table()
        tb.open(str(hi_ms / "SPECTRAL_WINDOW"), nomodify=False)
        try:
            freq = tb.getcol("CHAN_FREQ")
            shift = freq.shape[0] * (freq[1, 0] - freq[0, 0])
            tb.putcol("CHAN_FREQ", freq + shift)
            tb.putcol("REF_FREQUENCY", tb.getcol("REF_FREQUENCY") + shift)
        finally:
            tb.close()
        both = work / "both.ms"
        casatasks().concat(vis=[str(lo_ms), str(hi_ms)], concatvis=str(both))
        casatasks().mstransform(vis=str(both), outputvis=str(out), datacolumn="data", combinespws=True,
                                regridms=True, mode="channel", nchan=nchan, start=0, width=1)
    shutil.rmtree(work, ignore_errors=True)
    log.info("example MS %s: %d channels from %s (%d channels)", out, nchan, info["path"], info["n_channels"])
    return out


def _qa_records(folder: Path, run_id: str) -> dict[tuple[str, int], dict]:
    out: dict[tuple[str, int], dict] = {}
    for path in folder.rglob("qa/*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("run_id") == run_id:
            out[(rec["task_id"], int(rec.get("map_index", -1)))] = rec
    return out


def measure(cluster: AirflowCluster, dag_id: str, conf: dict, run_id: str, workdir: Path,
            timeout: float) -> dict[str, Any]:
    """Trigger one run, wait for it and reduce its task instances and QA records."""
    t0 = time.monotonic()
    cluster.trigger(dag_id, conf, run_id)
    run = cluster.wait_run(dag_id, run_id, timeout=timeout, poll=1)
    trigger_to_end = time.monotonic() - t0
    tis = cluster.task_instances(dag_id, run_id)
    qa = _qa_records(workdir, run_id)
    rows = []
    for ti in tis:
        start, end = _ts(ti.get("start_date")), _ts(ti.get("end_date"))
        queued, scheduled = _ts(ti.get("queued_when")), _ts(ti.get("scheduled_when"))
        rec = qa.get((ti["task_id"], int(ti["map_index"])))
        rows.append({
            "task_id": ti["task_id"], "map_index": ti["map_index"], "state": ti["state"],
            "duration_s": (end - start) if start and end else None,
            "routine_s": rec["elapsed_s"] if rec else None,
            "queue_latency_s": (start - queued) if start and queued else None,
            "sched_latency_s": (queued - scheduled) if queued and scheduled else None,
        })
    ran = [r for r in rows if r["routine_s"] is not None and r["duration_s"] is not None]
    chunks = sum(1 for r in rows if r["task_id"].endswith(("image_chunk", "clean_chunk")))
    wall = _ts(run["end_date"]) - _ts(run["start_date"])
    ti_sum = sum(r["duration_s"] for r in ran)
    routine_sum = sum(r["routine_s"] for r in ran)
    lat = [r["queue_latency_s"] for r in rows if r["queue_latency_s"] is not None]
    sched = [r["sched_latency_s"] for r in rows if r["sched_latency_s"] is not None]
    return {
        "dag_id": dag_id, "run_id": run_id, "conf": conf, "state": run["state"],
        "chunks": chunks, "n_ti": len(rows), "n_ti_ran": len(ran),
        "n_ti_states": {s: sum(1 for r in rows if r["state"] == s) for s in {r["state"] for r in rows}},
        "wall_s": round(wall, 2), "trigger_to_end_s": round(trigger_to_end, 2),
        "ti_sum_s": round(ti_sum, 2), "routine_sum_s": round(routine_sum, 2),
        "overhead_per_ti_s": round((ti_sum - routine_sum) / len(ran), 3) if ran else None,
        "slot_overhead_per_ti_s": round((wall * PARALLELISM - routine_sum) / len(ran), 3) if ran else None,
        "wall_over_ideal": round(wall / (routine_sum / PARALLELISM), 2) if routine_sum else None,
        "latency_mean_s": round(statistics.fmean(lat), 3) if lat else None,
        "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        "latency_max_s": round(max(lat), 3) if lat else None,
        "sched_to_queued_mean_s": round(statistics.fmean(sched), 3) if sched else None,
        "task_instances": rows,
    }


def casa_import_seconds(env: dict[str, str]) -> float:
    """Time to import and configure casatools + casatasks in a fresh process (part of every CASA
    task's recorded routine time, since every task instance is a new process)."""
    import subprocess

    code = ("import time; t = time.monotonic(); from phangs_operators.casa import casatasks, casatools; "
            "casatools(); casatasks(); print(time.monotonic() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def _empty(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", nargs="+", choices=("example", "demo"), default=["example"])
    ap.add_argument("--chunks", nargs="+", type=int, default=[4, 16, 64],
                    help="chunk counts of the example series (must divide 64)")
    ap.add_argument("--demo-chunk-sizes", nargs="+", type=int, default=[9, 2],
                    help="chunk_size values of the demo series (36 channels: 9 -> 4, 2 -> 18 chunks)")
    ap.add_argument("--data", type=Path, default=None, help="an existing tiny simulation to copy")
    ap.add_argument("--timeout", type=float, default=1800, help="per run (s)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for n in args.chunks:
        if EXAMPLE_NCHAN % n:
            ap.error(f"--chunks {n} does not divide {EXAMPLE_NCHAN}")

    scratch = Path(tempfile.mkdtemp(prefix="bench_orch_"))
    demo_root = scratch / "demo"
    data = make_data(demo_root, args.data)
    example_dir = scratch / "example"
    example_ms = scratch / "example_ms" / "ngc9997_12m_64ch.ms"
    example_ms.parent.mkdir(parents=True)
    if "example" in args.series:
        make_example_ms(data, example_ms)
    dags = scratch / "dags"
    dags.mkdir()
    (dags / "bench_chunk_sweep.py").write_text(SWEEP_DAG_FILE)
    (dags / "phangs_targets.py").write_text(TARGETS_DAG_FILE)
    env = {**demo_env(demo_root), "PHANGS_EXAMPLE_MS": str(example_ms), "PHANGS_EXAMPLE_WORKDIR": str(example_dir),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    results: list[dict[str, Any]] = []
    t_start = time.monotonic()
    cluster = AirflowCluster(home=scratch / "cluster", executor="LocalExecutor", extra_env=env,
                             parallelism=PARALLELISM, casa_slots=PARALLELISM)
    try:
        cluster.start()
        log.info("cluster healthy after %.1f s", time.monotonic() - t_start)
        if "example" in args.series:
            cluster.wait_dag(SWEEP_DAG)
            for n in args.chunks:
                _empty(example_dir)
                conf = {"nchan": EXAMPLE_NCHAN, "chunk_size": EXAMPLE_NCHAN // n}
                res = measure(cluster, SWEEP_DAG, conf, f"bench_example_{n}", example_dir, args.timeout)
                res["series"] = "example"
                results.append(res)
                log.info("example %d chunks: %s", n, {k: v for k, v in res.items() if k != "task_instances"})
        if "demo" in args.series:
            cluster.wait_dag(DEMO_DAG)
            for cs in args.demo_chunk_sizes:
                for sub in ("imaging", "postprocess", "derived"):
                    _empty(demo_root / sub / "ngc9997")
                conf = {"configs": ["12m"], "products": ["co21"], "stages": ["staging", "imaging"],
                        "chunk_size": cs}
                res = measure(cluster, DEMO_DAG, conf, f"bench_demo_cs{cs}", demo_root / "imaging", args.timeout)
                res["series"] = "demo"
                results.append(res)
                log.info("demo chunk_size %d: %s", cs, {k: v for k, v in res.items() if k != "task_instances"})
        casa_import = casa_import_seconds(cluster.env)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    cols = ("series", "chunks", "n_ti_ran", "state", "wall_s", "routine_sum_s", "ti_sum_s", "overhead_per_ti_s",
            "slot_overhead_per_ti_s", "latency_mean_s", "latency_median_s", "latency_max_s", "wall_over_ideal")
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"orchestration_{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "bench_orchestration", "utc": stamp, "executor": "LocalExecutor",
        "parallelism": PARALLELISM, "metadata_db": "postgresql", "casa_import_s": casa_import, "goal": "overhead_per_ti_s < 1 at 64 chunks",
        "runs": results}, indent=1))
    print(f"CASA import + configuration in a fresh process (inside each CASA task's routine time): "
          f"{casa_import} s")
    print(f"wrote {out}")
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
