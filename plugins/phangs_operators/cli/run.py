"""``phangs run TARGET``: run one target's pipeline DAG in this process (no scheduler).

The same DAG the scheduler runs, executed with ``dag.test()`` and the same params: for a
laptop, a notebook or an HPC batch job. ``--dry-run`` prints the task graph with the files
each task would read and write, without running anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from phangs_operators.errors import PhangsError
from phangs_operators.operators.base import STAGES


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def register(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n")[0] + ".")
    p.add_argument("target", help="whole target (a galaxy or a linear mosaic) of the key set")
    p.add_argument("--keys", type=Path, default=None,
                   help="key directory or master key (default: $PHANGS_KEY_DIR or include/keys)")
    p.add_argument("--configs", nargs="+", metavar="CONFIG", help="configs to run (default: all)")
    p.add_argument("--products", nargs="+", metavar="PRODUCT", help="products to run (default: all)")
    p.add_argument("--stages", nargs="+", metavar="STAGE", choices=list(STAGES),
                   help=f"stages to run (default: all of {', '.join(STAGES)})")
    p.add_argument("--chunk-size", type=int, default=None, help="channels per imaging chunk")
    p.add_argument("--force", action="store_true", help="re-run steps whose outputs exist")
    p.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="fail the QA report task when the worst QA score is below S (DAG default 0.33)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the task graph and the files each task reads and writes")
    p.set_defaults(func=run)


def _conf(args) -> dict:
    conf: dict = {"force": bool(args.force), "dry_run": bool(args.dry_run)}
    if args.configs:
        conf["configs"] = _split(args.configs)
    if args.products:
        conf["products"] = _split(args.products)
    if args.stages:
        conf["stages"] = _split(args.stages)
    if args.chunk_size:
        conf["chunk_size"] = int(args.chunk_size)
    if args.min_score is not None:
        conf["min_score"] = float(args.min_score)
    return conf


def print_graph(dag) -> None:
    """Tasks in topological order with their upstream tasks and the files they touch."""
    for task in dag.topological_sort():
        ups = sorted(t.task_id for t in task.upstream_list)
        mapped = " [mapped]" if task.__class__.__name__ == "MappedOperator" else ""
        print(f"{task.task_id}{mapped}")
        if ups:
            print(f"    after: {', '.join(ups)}")
        partial = getattr(task, "partial_kwargs", None) or {}
        for attr in ("ms_by_array", "out_ms", "out_root", "out_image", "out_fits", "singledish_fits",
                     "out_dir"):
            value = partial.get(attr, getattr(task, attr, None)) if not mapped else partial.get(attr)
            if value and isinstance(value, (str, dict, list)):
                print(f"    {attr}: {json.dumps(value) if not isinstance(value, str) else value}")


def run(args) -> int:
    if args.keys:
        os.environ["PHANGS_KEY_DIR"] = str(args.keys.resolve())
    from phangs_operators.dag_factory import build_dags, dag_id_for  # noqa: PLC0415

    dags = build_dags(args.keys, targets=[args.target])
    dag = dags.get(dag_id_for(args.target))
    if dag is None:
        raise PhangsError(f"target {args.target!r} has no DAG: it is not a whole target with "
                          "measurement sets in the key set")
    conf = _conf(args)
    if args.dry_run:
        print(f"# DAG {dag.dag_id}: {len(dag.tasks)} tasks; params {json.dumps(conf)}")
        print_graph(dag)
        return 0
    print(f"running {dag.dag_id} ({len(dag.tasks)} tasks) with {json.dumps(conf)}", file=sys.stderr)
    dagrun = dag.test(run_conf=conf)
    state = str(getattr(dagrun, "state", "unknown"))
    print(f"{dag.dag_id}: run {getattr(dagrun, 'run_id', '?')} finished: {state}")
    return 0 if state.endswith("success") else 1
