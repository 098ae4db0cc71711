"""``phangs qa``: the QA report of a target outside Airflow (and the overview of all targets)."""

from __future__ import annotations

import argparse
import logging
import sys
import webbrowser
from pathlib import Path

from phangs_operators.errors import KeyFileError, PhangsError

log = logging.getLogger(__name__)


def register(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name, help=help_text,
        description=(
            "Score a target run from the QA records its tasks wrote (<workdir>/qa/*.json) and the "
            "FITS products they name, and write a static HTML + JSON report (figures in img/). "
            "The working directories come from the key set (imaging, postprocess and derived "
            "roots; a mosaic includes its parts) or from --workdir. Exit code 1 when a score is "
            "below the minimum. With --overview ROOT, write the overview page of every report "
            "below ROOT instead."),
    )
    p.add_argument("target", nargs="?", help="target name (as in the key set)")
    p.add_argument("--keys", type=Path, metavar="DIR",
                   help="key directory (default: $PHANGS_KEY_DIR, else include/keys)")
    p.add_argument("--workdir", action="append", type=Path, default=[], metavar="DIR",
                   help="a working directory with a qa/ folder (repeatable; replaces the key set)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="report folder (default: <derived_root>/<target>/qa_report)")
    p.add_argument("--thresholds", type=Path, metavar="FILE",
                   help="project QA thresholds (YAML/JSON) merged over the defaults")
    p.add_argument("--min-score", type=float, metavar="X",
                   help="worst acceptable score, 0-1 (default: the thresholds' report.min_score)")
    p.add_argument("--no-plots", action="store_true", help="scores only, no figures")
    p.add_argument("--overview", type=Path, metavar="ROOT",
                   help="write ROOT/qa_overview.html listing every report.json below ROOT")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=run)


def _workdirs(args: argparse.Namespace) -> tuple[list[Path], Path, str | None]:
    """(workdirs, default report folder, key-set hash) of the target."""
    if args.workdir:
        return list(args.workdir), args.workdir[-1] / "qa_report", None
    from phangs_operators.dag_factory import key_dir_from_environment, target_plan  # noqa: PLC0415
    from phangs_operators.keys import load_project  # noqa: PLC0415

    project = load_project(args.keys or key_dir_from_environment())
    if args.target not in project.targets() and args.target not in project.whole_targets():
        raise KeyFileError(f"target {args.target!r} is not in the key set {project.master_key}")
    plan = target_plan(project, args.target)
    units = list(dict.fromkeys([*plan["units"], args.target]))
    dirs: list[Path] = []
    for unit in units:
        for root in ("imaging_root", "postprocess_root", "derived_root"):
            try:
                d = project.target_dir(root, unit)
            except PhangsError:
                continue
            if d not in dirs:
                dirs.append(d)
    if not dirs:
        raise KeyFileError(f"no imaging/postprocess/derived roots for {args.target!r} in {project.master_key}")
    default_out = project.target_dir("derived_root", args.target) / "qa_report"
    return dirs, default_out, project.keyset_hash()


def run(args: argparse.Namespace) -> int:
    from phangs_operators.qa.config import load_config  # noqa: PLC0415
    from phangs_operators.qa.report import build_overview, build_report, find_reports  # noqa: PLC0415

    if args.overview is not None:
        reports = find_reports(args.overview)
        page = build_overview(reports, args.out / "qa_overview.html" if args.out else
                              args.overview / "qa_overview.html")
        print(f"overview of {len(reports)} report(s): {page}")
        if args.open:
            webbrowser.open(Path(page).resolve().as_uri())
        return 0
    if not args.target:
        raise PhangsError("give a TARGET (or --overview ROOT)")
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise PhangsError(f"--min-score must be between 0 and 1, got {args.min_score}")
    workdirs, default_out, keyset_hash = _workdirs(args)
    missing = [str(d) for d in workdirs if not (d / "qa").is_dir()]
    if len(missing) == len(workdirs):
        raise PhangsError(f"no QA records for {args.target}: none of {missing} has a qa/ folder "
                          "(has the pipeline run?)")
    cfg = load_config(args.thresholds)
    result = build_report(args.target, workdirs, args.out or default_out, cfg=cfg, keyset_hash=keyset_hash,
                          min_score=args.min_score, make_plots=not args.no_plots)
    worst = "n/a" if result.worst_score is None else f"{result.worst_score:.2f}"
    print(f"{args.target}: {result.status.upper()} (worst score {worst}, {result.n_scores} scores, "
          f"{result.n_figures} figures) -> {result.html}")
    for line in result.failing:
        print(f"  {line}", file=sys.stderr)
    if args.open:
        webbrowser.open(Path(result.html).resolve().as_uri())
    return 1 if result.failing else 0
