"""`phangs keys check PATH [--json]`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phangs_operators.cli import main

from .keyset import MS, REFERENCE_KEYS, write_keyset

REQUIRED_FIELDS = [
    "targets", "whole_targets", "mosaics", "mosaic_parts", "targets_with_uvdata", "ms_entries",
    "ms_entries_by_array", "interf_configs", "feather_configs", "line_products", "cont_products",
    "singledish_entries", "cleanmask_entries", "distances", "moments", "override_entries", "errors",
]


def test_check_json_on_reference(capsys):
    assert main(["keys", "check", str(REFERENCE_KEYS), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for f in REQUIRED_FIELDS:
        assert f in out, f
    assert out["errors"] == [] and out["valid"] is True
    assert (out["targets"], out["whole_targets"], out["mosaics"], out["mosaic_parts"]) == (160, 90, 26, 70)
    assert (out["targets_with_uvdata"], out["ms_entries"]) == (136, 663)
    assert out["ms_entries_by_array"] == {"12m": 184, "7m": 479}
    assert out["interf_configs"] == ["12m", "12m+7m", "7m"]
    assert out["feather_configs"] == ["12m+7m+tp", "7m+tp"]
    assert out["line_products"] == ["13co21", "c18o21", "co21"] and out["cont_products"] == ["cont"]
    assert (out["singledish_entries"], out["cleanmask_entries"], out["distances"]) == (147, 159, 90)
    assert (out["moments"], out["override_entries"]) == (13, 36)
    assert any("does not exist" in w["message"] for w in out["warnings"])


def test_check_table_on_reference(capsys):
    assert main(["keys", "check", str(REFERENCE_KEYS / "master_key.txt")]) == 0
    out = capsys.readouterr().out
    assert "targets with uv data" in out and "136" in out
    assert "12m: 184, 7m: 479" in out
    assert out.rstrip().endswith("OK: key set is valid")


def test_check_invalid_exits_1_and_lists_errors(tmp_path, capsys):
    keys = write_keyset(tmp_path, {"ms_file_key.txt": MS + "ngc9999 p all 7m 1 x.ms\n"})
    assert main(["keys", "check", str(keys)]) == 1
    out = capsys.readouterr().out
    assert f"{keys}/ms_file_key.txt:6: undefined target 'ngc9999'" in out
    assert "INVALID" in out
    assert main(["keys", "check", str(keys), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    assert data["errors"] == [{"file": f"{keys}/ms_file_key.txt", "line": 6,
                               "message": data["errors"][0]["message"]}]
    assert data["ms_entries"] == 5  # counts of what could be parsed


def test_console_script_missing_path(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "phangs"), "keys", "check", str(tmp_path / "none"), "--json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"][0]["message"] == "missing key file: master key not found"
    assert data["targets"] is None
