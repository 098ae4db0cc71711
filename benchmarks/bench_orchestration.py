"""Orchestration overhead of the channel-chunk fan-out under a real LocalExecutor scheduler.

Starts api-server + scheduler + dag-processor (``AIRFLOW__CORE__EXECUTOR=LocalExecutor``,
parallelism 3, pool ``casa`` with 2 slots, PostgreSQL metadata DB made for the run and dropped
after it) with :class:`tests.airflow.cluster.AirflowCluster` (its Airflow settings are the
deployment's, see ``docs/ORCHESTRATION_OVERHEAD.md``), triggers runs through the REST API and
reduces, per run, the task instances (REST) and the QA JSON record every task writes.

The metric
----------
*Routine time* of a task instance (TI) is the ``elapsed_s`` of its QA record: the time
``execute`` spent in its routine, which for a CASA step includes ``casa_import_s``, the import
and configuration of CASA in that fresh process (recorded apart in the same record).

*Scheduling overhead per TI* (``overhead_per_ti_s``, the goal of issue 8: < 1 s at 64 chunks)
is what a TI costs beyond its routine, averaged over the TIs that ran a routine:

``overhead = startup_gap + in_ti``

* ``in_ti`` = (end - start) - routine: inside the task process, before and after the
  routine: DAG file parse, Execution-API calls (start, XCom pulls of the mapped arguments,
  XCom push, finish), the QA record;
* ``startup_gap`` = start - ready: from the moment the TI *could* have started to its
  ``start_date``. ``ready`` = max(end of its last upstream TI (run start for a root task),
  moment an executor slot became free for it). Slots are replayed from the TIs' own times:
  ``parallelism`` slots, each TI (in ``start_date`` order) takes the slot freed first, a slot
  is free again at the ``end_date`` of its TI. The gap therefore holds the scheduler's
  reaction to the upstream end / slot release (scheduling loop, mapped-task expansion, pool
  check), executor pickup, the worker noticing that the previous task process exited, the
  fork of the task process and its ``start`` call;
* ``slot_wait`` = max(0, slot free - upstream end): time a ready TI waited because every
  executor slot was busy. This is parallelism, **not** overhead, and reported apart
  (``slot_wait_mean_s``).

Also reported: ``overhead_incl_casa_import_per_ti_s`` (overhead + the CASA import, the
per-process price of running each chunk in its own process), the mean CASA import per CASA
TI, ``overhead_over_routine`` (sum of overheads / sum of routine times of the same run),
the raw REST latencies queued -> start and scheduled -> queued (the latter mixes slot waits and
scheduler latency), ``wall_over_ideal`` = wall / (routine sum / parallelism) and the load
average of the machine before and after each run (other jobs on a shared machine inflate the
routine times; the overhead is computed against routines measured in the same run).

Two series (``--series``):

``example`` (default, the 4/16/64 sweep)
    a DAG written into the benchmark's own dags folder (``bench_chunk_sweep``: the three
    operators of the example DAG ``phangs_example_image_one_ms``, plan_chunks ->
    image_chunk[n] -> gather_cube, dirty cubes, complete image geometry) on a 64-channel MS:
    the tiny simulated 12m MS of ``ngc9997`` (56 channels) extended to 64 channels of the same
    width (see :func:`make_example_ms`), ``nchan=64`` and ``chunk_size`` 16 / 4 / 1 -> 4 / 16 /
    64 chunks with the same total imaging work. The demo target's staged co21 cube has only
    36 channels, so 16 and 64 chunks cannot be made from it.
``demo``
    the demo target DAG ``phangs_ngc9997`` (configs 12m, products co21, stages staging +
    imaging: stage, geometry, plan, dirty[n], threshold, clean[n], gather) with ``chunk_size``
    9 / 2 -> 4 / 18 chunks of its 36-channel staged cube.

Before each run the series' working folder is emptied, so every task really runs. An unrecorded
1-chunk run goes first (``--no-warmup`` skips it): the first task instance after a scheduler
start pays 3-6 s of one-time start-up that is no per-TI cost.

Usage::

    .venv/bin/python benchmarks/bench_orchestration.py [--series example demo] [--chunks 4 16 64]
        [--data DIR_WITH_TINY_SIMULATION] [--airflow-env KEY=VALUE ...] [--label TEXT] [--keep]

``--airflow-env`` overrides the cluster's settings (e.g. ``AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=5``
to measure Airflow's default; ``PHANGS_CASATASKS_EAGER=1`` for the full ``import casatasks``).
Prints a table and writes ``benchmarks/results/orchestration_<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
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
#: concurrent CASA task instances (pool ``casa``): the two cores of the machine; the executor has
#: one slot more (``[core] parallelism`` = 3, see docs/ORCHESTRATION_OVERHEAD.md), so the slot
#: replay of :func:`analyse` uses the pool size
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


def task_log_phases(path: Path) -> dict[str, float] | None:
    """Phases of one task process from its JSON-lines task log (``attempt=N.log``).

    ``pre_execute_s``: task runner start-up (first log line) to the end of its "Pre Execute"
    group (DAG bundle, DAG file parse, XCom pulls of the mapped arguments, template
    rendering); ``dag_parse_s``: the DAG file parse alone (``dag_file_parse_ms``);
    ``post_execute_s``: from the "Post Execute" group (XCom push, ...) to the last line.
    None when the log is missing or has no such groups.
    """
    if not path.is_file():
        return None
    times: dict[str, float] = {}
    parse_ms = None
    first = last = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            t = _ts(rec["timestamp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        first = t if first is None else first
        last = t
        event = str(rec.get("event", ""))
        if event == "::group::Post Execute":
            times["post"] = t
        elif event == "::endgroup::" and "pre_end" not in times:
            times["pre_end"] = t
        if "dag_file_parse_ms" in rec:
            parse_ms = rec["dag_file_parse_ms"]
    if first is None or "pre_end" not in times:
        return None
    return {"pre_execute_s": times["pre_end"] - first,
            "post_execute_s": (last - times["post"]) if "post" in times else None,
            "dag_parse_s": parse_ms / 1000 if parse_ms is not None else None,
            "log_first": first, "log_last": last}


def _mean(values: list[float], nd: int = 3) -> float | None:
    return round(statistics.fmean(values), nd) if values else None


def analyse(tis: list[dict], upstream: dict[str, set[str]], parallelism: int, run_start: float) -> dict[str, Any]:
    """Per-TI overhead of one run from its task instances (see the module docstring).

    ``tis``: one dict per TI with ``task_id``, ``map_index``, ``state``, ``start``, ``end``,
    ``queued``, ``scheduled`` (epoch seconds or None), ``routine_s`` and ``casa_import_s``
    (None when the TI wrote no QA record, e.g. skipped). ``upstream``: task_id -> upstream
    task_ids. Returns the run's summary; each TI dict gets ``ready``, ``slot_wait_s``,
    ``startup_gap_s``, ``in_ti_s`` and ``overhead_s`` added in place.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    ends: dict[str, float] = {}
    for ti in tis:
        if ti["end"] is not None:
            ends[ti["task_id"]] = max(ends.get(ti["task_id"], ti["end"]), ti["end"])
    slots = [run_start] * parallelism
    clamped = 0
    for ti in sorted((t for t in tis if t["start"] is not None and t["end"] is not None), key=lambda t: t["start"]):
        up_done = max([ends[u] for u in upstream.get(ti["task_id"], ()) if u in ends] or [run_start])
        k = min(range(parallelism), key=lambda i: slots[i])
        slot_free = slots[k]
        slots[k] = ti["end"]
        ready = max(up_done, slot_free)
        gap = ti["start"] - ready
        if gap < 0:  # clock resolution / a slot replay that does not fit: never count negative overhead
            clamped += 1
            gap = 0.0
        ti["ready"] = ready
        ti["slot_wait_s"] = max(0.0, slot_free - up_done)
        ti["startup_gap_s"] = gap
        ti["duration_s"] = ti["end"] - ti["start"]
        if ti.get("routine_s") is not None:
            ti["in_ti_s"] = ti["duration_s"] - ti["routine_s"]
            ti["overhead_s"] = gap + ti["in_ti_s"]
    ran = [t for t in tis if t.get("overhead_s") is not None]
    chunks = [t for t in ran if t["task_id"].endswith(("image_chunk", "clean_chunk"))]
    casa = [t["casa_import_s"] for t in ran if t.get("casa_import_s") is not None]
    routine_sum = sum(t["routine_s"] for t in ran)
    overhead_sum = sum(t["overhead_s"] for t in ran)
    lat = [t["start"] - t["queued"] for t in tis if t["start"] is not None and t["queued"] is not None]
    sched = [t["queued"] - t["scheduled"] for t in tis if t["queued"] is not None and t["scheduled"] is not None]
    return {
        "n_ti": len(tis), "n_ti_ran": len(ran), "chunks": sum(1 for t in tis if t["task_id"].endswith(
            ("image_chunk", "clean_chunk"))),
        "n_ti_states": {s: sum(1 for t in tis if t["state"] == s) for s in sorted({t["state"] for t in tis})},
        "routine_sum_s": round(routine_sum, 2),
        "ti_sum_s": round(sum(t["duration_s"] for t in ran), 2),
        "casa_import_sum_s": round(sum(casa), 2),
        "casa_import_mean_s": _mean(casa),
        "overhead_per_ti_s": _mean([t["overhead_s"] for t in ran]),
        "startup_gap_mean_s": _mean([t["startup_gap_s"] for t in ran]),
        "startup_gap_median_s": round(statistics.median([t["startup_gap_s"] for t in ran]), 3) if ran else None,
        "startup_gap_max_s": round(max(t["startup_gap_s"] for t in ran), 3) if ran else None,
        "in_ti_mean_s": _mean([t["in_ti_s"] for t in ran]),
        "overhead_per_chunk_ti_s": _mean([t["overhead_s"] for t in chunks]),
        "overhead_incl_casa_import_per_ti_s": _mean([t["overhead_s"] + (t.get("casa_import_s") or 0) for t in ran]),
        "slot_wait_mean_s": _mean([t["slot_wait_s"] for t in ran]),
        "overhead_over_routine": round(overhead_sum / routine_sum, 3) if routine_sum else None,
        "routine_mean_s": _mean([t["routine_s"] for t in ran]),
        "latency_mean_s": _mean(lat), "latency_median_s": round(statistics.median(lat), 3) if lat else None,
        "latency_max_s": round(max(lat), 3) if lat else None,
        "sched_to_queued_mean_s": _mean(sched),
        "negative_gaps_clamped": clamped,
    }


