"""The ``phangs`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit code).  Modules are imported lazily only for the
command that runs, so ``phangs --help`` stays fast and never imports CASA or Airflow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from phangs_operators import __version__
from phangs_operators.errors import PhangsError

#: subcommand name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("phangs_operators.cli.simulate", "make deterministic simulated ALMA test data"),
    "keys": ("phangs_operators.cli.keys", "check and summarise a PHANGS key set"),
    "run": ("phangs_operators.cli.run", "run one target's pipeline DAG in this process"),
    "derive": ("phangs_operators.cli.derive", "derived products (noise, masks, moments) of a cube"),
    "catalog": ("phangs_operators.cli.catalog", "list, show and verify published products"),
    "qa": ("phangs_operators.cli.qa", "QA report (scores, plots) of a target run; overview of all targets"),
    "airflow-settings": ("phangs_operators.cli.airflow_settings", "apply airflow_settings.yaml"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phangs",
        description=(
            "phangs-airflow: the PHANGS-ALMA imaging pipeline (calibrated ALMA visibilities -> "
            "spectral cubes and moment maps) as Airflow operators and DAGs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"phangs-airflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sub.add_parser(name, help=f"{help_text} (not available in this version)")
            continue
        module.register(sub, name, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except PhangsError as exc:
        print(f"phangs {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
