"""``phangs qa`` (the subcommand module; the lead adds it to the CLI table)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from phangs_operators.cli import qa as cli_qa
from phangs_operators.errors import PhangsError


def _parser():
    parser = argparse.ArgumentParser(prog="phangs")
    sub = parser.add_subparsers(dest="command")
    cli_qa.register(sub, "qa", "QA report of a target run")
    return parser


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["qa", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: phangs qa") and "--open" in out and "--keys" in out and "--out" in out


def test_report_from_workdirs(good_target, tmp_path, capsys):
    args = _parser().parse_args(["qa", "synth", "--no-plots", "--out", str(tmp_path / "r"),
                                 *sum((["--workdir", w] for w in good_target.workdirs), [])])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("synth: PASS") and (tmp_path / "r" / "report.html").is_file()
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["target"] == "synth" and doc["figures"] == []


def test_failing_report_exit_code_and_overview(good_target, tmp_path, capsys):
    thr = tmp_path / "strict.yaml"
    thr.write_text("imaging:\n  beam_axis_ratio: {good: 1.01, bad: 1.05}\n")
    args = _parser().parse_args(["qa", "synth", "--no-plots", "--out", str(tmp_path / "reports" / "synth"),
                                 "--thresholds", str(thr), *sum((["--workdir", w] for w in good_target.workdirs), [])])
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "beam_shape" in captured.err
    args = _parser().parse_args(["qa", "--overview", str(tmp_path / "reports")])
    assert args.func(args) == 0
    page = tmp_path / "reports" / "qa_overview.html"
    assert page.is_file() and "synth/report.html" in page.read_text()


def test_unknown_target_and_missing_records(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path / "demo"))
    args = _parser().parse_args(["qa", "no_such_galaxy"])
    with pytest.raises(PhangsError, match="no_such_galaxy"):
        args.func(args)
    args = _parser().parse_args(["qa", "x", "--workdir", str(tmp_path / "empty")])
    with pytest.raises(PhangsError, match="no QA records"):
        args.func(args)
    args = _parser().parse_args(["qa"])
    with pytest.raises(PhangsError, match="TARGET"):
        args.func(args)


def test_keys_resolve_the_target_workdirs(tmp_path, monkeypatch):
    """With the demo key set, the workdirs are <root>/<target> of the three roots."""
    from phangs_operators.dag_factory import key_dir_from_environment
    from phangs_operators.keys import load_project

    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path / "demo"))
    project = load_project(key_dir_from_environment())
    target = project.whole_targets()[0]
    args = _parser().parse_args(["qa", target])
    dirs, out, keyset = cli_qa._workdirs(args)
    assert project.target_dir("derived_root", target) in dirs and out.name == "qa_report"
    assert keyset == project.keyset_hash()
    assert all(str(d).startswith(str(tmp_path / "demo")) for d in dirs)
    assert Path(out).parent == project.target_dir("derived_root", target)


def test_through_the_phangs_entry_point(monkeypatch, capsys):
    """As wired by the CLI table entry ``"qa": ("phangs_operators.cli.qa", ...)``."""
    from phangs_operators import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "qa", ("phangs_operators.cli.qa", "QA report of a target run"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["qa", "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: phangs qa")
    assert cli.main(["qa", "x", "--workdir", "/nonexistent/dir"]) == 1
    assert "no QA records" in capsys.readouterr().err