def service_cpu(cluster: AirflowCluster) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each service process itself."""
    import psutil

    out = {}
    for name, proc in cluster.procs.items():
        try:
            t = psutil.Process(proc.pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return out


def measure(cluster: AirflowCluster, dag_id: str, conf: dict, run_id: str, workdir: Path,
            timeout: float) -> dict[str, Any]:
    """Trigger one run, wait for it and reduce its task instances and QA records."""
    # the slot replay uses the casa pool size: every task of the sweep DAG but plan_chunks is a
    # CASA step, and plan_chunks never runs next to one. Where a non-CASA task of the demo DAG
    # overlaps two CASA tasks the replay does not fit: such gaps are clamped to 0 and counted
    # (``negative_gaps_clamped``)
    load_before = os.getloadavg()
    cpu_before = service_cpu(cluster)
    t0 = time.monotonic()
    cluster.trigger(dag_id, conf, run_id)
    run = cluster.wait_run(dag_id, run_id, timeout=timeout, poll=1)
    trigger_to_end = time.monotonic() - t0
    load_after = os.getloadavg()
    cpu_after = service_cpu(cluster)
    upstream: dict[str, set[str]] = {}
    for task in cluster.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]:
        for down in task.get("downstream_task_ids") or []:
            upstream.setdefault(down, set()).add(task["task_id"])
    qa = _qa_records(workdir, run_id)
    run_start, run_end = _ts(run["start_date"]), _ts(run["end_date"])
    rows = []
    logs = cluster.home / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    for ti in cluster.task_instances(dag_id, run_id):
        rec = qa.get((ti["task_id"], int(ti["map_index"])))
        mapped = f"map_index={ti['map_index']}/" if int(ti["map_index"]) >= 0 else ""
        phases = task_log_phases(logs / f"task_id={ti['task_id']}" / f"{mapped}attempt={ti.get('try_number') or 1}.log")
        rows.append({
            "phases": phases,
            "task_id": ti["task_id"], "map_index": ti["map_index"], "state": ti["state"],
            "start": _ts(ti.get("start_date")), "end": _ts(ti.get("end_date")),
            "queued": _ts(ti.get("queued_when")), "scheduled": _ts(ti.get("scheduled_when")),
            "routine_s": rec["elapsed_s"] if rec else None,
            "casa_import_s": rec.get("casa_import_s") if rec else None,
        })
    summary = analyse(rows, upstream, PARALLELISM, run_start)
    with_log = [r for r in rows if r.get("phases") and r.get("in_ti_s") is not None]
    pre = [r["phases"]["pre_execute_s"] for r in with_log]
    post = [r["phases"]["post_execute_s"] for r in with_log if r["phases"]["post_execute_s"] is not None]
    parse = [r["phases"]["dag_parse_s"] for r in with_log if r["phases"]["dag_parse_s"] is not None]
    # start_date -> first log line (fork, child set-up) and last log line -> end_date (finish call)
    edges = [(r["phases"]["log_first"] - r["start"]) + (r["end"] - r["phases"]["log_last"]) for r in with_log]
    summary["in_ti_breakdown_mean_s"] = {"pre_execute": _mean(pre), "of_which_dag_parse": _mean(parse),
                                         "post_execute": _mean(post), "process_edges": _mean(edges),
                                         "n_logs": len(with_log)}
    for r in rows:
        if r.get("phases"):
            r["phases"] = {k: round(v, 3) for k, v in r["phases"].items()
                           if v is not None and not k.startswith("log_")}
    wall = run_end - run_start
    for r in rows:  # relative times in the JSON
        for k in ("start", "end", "queued", "scheduled", "ready"):
            if r.get(k) is not None:
                r[k] = round(r[k] - run_start, 3)
    return {
        "dag_id": dag_id, "run_id": run_id, "conf": conf, "state": run["state"], **summary,
        "wall_s": round(wall, 2), "trigger_to_end_s": round(trigger_to_end, 2),
        "wall_over_ideal": round(wall / (summary["routine_sum_s"] / PARALLELISM), 2) if summary["routine_sum_s"] else None,
        "slot_overhead_per_ti_s": (round((wall * PARALLELISM - summary["routine_sum_s"]) / summary["n_ti_ran"], 3)
                                   if summary["n_ti_ran"] else None),
        "service_cpu_s": {k: round(cpu_after[k] - v, 2) for k, v in cpu_before.items() if k in cpu_after},
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
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
    ap.add_argument("--airflow-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra environment of the cluster (overrides its settings)")
    ap.add_argument("--executor-parallelism", type=int, default=PARALLELISM + 1,
                    help="[core] parallelism of the cluster (default: casa pool slots + 1)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the unrecorded 1-chunk run made before the measured ones (the first task "
                         "instance after a scheduler start pays 3-6 s of one-time start-up)")
    ap.add_argument("--label", default="", help="free text stored in the result JSON (e.g. 'before')")
    args = ap.parse_args(argv)
    overrides: dict[str, str] = {}
    for item in args.airflow_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--airflow-env {item!r} is not KEY=VALUE")
        overrides[key] = value
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
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags), **overrides}
    results: list[dict[str, Any]] = []
    t_start = time.monotonic()
    cluster = AirflowCluster(home=scratch / "cluster", executor="LocalExecutor", extra_env=env,
                             parallelism=args.executor_parallelism, casa_slots=PARALLELISM)
    try:
        cluster.start()
        log.info("cluster healthy after %.1f s", time.monotonic() - t_start)
        # CPU the services burn while idle (scheduler loop, dag-processor, api-server): the price
        # of short loop intervals on a worker whose cores belong to CASA
        time.sleep(10)
        cpu0, t_idle = service_cpu(cluster), time.monotonic()
        time.sleep(30)
        idle_s = time.monotonic() - t_idle
        idle_cpu = {k: round((v - cpu0[k]) / idle_s, 4) for k, v in service_cpu(cluster).items() if k in cpu0}
        log.info("idle CPU of the services (CPU-s per s): %s", idle_cpu)
        if "example" in args.series:
            cluster.wait_dag(SWEEP_DAG)
            if not args.no_warmup:
                _empty(example_dir)
                warm = measure(cluster, SWEEP_DAG, {"nchan": EXAMPLE_NCHAN, "chunk_size": EXAMPLE_NCHAN},
                               "bench_warmup", example_dir, args.timeout)
                log.info("warm-up run (not recorded): %s, wall %.1f s, overhead per TI %s s", warm["state"],
                         warm["wall_s"], warm["overhead_per_ti_s"])
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

    cols = ("series", "chunks", "n_ti_ran", "state", "wall_s", "routine_sum_s", "casa_import_mean_s",
            "overhead_per_ti_s", "startup_gap_mean_s", "in_ti_mean_s", "overhead_incl_casa_import_per_ti_s",
            "slot_wait_mean_s", "overhead_over_routine", "latency_mean_s", "latency_median_s", "wall_over_ideal",
            "load_before", "load_after")
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"orchestration_{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "bench_orchestration", "utc": stamp, "executor": "LocalExecutor",
        "casa_pool_slots": PARALLELISM, "executor_parallelism": args.executor_parallelism, "metadata_db": "postgresql", "casa_import_s": casa_import,
        "goal": "overhead_per_ti_s < 1 at 64 chunks", "label": args.label, "idle_service_cpu_per_s": idle_cpu, "airflow_env": overrides,
        "airflow_settings": {k: v for k, v in cluster.env.items()
                             if k.startswith(("AIRFLOW__SCHEDULER", "AIRFLOW__WORKERS", "AIRFLOW__CORE__PARALLELISM",
                                              "PHANGS_CASATASKS", "PYTHONDONTWRITEBYTECODE"))},
        "runs": results}, indent=1))
    print(f"CASA import + configuration in a fresh process (inside each CASA task's routine time): "
          f"{casa_import} s")
    print(f"wrote {out}")
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
