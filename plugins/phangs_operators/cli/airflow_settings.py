"""``phangs airflow-settings apply [FILE]``: load an Astro-CLI ``airflow_settings.yaml``.

Apache Airflow does not read that file; we convert it to the three stock import formats and
call ``airflow connections import --overwrite``, ``airflow pools import`` and
``airflow variables import -a overwrite``, so re-applying is idempotent. ``${VAR}`` in values
is expanded from the environment (credentials stay out of the file); a referenced variable that
is not set is an error naming it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from phangs_operators.errors import PhangsError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SettingsError(PhangsError):
    """airflow_settings.yaml is malformed or refers to unset environment variables."""


def _expand(value: Any, where: str, missing: list[str]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                missing.append(f"{where}: ${{{name}}}")
                return ""
            return os.environ[name]
        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", missing) for i, v in enumerate(value)]
    return value


def convert(settings_file: Path, *, allow_missing: bool = False) -> dict[str, dict]:
    """Return ``{"connections": {...}, "pools": {...}, "variables": {...}}`` in Airflow's formats."""
    import yaml  # noqa: PLC0415

    try:
        data = yaml.safe_load(settings_file.read_text()) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"{settings_file}: no such file") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{settings_file}: not valid YAML: {exc}") from exc
    root = data.get("airflow") if isinstance(data, dict) else None
    if not isinstance(root, dict):
        raise SettingsError(f"{settings_file}: expected a top-level 'airflow:' mapping")
    missing: list[str] = []
    root = _expand(root, str(settings_file), missing)
    if missing and not allow_missing:
        raise SettingsError("environment variables not set: " + ", ".join(missing))
    conns: dict[str, dict] = {}
    for i, c in enumerate(root.get("connections") or []):
        if not isinstance(c, dict) or not c.get("conn_id") or not c.get("conn_type"):
            raise SettingsError(f"{settings_file}: connection #{i + 1} needs conn_id and conn_type")
        extra = c.get("conn_extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        entry = {"conn_type": c["conn_type"]}
        for src, dst in (("conn_host", "host"), ("conn_schema", "schema"), ("conn_login", "login"),
                         ("conn_password", "password"), ("conn_port", "port")):
            if c.get(src) not in (None, ""):
                entry[dst] = int(c[src]) if dst == "port" else c[src]
        extra = {k: v for k, v in extra.items() if v not in (None, "")}
        if extra:
            entry["extra"] = json.dumps(extra)
        conns[c["conn_id"]] = entry
    pools: dict[str, dict] = {}
    for i, p in enumerate(root.get("pools") or []):
        if not isinstance(p, dict) or not p.get("pool_name"):
            raise SettingsError(f"{settings_file}: pool #{i + 1} needs pool_name")
        pools[p["pool_name"]] = {"slots": int(p.get("pool_slot", 1)),
                                 "description": p.get("pool_description", ""),
                                 "include_deferred": False}
    variables: dict[str, str] = {}
    for i, v in enumerate(root.get("variables") or []):
        if not isinstance(v, dict) or not v.get("variable_name"):
            raise SettingsError(f"{settings_file}: variable #{i + 1} needs variable_name")
        variables[v["variable_name"]] = str(v.get("variable_value", ""))
    return {"connections": conns, "pools": pools, "variables": variables}


def apply(settings_file: Path, *, airflow: list[str] | None = None) -> list[str]:
    """Import the settings with Airflow's CLI; return the commands' output lines."""
    cli = airflow or [sys.executable, "-m", "airflow"]
    converted = convert(settings_file)
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="phangs-settings-") as tmp:
        steps = [
            ("connections", ["connections", "import", "--overwrite"]),
            ("pools", ["pools", "import"]),
            ("variables", ["variables", "import", "-a", "overwrite"]),
        ]
        for kind, args in steps:
            if not converted[kind]:
                continue
            path = Path(tmp) / f"{kind}.json"
            path.write_text(json.dumps(converted[kind]))
            proc = subprocess.run([*cli, *args, str(path)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SettingsError(f"airflow {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")
            out += [line for line in proc.stdout.splitlines() if line.strip()]
    return out


def register(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("apply", help="import connections, pools and variables into Airflow")
    a.add_argument("file", nargs="?", default="airflow_settings.yaml", type=Path,
                   help="settings file (default: ./airflow_settings.yaml)")
    a.set_defaults(func=_run_apply)
    s = sub.add_parser("show", help="print the converted settings (secrets masked)")
    s.add_argument("file", nargs="?", default="airflow_settings.yaml", type=Path)
    s.set_defaults(func=_run_show)


def _run_apply(args) -> int:
    for line in apply(args.file):
        print(line)
    return 0


def _run_show(args) -> int:
    conv = convert(args.file, allow_missing=True)
    for c in conv["connections"].values():
        if "password" in c:
            c["password"] = "***"
    print(json.dumps(conv, indent=2))
    return 0
