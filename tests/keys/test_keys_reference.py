"""The real PHANGS-ALMA key set loads unchanged; counts of REFERENCE 1.14 / 11.A.1 and values of 11.A.2."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import load_project

from .keyset import REFERENCE_KEYS

KEY_FILES = [
    "ms_file_key.txt",
    "singledish_key.txt",
    "cleanmask_key.txt",
    "distance_key.txt",
    "window_key.txt",
    "config_definitions.txt",
    "target_definitions.txt",
    "moment_key.txt",
    "derived_key.txt",
    "imaging_recipes.txt",
    "linearmosaic_definitions.txt",
    "overrides.txt",
    "dir_key.txt",
]


@pytest.fixture(scope="module")
def project():
    """The reference key set through a master key in a temp dir with portable roots."""
    return _portable_project()


_CACHE: dict[str, object] = {}


def _portable_project():
    if "p" not in _CACHE:
        import os
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="phangs-keys-ref-"))
        for d in ("imaging", "postprocess", "derived", "release", "uv1", "uv2", "sd", "masks", "vf"):
            (tmp / d).mkdir()
        os.environ["PHANGS_TEST_DATA_ROOT"] = str(tmp)
        master = tmp / "master_key.txt"
        lines = [
            f"key_dir {REFERENCE_KEYS}",
            "imaging_root imaging",
            "postprocess_root ./postprocess",
            "derived_root ${PHANGS_TEST_DATA_ROOT}/derived",
            "release_root $PHANGS_TEST_DATA_ROOT/release",
            "ms_root uv1",
            "ms_root uv2",
            "singledish_root sd",
            "cleanmask_root masks",
            "vfield_root vf",
        ]
        kinds = ["ms_key", "singledish_key", "cleanmask_key", "distance_key", "window_key", "config_key",
                 "target_key", "moment_key", "derived_key", "imaging_key", "linmos_key", "override_key",
                 "dir_key"]
        lines += [f"{k} {f}" for k, f in zip(kinds, KEY_FILES, strict=True)]
        master.write_text("\n".join(lines) + "\n")
        _CACHE["tmp"] = tmp
        _CACHE["p"] = load_project(tmp)
    return _CACHE["p"]


def test_reference_dir_loads_unchanged_with_warnings_only():
    p = load_project(REFERENCE_KEYS)
    assert len(p.targets()) == 160
    msgs = [w.message for w in p.warnings]
    assert any("key_dir" in m and "does not exist" in m for m in msgs)
    assert sum("data root ms_root" in m for m in msgs) == 3
    # the master key file itself is accepted too
    assert load_project(REFERENCE_KEYS / "master_key.txt").keyset_hash() == p.keyset_hash()


def test_portable_master_key_resolves_roots(project):
    tmp = _CACHE["tmp"]
    assert project.root("imaging_root") == tmp / "imaging"
    assert project.root("postprocess_root") == tmp / "postprocess"
    assert project.root("derived_root") == tmp / "derived"
    assert project.root("release_root") == tmp / "release"
    assert project.roots["ms_root"] == [tmp / "uv1", tmp / "uv2"]
    assert project.key_dir == REFERENCE_KEYS
    assert project.warnings == [] or all("override key" in w.message or "repeated" in w.message
                                         for w in project.warnings)
    assert project.target_dir("imaging_root", "ngc3627_1") == tmp / "imaging" / "ngc3627"


def test_counts_section_1_14(project):
    assert len(project.targets()) == 160
    assert len(project.whole_targets()) == 90
    assert len(project.mosaics()) == 26
    assert len(project.mosaic_parts()) == 70
    assert len(project.mosaic_parts("ngc5236")) == 9
    assert {len(project.mosaic_parts(m)) for m in project.mosaics()} <= set(range(2, 10))
    assert len(project.non_mosaic_targets()) == 134
    assert len(project.working_dirs()) == 90
    assert len(project.targets_with_uvdata()) == 136
    assert len(project.ms_entries()) == 663
    assert len(project.ms_entries(array_tag="12m")) == 184
    assert len(project.ms_entries(array_tag="7m")) == 479
    assert {e.field for e in project.ms_entries()} == {"all"}
    assert project.interf_configs() == ["12m", "12m+7m", "7m"]
    assert project.feather_configs() == ["12m+7m+tp", "7m+tp"]
    assert project.line_products() == ["13co21", "c18o21", "co21"]
    assert project.cont_products() == ["cont"]
    with_12m = [t for t in project.targets() if project.has_data_for_config(t, "12m")]
    with_7m = [t for t in project.targets() if project.has_data_for_config(t, "7m")]
    with_both = [t for t in project.targets() if project.has_data_for_config(t, "12m+7m")]
    assert (len(with_12m), len(with_7m), len(with_both)) == (110, 135, 109)
    assert project.imaging_recipe_lines == 8
    assert len(project.singledish_files) == 147
    sd_targets = {t for t, _p in project.singledish_files}
    assert len(sd_targets) == 141
    per_product = {p: sum(1 for _t, q in project.singledish_files if q == p) for p in project.line_products()}
    assert per_product == {"co21": 141, "13co21": 5, "c18o21": 1}
    assert len(project.cleanmask_files) == 159
    assert {p for _t, p in project.cleanmask_files} == {"all"}
    assert len(project.distances_mpc) == 90
    # decided: the window key's CSV header row is a header, not a bogus target 'target'
    assert len(project.windows) == 89 and "target" not in project.windows
    assert len(project.moments()) == 13
    assert len(project.override_entries) == 36


def test_summary_matches_counts(project):
    s = project.summary()
    assert s["targets"] == 160 and s["whole_targets"] == 90
    assert (s["mosaics"], s["mosaic_parts"]) == (26, 70)
    assert s["ms_entries_by_array"] == {"12m": 184, "7m": 479}
    assert (s["singledish_entries"], s["cleanmask_entries"], s["distances"]) == (147, 159, 90)
    assert (s["moments"], s["override_entries"]) == (13, 36)


def test_resolved_values_11_a_2(project):
    co21 = project.line_product("co21")
    assert co21.line_tag == "co21"
    assert co21.channel_kms == 2.6
    assert co21.statwt_edge_kms == 50.0
    assert co21.lines_to_flag == ("co21",)
    assert co21.fitorder == 0 and co21.combinespw is False
    assert co21.rest_frequency_ghz == pytest.approx(230.538)
    assert project.line_product("c18o21").channel_kms == 6.0
    assert project.line_product("c18o21").statwt_edge_kms == 100.0
    assert project.line_product("13co21").lines_to_flag == ("13co21", "c18o21")
    assert project.cont_product("cont").freq_ranges_ghz[0] == (214.87, 216.83)
    assert project.cont_product("cont").lines_to_flag == ("co", "13co", "c18o", "hcn", "hcop")
    assert project.clean_scales_arcsec("12m+7m") == [0, 1, 2.5, 5.0, 10.0]
    assert project.array_tags("12m+7m") == ["12m", "7m"]
    assert project.feather_config_for("12m+7m") == "12m+7m+tp"
    assert project.feather_config_for("7m") == "7m+tp"
    assert project.feather_config_for("12m") is None
    assert project.interf_config_for("7m+tp") == "7m"
    assert project.distance_mpc("ngc3627_1") == 11.32
    assert "ngc3627_1" not in project.distances_mpc  # inherited from the mosaic
    assert project.velocity_window("ngc0628") == "40.0km/s"
    assert project.vfield_file("ngc0628") == "ngc0628_combined_velocity_field.fits"
    assert project.phasecenter("ngc0628") == "J2000 01h36m41.7s +15d47m01s"
    assert project.vsys_vwidth("ngc1097_1") == (1271.0, 1000.0)
    assert project.working_dir("ngc3627_1") == "ngc3627"
    assert project.working_dir("ngc0628") == "ngc0628"
    assert project.mosaic_of("ngc1097_1") == "ngc1097"
    entry = project.ms_entries("ngc0628", "12m")[0]
    assert entry.project == "2012.1.00650" and entry.obsnum == "1" and entry.field_selection == ""
    assert project.singledish_file("ngc0253_1", "13co21") == "cycle6_data/ALMA_TP.NGC_253a.13CO21.image.VLSRK.fits"
    assert project.cleanmask_file("ngc4321", "co21") == "ngc4321_co21_clean_mask.fits"


ELEVEN = ["strictmom0", "strictmom1", "strictmom2", "strictew", "broadmom0", "broadtpeak", "broadtpeak12p5",
          "broadmom1", "mom1wprior", "flatstrictmom0", "flatbroadmom0"]
SEVEN_PHYS = {"60pc": 60.0, "90pc": 90.0, "120pc": 120.0, "150pc": 150.0, "500pc": 500.0, "750pc": 750.0,
              "1kpc": 1000.0}


def test_derived_table_1_9(project):
    d = project.derived("12m+7m", "co21")
    assert d.ang_res == {"2as": 2.0, "7p5as": 7.5, "11as": 11.0, "15as": 15.0}
    assert d.phys_res == SEVEN_PHYS
    assert list(d.mask_configs) == ["12m+7m+tp"]
    assert list(d.moments) == ELEVEN
    assert project.ang_res("12m", "co21") == {"2as": 2.0}
    assert project.phys_res("12m", "co21") == {k: SEVEN_PHYS[k] for k in ("60pc", "90pc", "120pc", "150pc")}
    assert project.mask_configs("12m", "co21") == ["12m+7m", "12m+7m+tp", "7m", "7m+tp"]
    assert project.moment_list("12m", "co21") == ["strictmom0", "broadmom0"]
    assert project.mask_configs("12m+7m+tp", "co21") == []
    assert project.moment_list("12m+7m+tp", "co21") == ELEVEN
    assert project.ang_res("7m", "co21") == {"7p5as": 7.5, "11as": 11.0, "15as": 15.0}
    assert project.ang_res("7m", "cont") == {"7p5as": 7.5, "11as": 11.0, "15as": 15.0}
    assert project.ang_res("12m+7m+tp", "cont") == {}
    assert project.mask_configs("7m", "co21") == ["7m+tp"]
    assert project.moment_list("7m+tp", "c18o21") == ["strictmom0", "broadmom0"]
    assert project.moment_list("12m+7m", "13co21") == []
    for config in project.all_configs():
        for product in project.products():
            assert project.derived_kwargs(config, product, "noise_kw") == {"spec_box": 5, "iterations": 3}
            assert project.derived_kwargs(config, product, "strictmask_kw") == {
                "hi_thresh": 4.0, "hi_nchan": 2, "lo_thresh": 2.0, "lo_nchan": 2, "grow_xy": 0, "grow_v": 0,
                "min_pix": None, "min_area": None}
            assert project.derived_kwargs(config, product, "convolve_kw") == {}
            assert project.derived_kwargs(config, product, "broadmask_kw") == {}


def test_moments_1_10(project):
    m = project.moment("mom1wprior")
    assert m.algorithm == "mom1wprior" and m.mask is None and m.round == 2
    assert (m.ext, m.ext_error) == ("_mom1wprior", "_emom1wprior")
    assert m.kwargs == {"vfield_reject_thresh": "20km/s", "mom0_thresh": 2.0}
    assert m.maps_to_pass == ("strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1", "broad_mom0",
                              "broad_emom0")
    assert m.other_exts == {"vfield_prior": "_7m+tp_co21_15as_strict_mom1.fits"}
    assert project.moment("broadtpeak12p5").kwargs == {"window": "12.5km/s"}
    assert project.moment("flatbroadmom0").round == 3
    assert project.moment("strictmom0").mask == "strictmask"
    assert project.moment("strictvquad").ext_error == "_strict_evquad"


def test_recipes_resolve_for_every_interf_config_product_stage(project):
    for config in project.interf_configs():
        for product in project.products():
            files = project.recipe_files(config, product)
            want = "continuum_mosaic.clean" if product == "cont" else "cube_mosaic.clean"
            assert [f.name for f in files] == [want] * 3
    cube = project.clean_parameters("12m+7m", "co21")
    assert len(cube) == 88
    assert cube["specmode"] == "cube" and cube["gridder"] == "mosaic" and cube["deconvolver"] == "multiscale"
    assert cube["robust"] == 0.5 and cube["imsize"] == [1000] and cube["cell"] == ["0.25arcsec"]
    assert cube["threshold"] == "0.0mJy/beam" and cube["perchanweightdensity"] is True
    cont = project.clean_parameters("7m", "cont", stage="dirty")
    assert (cont["specmode"], cont["deconvolver"], cont["nterms"]) == ("mfs", "mtmfs", 2)
    assert cont["restoringbeam"] == [] and cont["threshold"] == 0.0 and cont["cyclefactor"] == 1.0


def test_overrides_honoured(project):
    assert project.overrides("ngc1365", "12m+7m", "co21") == {"pblimit": 0.75, "smallscalebias": 0.9}
    assert project.override("smallscalebias", "ngc1365", "7m", "co21") == 0.7
    assert project.override("pblimit", "ngc1365", "7m", "co21", default=0.5) == 0.5
    assert project.overrides("ngc3627") == {"linearmosaic_deltara": 240, "linearmosaic_deltadec": 380}
    assert project.override_scope["ngc2903_1_12m+7m_co21"] == ("ngc2903_1", "12m+7m", "co21")
    stale = [w for w in project.warnings if "names no defined target" in w.message]
    assert {w.message.split("'")[1] for w in stale} == {
        "ngc4321north_12m+7m_co21", "ngc5068north_12m+7m_co21", "ngc5068south_12m+7m_co21",
        "ngc6744north_12m+7m_co21", "ngc6744south_12m+7m_co21"}


def test_pipeline_combinations_strict_config(project):
    interf = project.imaging_combinations()
    by_config: dict[str, set[str]] = {}
    for c in interf:
        by_config.setdefault(c.config, set()).add(c.target)
    assert {k: len(v) for k, v in by_config.items()} == {"12m": 110, "12m+7m": 109, "7m": 135}
    assert len(interf) == (110 + 109 + 135) * 4
    feather = project.feather_combinations()
    assert all(project.has_singledish(c.target, c.product) for c in feather)
    assert {c.product for c in feather} <= {"co21", "13co21", "c18o21"}
    assert ("ngc0628", "12m+7m+tp", "co21") in {c.as_tuple() for c in feather}
    # a target with 7m data only never gets 12m+7m or 12m+7m+tp
    only7 = sorted(by_config["7m"] - by_config["12m+7m"])[0]
    assert not any(c.target == only7 and c.config in ("12m+7m", "12m+7m+tp") for c in interf + feather)
    # restriction arguments
    sub = project.pipeline_combinations(targets=["ngc0628"], products=["co21"])
    assert {c.as_tuple() for c in sub} == {("ngc0628", "12m", "co21"), ("ngc0628", "12m+7m", "co21"),
                                           ("ngc0628", "7m", "co21"), ("ngc0628", "12m+7m+tp", "co21"),
                                           ("ngc0628", "7m+tp", "co21")}


def test_keyset_hash_is_sha256_of_files_in_read_order(project):
    h = hashlib.sha256()
    for f in project.key_files:
        h.update(f.read_bytes())
    assert project.keyset_hash() == h.hexdigest()
    assert project.key_files[0].name == "master_key.txt"
    assert {f.name for f in project.key_files} >= set(KEY_FILES) | {"cube_mosaic.clean", "continuum_mosaic.clean"}


def test_unknown_names_raise_keyfileerror(project):
    with pytest.raises(KeyFileError, match="ngc9999"):
        project.target("ngc9999")
    with pytest.raises(KeyFileError, match="co32"):
        project.line_product("co32")
    with pytest.raises(KeyFileError, match="is not defined"):
        project.derived("12m", "hcn10")
