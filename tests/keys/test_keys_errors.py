"""Every error kind names file, line and what is wrong; all errors of a key set are collected."""

from __future__ import annotations

import pytest

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import check_key_set, load_project

from .keyset import (
    CONFIGS,
    DERIVED,
    IMAGING,
    LINMOS,
    MASTER,
    MOMENTS,
    MS,
    SINGLEDISH,
    TARGETS,
    write_keyset,
)


def _errors(tmp_path, changes):
    with pytest.raises(KeyFileError) as exc:
        load_project(write_keyset(tmp_path, changes))
    errors = exc.value.errors
    assert errors, "KeyFileError without .errors"
    # the message lists every error as file:line: message
    for e in errors:
        assert f"{e.file}:{e.line}: {e.message}" in str(exc.value)
    return errors


def _hits(errors, file_name):
    return [e for e in errors if e.file.endswith("/" + file_name)]


def _one(errors, file_name):
    hits = _hits(errors, file_name)
    assert len(hits) == 1, errors
    return hits[0]


def test_minimal_keyset_is_valid(tmp_path):
    p = load_project(write_keyset(tmp_path))
    assert p.warnings == []
    assert p.targets() == ["ngc0628", "ngc3627", "ngc3627_1", "ngc3627_2"]
    assert p.whole_targets() == ["ngc0628", "ngc3627"]
    # a dict value with spaces is accepted (the original silently drops such lines)
    assert p.line_product("co21").combinespw is False
    assert p.ang_res("12m+7m", "co21") == {"2as": 2.0, "7p5as": 7.5}
    assert p.moment("broadmom0").kwargs == {"window": "12.5km/s"}
    assert p.timebin_for_array_tag("7m") == "10s" and p.timebin_for_array_tag("12m") == "0s"
    assert p.overrides("ngc0628", "12m+7m", "co21") == {"robust": 0.5, "cell": "0.2arcsec", "pblimit": 0.75}
    assert p.overrides("ngc0628", "12m", "co21") == {"robust": 0.5, "cell": "0.2arcsec"}
    assert p.clean_parameters("12m", "co21")["threshold"] == "0.0mJy/beam"  # trailing comment dropped
    assert p.root("imaging_root") == tmp_path / "work" / "imaging"
    assert p.roots["ms_root"] == [tmp_path / "uvdata"]


#: (file that holds the error, key-file changes, expected line, fragments of the message)
SIMPLE_ERRORS = [
    pytest.param("master_key.txt", {"master_key.txt": MASTER + "beam_key   beams.txt\n"}, MASTER.count("\n") + 1,
                 ["unknown key kind 'beam_key'", "expected one of", "ms_key"], id="unknown_key_kind"),
    pytest.param("config_definitions.txt",
                 {"config_definitions.txt": CONFIGS + "line_prodcut  hcn {'line_tag':'hcn10'}\n"}, 11,
                 ["unknown key kind 'line_prodcut'", "line_product"], id="unknown_config_type"),
    pytest.param("moment_key.txt", {"moment_key.txt": MOMENTS.replace("round       1", "round       one")}, 5,
                 ["wrong value type: round of moment 'strictmom0'"], id="wrong_value_type_in_moment_round"),
    pytest.param("target_definitions.txt",
                 {"target_definitions.txt": TARGETS + "ngc0628  01h36m41.7s  +15d47m01s  660  254\n"}, 6,
                 ["duplicate definition of target 'ngc0628'", "target_definitions.txt:2"],  # where first defined
                 id="duplicate_definition"),
    pytest.param("config_definitions.txt",
                 {"config_definitions.txt": CONFIGS + "line_product co21 {'channel_kms':5.0}\n"}, 11,
                 ["duplicate definition of 'channel_kms' for line_product 'co21'", "first set to 2.6"],
                 id="duplicate_config_parameter_with_other_value"),
    pytest.param("ms_file_key.txt", {"ms_file_key.txt": MS + "ngc9999 2015.1.1 all 7m 1 c/x.ms\n"}, 6,
                 ["undefined target 'ngc9999' in the ms key", "expected a target defined"],
                 id="undefined_target_reference"),
    pytest.param("config_definitions.txt",
                 {"config_definitions.txt": CONFIGS.replace("{'interf_config':'7m'}", "{'interf_config':'7m_typo'}")},
                 9, ["undefined config '7m_typo' referenced by feather_config '7m+tp'"],
                 id="undefined_config_reference"),
    pytest.param("singledish_key.txt", {"singledish_key.txt": SINGLEDISH + "ngc0628 hcn10 x.fits\n"}, 3,
                 ["undefined product 'hcn10' in the single-dish key", "co21"], id="undefined_product_reference"),
    pytest.param("derived_key.txt", {"derived_key.txt": DERIVED + "7m  co21  moments  ['strictmom9']\n"}, 6,
                 ["undefined moment 'strictmom9' in moments"], id="undefined_moment_reference"),
    pytest.param("linearmosaic_definitions.txt", {"linearmosaic_definitions.txt": LINMOS + "ngc3627   ngc3627_3\n"},
                 3, ["mosaic part without definition: part 'ngc3627_3' of mosaic 'ngc3627'"],
                 id="mosaic_part_without_definition"),
    pytest.param("imaging_recipes.txt", {"cont.clean": None}, 2, ["missing key file: recipe file", "cont.clean"],
                 id="missing_recipe_file"),
    pytest.param("moment_key.txt", {"moment_key.txt": MOMENTS + "broadmom0   colour   blue\n"}, 11,
                 ["unknown moment parameter 'colour' for moment 'broadmom0'", "algorithm"],
                 id="unknown_moment_parameter"),
]


