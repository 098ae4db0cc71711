"""``phangs keys check PATH [--json]``: validate a PHANGS key set and summarise it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

#: summary fields reported by ``check`` (in this order), with their table labels
SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("targets", "targets"),
    ("whole_targets", "whole targets"),
    ("mosaics", "linear mosaics"),
    ("mosaic_parts", "mosaic parts"),
    ("working_dirs", "working directories"),
    ("targets_with_uvdata", "targets with uv data"),
    ("ms_entries", "MS entries"),
    ("ms_entries_by_array", "MS entries by array tag"),
    ("interf_configs", "interferometric configs"),
    ("feather_configs", "feather configs"),
    ("line_products", "line products"),
    ("cont_products", "continuum products"),
    ("imaging_recipe_lines", "imaging recipe lines"),
    ("recipe_files", "recipe files"),
    ("singledish_entries", "single-dish entries"),
    ("cleanmask_entries", "clean-mask entries"),
    ("distances", "distances"),
    ("windows", "velocity windows"),
    ("moments", "moments"),
    ("override_entries", "override keys"),
    ("imaging_combinations", "imaging runs (target x config x product)"),
    ("feather_combinations", "feather runs"),
    ("mosaic_combinations", "linear-mosaic runs"),
    ("keyset_hash", "key set sha256"),
)


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name,
        help=help_text,
        description="Check and summarise a PHANGS key set (master_key.txt and the key files it lists).",
    )
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="validate a key set: summary table and every error with file:line",
        description=(
            "Validate a PHANGS key set. Exit status 0 when valid, 1 when there are errors. "
            "Missing data roots are reported as warnings."
        ),
    )
    check.add_argument("path", metavar="PATH", help="key directory containing master_key.txt, or a master key file")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    check.set_defaults(func=run)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _format_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0


def _run(args: argparse.Namespace) -> int:
    from phangs_operators.keys import check_key_set

    report = check_key_set(args.path)
    summary: dict[str, Any] = report.project.summary() if report.project is not None else {}
    if args.json:
        out: dict[str, Any] = {"master_key": report.master_key, "valid": report.valid}
        for key, _label in SUMMARY_FIELDS:
            out[key] = summary.get(key)
        out["errors"] = [e.to_dict() for e in report.errors]
        out["warnings"] = [w.to_dict() for w in report.warnings]
        print(json.dumps(out, indent=2))
        return 0 if report.valid else 1

    print(f"key set: {report.master_key}")
    if summary:
        width = max(len(label) for _k, label in SUMMARY_FIELDS)
        for key, label in SUMMARY_FIELDS:
            print(f"  {label:<{width}}  {_format_value(summary.get(key))}")
    if report.warnings:
        print(f"\n{len(report.warnings)} warning(s):")
        for w in report.warnings:
            print(f"  {w}")
    if report.errors:
        print(f"\n{len(report.errors)} error(s):")
        for e in report.errors:
            print(f"  {e}")
        print("\nINVALID")
        return 1
    print("\nOK: key set is valid")
    return 0
