"""The demo key set (include/keys) describes the simulated data and loads cleanly."""

from __future__ import annotations

import math
import re

import pytest
from astropy.coordinates import Angle

from .conftest import DEMO_KEYS

KEY_FILES = [
    "master_key.txt",
    "ms_file_key.txt",
    "dir_key.txt",
    "target_definitions.txt",
    "config_definitions.txt",
    "imaging_recipes.txt",
    "linearmosaic_definitions.txt",
    "singledish_key.txt",
    "cleanmask_key.txt",
    "derived_key.txt",
    "moment_key.txt",
    "distance_key.txt",
    "window_key.txt",
    "overrides.txt",
    "cube_mosaic.clean",
    "continuum_mosaic.clean",
]


def test_key_files_are_present_and_portable() -> None:
    for name in KEY_FILES:
        assert (DEMO_KEYS / name).is_file(), name
    for line in (DEMO_KEYS / "master_key.txt").read_text().splitlines():
        words = line.split()
        if not words or line.startswith("#"):
            continue
        assert len(words) == 2, line
        key, value = words
        if key.endswith("_root"):
            assert value.startswith("${PHANGS_DEMO_ROOT}/"), line  # never a machine's absolute path
        else:
            assert not value.startswith(("/", "~", "$")), line  # key files relative to the key dir
    for path in DEMO_KEYS.iterdir():
        text = path.read_text()
        assert not re.search(r"(^|\s)/(home|work|tmp|Users|export|data)/", text), path.name


@pytest.fixture
def demo_project(tiny_demo, monkeypatch):
    from phangs_operators.keys import load_project

    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tiny_demo.root))
    return load_project(DEMO_KEYS)


def test_demo_keys_load_without_errors(demo_project, tiny_demo) -> None:
    p = demo_project
    assert p.targets() == ["ngc9997", "ngc9998", "ngc9998_1", "ngc9998_2", "ngc9999"]
    assert p.whole_targets() == ["ngc9997", "ngc9998", "ngc9999"]
    assert p.mosaics() == ["ngc9998"] and p.mosaic_parts("ngc9998") == ["ngc9998_1", "ngc9998_2"]
    assert p.interf_configs() == ["12m", "12m+7m", "7m"] and p.feather_configs() == ["12m+7m+tp"]
    assert p.line_products() == ["co21"] and p.cont_products() == ["cont"]
    for config in p.interf_configs():
        for product in ("co21", "cont"):
            for stage in ("dirty", "multiscale", "singlescale"):
                assert p.recipe_file(config, product, stage).is_file()
    for target in p.whole_targets():
        assert p.distance_mpc(target) is not None
    # only the not-yet-created work roots may be missing
    for issue in p.warnings:
        assert "does not exist" in issue.message and "data/" not in issue.message, issue
    assert p.has_data_for_config("ngc9999", "12m+7m") and not p.has_data_for_config("ngc9997", "12m+7m")


def test_every_key_entry_resolves_to_a_simulated_file(demo_project, tiny_demo) -> None:
    p = demo_project
    m = tiny_demo.manifest
    by_path = {(tiny_demo.data / e["path"]).resolve(): e for e in m["measurement_sets"].values()}
    for e in m.get("tp_measurement_sets", {}).values():  # ALMA TP data: target = its galaxy
        by_path[(tiny_demo.data / e["path"]).resolve()] = {
            "target": e["galaxy"], "array": e["array"], "project": e["path"].split("/")[1]}
    seen = set()
    for entry in p.ms_entries():
        path = p.ms_path(entry)
        assert path is not None, f"{entry.filename} of {entry.target} not found"
        ms = by_path[path.resolve()]
        assert (ms["target"], ms["array"], ms["project"]) == (entry.target, entry.array_tag, entry.project)
        seen.add(path.resolve())
    assert seen == set(by_path), "simulated MSes missing from ms_file_key"
    for target in ("ngc9999", "ngc9998", "ngc9998_1", "ngc9998_2"):
        galaxy = m["targets"][target]["galaxy"] if target in m["targets"] else target
        if galaxy in {e["galaxy"] for e in m.get("tp_measurement_sets", {}).values()}:
            # made by the pipeline's total-power stage from the TP measurement sets
            assert p.singledish_file(target, "co21").endswith("_pipeline.fits"), target
            continue
        sd = p.singledish_path(target, "co21")
        assert sd is not None, target
        assert sd.resolve() == (tiny_demo.data / m["singledish"][galaxy]["path"]).resolve()


def test_targets_and_products_match_the_simulation(demo_project, tiny_demo) -> None:
    p = demo_project
    m = tiny_demo.manifest
    for name, t in m["targets"].items():
        rec = p.target(name)
        assert math.isclose(Angle(rec.ra).deg, Angle(t["ra"]).deg, abs_tol=1e-9), name
        assert math.isclose(Angle(rec.dec).deg, Angle(t["dec"]).deg, abs_tol=1e-9), name
        assert p.vsys_vwidth(name) == (t["vsys_kms"], t["vwidth_kms"])
    line = p.line_product("co21")
    native_kms = 299792.458 * m["preset_parameters"]["chan_width_hz"] / m["rest_frequency_hz"]
    assert line.channel_kms >= native_kms
    # the continuum range covers every spectral window (TOPO)
    ((lo, hi),) = p.cont_product("cont").freq_ranges_ghz
    for e in m["measurement_sets"].values():
        f0, f1 = e["freq_range_topo_hz"]
        assert lo * 1e9 < f0 and f1 < hi * 1e9, e["path"]
    # derived resolutions are coarser than the tiny data's beams (12m ~3.5", 7m ~13")
    for config in ("12m", "12m+7m", "12m+7m+tp"):
        assert min(p.ang_res(config, "co21").values()) >= 10.0
    assert min(p.ang_res("7m", "co21").values()) >= 15.0