@pytest.mark.parametrize(("file_name", "changes", "line", "fragments"), SIMPLE_ERRORS)
def test_error_names_file_line_and_problem(tmp_path, file_name, changes, line, fragments):
    e = _one(_errors(tmp_path, changes), file_name)
    assert e.line == line
    for fragment in fragments:
        assert fragment in e.message, e.message


def test_wrong_column_count(tmp_path):
    bad = TARGETS.replace("ngc0628     01h36m41.7s   +15d47m01s   657   254",
                          "ngc0628     01h36m41.7s   +15d47m01s   657")
    errors = _errors(tmp_path, {"target_definitions.txt": bad})
    e = _hits(errors, "target_definitions.txt")[0]
    assert e.line == 2
    assert "wrong column count: expected 5 columns (target ra dec vsys_kms vwidth_kms), found 4" in e.message
    # consequences are reported too (ngc0628 is then undefined where it is used)
    assert any("undefined target 'ngc0628'" in x.message for x in errors)


def test_unparsable_literal(tmp_path):
    bad = CONFIGS.replace("{'array_tags':['7m'],'clean_scales_arcsec':[0,5.0,10.0]}",
                          "{'array_tags':['7m'],'clean_scales_arcsec':[0,5.0,10.0}")
    errors = _errors(tmp_path, {"config_definitions.txt": bad})
    e = _hits(errors, "config_definitions.txt")[0]
    assert e.line == 7
    assert e.message.startswith("unparsable literal") and "expected a Python literal" in e.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", "expected a float (write 2.0, not 2)"), ("'2.6'", "expected a float such as 2.6")],
)
def test_wrong_value_type(tmp_path, value, expected):
    bad = CONFIGS.replace("'channel_kms':2.6", f"'channel_kms':{value}")
    errors = _errors(tmp_path, {"config_definitions.txt": bad})
    e = _one(errors, "config_definitions.txt")
    assert e.line == 1
    assert "wrong value type: 'channel_kms' of line_product 'co21'" in e.message and expected in e.message


def test_missing_key_file(tmp_path):
    errors = _errors(tmp_path, {"moment_key.txt": None})
    e = _one(errors, "master_key.txt")
    assert e.line == MASTER.splitlines().index("moment_key         moment_key.txt") + 1
    assert e.message.startswith("missing key file: moment_key") and "moment_key.txt does not exist" in e.message


def test_missing_master_key(tmp_path):
    with pytest.raises(KeyFileError) as exc:
        load_project(tmp_path / "nowhere")
    assert exc.value.errors[0].message == "missing key file: master key not found"


