"""`phangs --help` and every subcommand's `--help` describe themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from phangs_operators.cli import SUBCOMMANDS, main


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, (_module, help_text) in SUBCOMMANDS.items():
        assert name in out
        assert help_text.split()[0] in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: phangs " + name)
    assert "not available" not in out
    assert len(out.splitlines()) >= 4


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "phangs_operators.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("phangs-airflow ")


def test_no_command_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "usage: phangs" in capsys.readouterr().out
