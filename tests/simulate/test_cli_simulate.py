"""``phangs simulate`` command line (no CASA run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: the console script installed with the package (pyproject [project.scripts])
PHANGS = Path(sys.executable).with_name("phangs")


def _phangs(*args: str) -> subprocess.CompletedProcess[str]:
    assert PHANGS.exists(), f"console script {PHANGS} missing: install the project (make setup)"
    return subprocess.run([str(PHANGS), *args], capture_output=True, text=True, timeout=120)


def test_help_describes_the_command() -> None:
    res = _phangs("simulate", "--help")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for word in (
        "OUTDIR",
        "--preset",
        "tiny",
        "bench",
        "--seed",
        "manifest.json",
        "PHANGS_DEMO_ROOT",
        "TOPO",
    ):
        assert word in out, word


def test_bad_preset_is_rejected_by_argparse(tmp_path) -> None:
    res = _phangs("simulate", str(tmp_path / "x"), "--preset", "huge")
    assert res.returncode == 2
    assert "invalid choice: 'huge'" in res.stderr
    assert not (tmp_path / "x").exists()


def test_user_errors_are_one_line_and_exit_1(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from phangs_operators.cli import main

    (tmp_path / "notes.txt").write_text("x")
    assert main(["simulate", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("phangs simulate: error: output directory")