def test_recipe_missing_for_a_stage(tmp_path):
    bad = IMAGING.replace("all      cont   all           cont.clean", "all      cont   dirty         cont.clean")
    errors = _errors(tmp_path, {"imaging_recipes.txt": bad})
    assert len(errors) == 6  # 3 configs x (multiscale, singlescale)
    e = [x for x in errors if "config '12m' product 'cont' stage 'multiscale'" in x.message][0]
    assert e.file.endswith("imaging_recipes.txt") and e.line == 2
    assert e.message.startswith("recipe missing for a stage") and "expected a line '12m cont multiscale" in e.message


def test_bad_encoding(tmp_path):
    data = TARGETS.encode() + "ngc4321  12h22m54.9s  +15d49m21s  1572  \xff\xfe\n".encode("latin-1")
    errors = _errors(tmp_path, {"target_definitions.txt": data})
    e = _hits(errors, "target_definitions.txt")[0]
    assert e.line == 6 and e.message.startswith("bad encoding: byte 0xff is not valid UTF-8")


def test_clean_recipe_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"specmode = __import__('os').system('touch {marker}')\n"
    errors = _errors(tmp_path, {"cube.clean": evil})
    e = _one(errors, "cube.clean")
    assert e.line == 1 and "unparsable literal" in e.message and "'specmode'" in e.message
    assert not marker.exists()


def test_all_errors_of_a_key_set_are_collected(tmp_path):
    errors = _errors(tmp_path, {
        "master_key.txt": MASTER + "beam_key beams.txt\n",
        "ms_file_key.txt": MS + "ngc9999 2015.1.1 all 7m 1 c/x.ms\n",
        "moment_key.txt": MOMENTS + "broadmom0 colour blue\n",
        "linearmosaic_definitions.txt": LINMOS + "ngc3627 ngc3627_3\n",
    })
    files = {e.file.rsplit("/", 1)[1] for e in errors}
    assert files == {"master_key.txt", "ms_file_key.txt", "moment_key.txt", "linearmosaic_definitions.txt"}


def test_environment_variable_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_TEST_ROOT", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    master = MASTER.replace("imaging_root       work/imaging", "imaging_root       ${PHANGS_TEST_ROOT}/img")
    p = load_project(write_keyset(tmp_path, {"master_key.txt": master}))
    assert p.root("imaging_root") == tmp_path / "elsewhere" / "img"
    assert any("data root imaging_root" in w.message and "does not exist" in w.message for w in p.warnings)
    with pytest.raises(KeyFileError, match="imaging_root .* does not exist"):
        p.require_roots("imaging_root", must_exist=True)
    # an unset variable in a data root: a warning at check time, an error when the root is needed
    monkeypatch.delenv("PHANGS_TEST_ROOT")
    p = load_project(write_keyset(tmp_path, {"master_key.txt": master}))
    w = [w for w in p.warnings if "PHANGS_TEST_ROOT" in w.message]
    assert len(w) == 1 and w[0].line == 3 and "environment variable PHANGS_TEST_ROOT is not set" in w[0].message
    with pytest.raises(KeyFileError, match="imaging_root .* environment variable PHANGS_TEST_ROOT is not set"):
        p.require_roots("imaging_root")
    # ... but in a key-file path it is an error naming the line
    master2 = MASTER.replace("ms_key             ms_file_key.txt", "ms_key             ${PHANGS_TEST_ROOT}/ms.txt")
    errors = _errors(tmp_path, {"master_key.txt": master2})
    e = _one(errors, "master_key.txt")
    assert e.line == 10 and "environment variable PHANGS_TEST_ROOT" in e.message and "is not set" in e.message


def test_unset_root_is_a_warning_then_an_error_when_needed(tmp_path):
    master = MASTER.replace("release_root       work/release\n", "")
    p = load_project(write_keyset(tmp_path, {"master_key.txt": master}))
    assert [w.message for w in p.warnings] == ["release_root is not set; a pipeline run will need it"]
    with pytest.raises(KeyFileError, match="release_root is not set"):
        p.target_dir("release_root", "ngc0628")


def test_check_key_set_reports_partial_counts(tmp_path):
    report = check_key_set(write_keyset(tmp_path, {"ms_file_key.txt": MS + "ngc9999 p all 7m 1 x.ms\n"}))
    assert not report.valid and len(report.errors) == 1
    assert report.project is not None and report.project.summary()["ms_entries"] == 5
