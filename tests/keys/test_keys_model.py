"""Project queries on the minimal key set: data resolution against roots, combinations, listing rules."""

from __future__ import annotations

import pytest

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import load_project

from .keyset import MASTER, write_keyset


def test_ms_resolved_against_search_paths_in_order(tmp_path):
    master = MASTER.replace("ms_root            uvdata\n", "ms_root            uvdata\nms_root            uvdata2\n")
    keys = write_keyset(tmp_path, {"master_key.txt": master})
    (keys / "uvdata2" / "a" / "ngc0628_7m_1.ms").mkdir(parents=True)
    p = load_project(keys)
    (entry, path), = p.ms_for("ngc0628", "7m")
    assert entry.filename == "a/ngc0628_7m_1.ms"
    assert p.ms_candidates(entry) == [keys / "uvdata" / "a/ngc0628_7m_1.ms", keys / "uvdata2" / "a/ngc0628_7m_1.ms"]
    assert path == keys / "uvdata2" / "a" / "ngc0628_7m_1.ms"
    (keys / "uvdata" / "a" / "ngc0628_7m_1.ms").mkdir(parents=True)
    assert p.ms_path(entry) == keys / "uvdata" / "a" / "ngc0628_7m_1.ms"  # first root wins
    (entry12, path12), = p.ms_for("ngc0628", "12m")
    assert path12 is None


def test_singledish_and_cleanmask_resolution(tmp_path):
    keys = write_keyset(tmp_path)
    (keys / "sd" / "ngc0628_tp_co21.fits").write_bytes(b"")
    (keys / "masks" / "ngc0628_mask.fits").write_bytes(b"")
    p = load_project(keys)
    assert p.singledish_path("ngc0628", "co21") == keys / "sd" / "ngc0628_tp_co21.fits"
    assert p.singledish_path("ngc3627_2", "co21") is None  # listed but not on disk
    assert p.singledish_file("ngc3627_1", "co21") is None
    assert p.cleanmask_file("ngc0628", "cont") == "ngc0628_mask.fits"  # product 'all'
    assert p.cleanmask_path("ngc0628", "co21") == keys / "masks" / "ngc0628_mask.fits"
    assert p.cleanmask_path("ngc3627_1", "co21") is None


def test_combinations_strict_config(tmp_path):
    p = load_project(write_keyset(tmp_path))
    interf = {c.as_tuple() for c in p.imaging_combinations()}
    assert interf == {
        (t, c, prod)
        for t, cs in {"ngc0628": ("12m", "12m+7m", "7m"), "ngc3627_1": ("7m",),
                      "ngc3627_2": ("12m", "12m+7m", "7m")}.items()
        for c in cs
        for prod in ("co21", "cont")
    }
    feather = {c.as_tuple() for c in p.feather_combinations()}
    assert feather == {("ngc0628", "12m+7m+tp", "co21"), ("ngc0628", "7m+tp", "co21"),
                       ("ngc3627_2", "12m+7m+tp", "co21"), ("ngc3627_2", "7m+tp", "co21")}
    mosaic = {c.as_tuple() for c in p.mosaic_combinations()}
    assert mosaic == {("ngc3627", c, prod) for c in ("12m", "12m+7m", "7m") for prod in ("co21", "cont")} | {
        ("ngc3627", "12m+7m+tp", "co21"), ("ngc3627", "7m+tp", "co21")}
    assert {c.kind for c in p.pipeline_combinations()} == {"interf", "feather"}
    assert p.pipeline_combinations(configs=["7m+tp"]) == p.feather_combinations(configs=["7m+tp"])
    assert len(p.pipeline_combinations(configs=["7m+tp"])) == 2


def test_derived_kwargs_and_unknown_kind(tmp_path):
    p = load_project(write_keyset(tmp_path))
    assert p.derived_kwargs("7m+tp", "cont", "noise_kw") == {"spec_box": 5, "iterations": 3}
    kw = p.derived_kwargs("7m", "co21", "noise_kw")
    kw["spec_box"] = 99  # a copy
    assert p.derived_kwargs("7m", "co21", "noise_kw")["spec_box"] == 5
    with pytest.raises(KeyFileError, match="unknown derived keyword set"):
        p.derived_kwargs("7m", "co21", "beam_kw")
    assert p.mask_configs("12m+7m", "cont") == ["12m+7m+tp"]
    assert p.moment_list("12m", "co21") == []


def test_key_file_listed_twice_is_read_once(tmp_path):
    master = MASTER + "ms_key             ms_file_key.txt\n"
    p = load_project(write_keyset(tmp_path, {"master_key.txt": master}))
    assert len(p.ms_entries()) == 5
    assert any("listed twice" in w.message for w in p.warnings)


def test_several_files_of_one_kind_accumulate(tmp_path):
    master = MASTER + "ms_key             more_ms.txt\n"
    more = "ngc3627_1  2015.1.00956  all  12m  1  b/ngc3627_1_12m.ms\n"
    p = load_project(write_keyset(tmp_path, {"master_key.txt": master, "more_ms.txt": more}))
    assert p.array_tags_for_target("ngc3627_1") == ["12m", "7m"]
    names = [f.name for f in p.key_files]
    assert names.index("more_ms.txt") == names.index("ms_file_key.txt") + 1  # read in master-key order


def test_vsys_of_part_and_parent(tmp_path):
    target_lines = ("ngc0628     01h36m41.7s   +15d47m01s   657   254\n"
                    "ngc3627     11h20m15.0s   +12d59m30s   717   550\n"
                    "ngc3627_1   11h20m15.0s   +12d57m30s   720   300\n"
                    "ngc3627_2   11:20:15.0   13.01.30   717   550\n")
    p = load_project(write_keyset(tmp_path, {"target_definitions.txt": target_lines}))
    assert p.vsys_vwidth("ngc3627_1") == (720.0, 300.0)
    assert p.vsys_vwidth("ngc3627_1", check_parent=True) == (717.0, 550.0)
    assert p.phasecenter("ngc3627_2") == "J2000 11:20:15.0 13.01.30"
    assert p.distance_mpc("ngc3627_2") == 11.32 and p.distance_mpc("ngc0628") == 9.84
    assert p.velocity_window("ngc3627_1") is None and p.velocity_window_kms("ngc0628") == 40.0


def test_line_flag_ranges_use_parent_velocities(tmp_path):
    from phangs_operators.keys import get_ghz_range_for_line

    p = load_project(write_keyset(tmp_path))
    assert p.line_flag_ranges_ghz("ngc0628", "co21") == [get_ghz_range_for_line("co21", vsys_kms=657, vwidth_kms=254)]
    # a part uses its mosaic's vsys/vwidth; the cont product flags whole families (co, 13co)
    assert p.line_flag_ranges_ghz("ngc3627_1", "cont") == p.line_flag_ranges_ghz("ngc3627", "cont")
    assert len(p.line_flag_ranges_ghz("ngc3627", "cont")) == 12
