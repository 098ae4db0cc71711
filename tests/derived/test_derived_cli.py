"""``phangs derive`` end to end, and every bad-input case (clear error, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.cli import main
from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.moments import PHANGS_MOMENTS, make_moments
from phangs_operators.routines.cubes.stage import run_derived_stage
from phangs_operators.routines.cubes.synthetic import synthetic_cube, synthetic_header

from .conftest import write_cube

SMALL = (12, 24, 24)


@pytest.fixture
def small_cube(tmp_path):
    data, hdr = synthetic_cube(SMALL, disk_sigma_pix=4.0)
    return write_cube(tmp_path / "small_cube.fits", data, hdr)


def test_cli_writes_phangs_names(small_cube, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["derive", str(small_cube), "--out", str(out), "--noise-kw",
               '{"spec_box": 5, "iterations": 3}', "--resolutions", "4arcsec,1arcsec"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    for n in ("small_cube_noise.fits", "small_cube_strictmask.fits",
              "small_cube_broadmask.fits", "small_cube_strict_mom0.fits",
              "small_cube_strict_emom0.fits", "small_cube_broad_tpeak12p5.fits",
              "small_cube_broad_etpeak12p5.fits", "small_cube_strict_evquad.fits",
              "small_cube_4as.fits", "small_cube_4as_coverage.fits",
              "small_cube_4as_coverage2d.fits", "small_cube_4as_noise.fits",
              "small_cube_4as_strictmask.fits", "small_cube_4as_strict_mom0.fits"):
        assert n in names, n
    assert not any("1as" in n for n in names)
    assert not any(n.startswith(".") or n.endswith(".tmp") for n in names)
    text = capsys.readouterr().out
    assert "skipped 1as" in text and "cannot be matched" in text
    assert "skipped mom1wprior: no velocity-field prior given or found" in text


def test_cli_moment_key_selects_products(small_cube, tmp_path):
    key = tmp_path / "moment_key.txt"
    key.write_text("m0 algorithm mom0\nm0 mask strictmask\nm0 ext _strict_mom0\n"
                   "m0 ext_error _strict_emom0\n")
    out = tmp_path / "o"
    assert main(["derive", str(small_cube), "--out", str(out), "--moments", str(key)]) == 0
    maps = sorted(p.name for p in out.iterdir() if "mom" in p.name)
    assert maps == ["small_cube_strict_emom0.fits", "small_cube_strict_mom0.fits"]


def test_cli_broadmask_kw_is_applied(small_cube, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["derive", str(small_cube), "--out", str(a), "--moments", "/dev/null"])
    main(["derive", str(small_cube), "--out", str(b), "--moments", "/dev/null",
          "--broadmask-kw", '{"grow_xy": 1}'])
    na = fits.getdata(a / "small_cube_broadmask.fits").sum()
    nb = fits.getdata(b / "small_cube_broadmask.fits").sum()
    assert nb > na > 0


def _bad_inputs(tmp_path):
    data, hdr = synthetic_cube(SMALL)
    cases = {}
    cases["image2d"] = (write_cube(tmp_path / "image2d.fits", data[0], fits.Header()),
                        "2-D image")
    h = hdr.copy()
    for k in ("BMAJ", "BMIN", "BPA"):
        del h[k]
    cases["nobeam"] = (write_cube(tmp_path / "nobeam.fits", data, h), "no beam")
    h = hdr.copy()
    h["CTYPE3"] = "STOKES"
    h["CUNIT3"] = ""
    cases["nospec"] = (write_cube(tmp_path / "nospec.fits", data, h), "not a spectral axis")
    cases["allnan"] = (write_cube(tmp_path / "allnan.fits", np.full(SMALL, np.nan, np.float32),
                                  hdr), "every voxel is NaN")
    txt = tmp_path / "notfits.fits"
    txt.write_text("hello, I am not a FITS file\n" * 10)
    cases["notfits"] = (txt, "not a readable FITS file")
    return cases


@pytest.mark.parametrize("case", ["image2d", "nobeam", "nospec", "allnan", "notfits"])
def test_bad_input_clear_error_and_nothing_written(tmp_path, case, capsys):
    path, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    with pytest.raises(CubeError) as err:
        run_derived_stage(path, out)
    assert str(path) in str(err.value) and message in str(err.value)
    assert not out.exists()
    rc = main(["derive", str(path), "--out", str(out)])
    assert rc == 1
    errline = capsys.readouterr().err
    assert path.name in errline and message in errline
    assert not out.exists()


def test_failure_midway_leaves_nothing(small_cube, tmp_path, monkeypatch):
    """An error after some products were staged rolls everything back."""
    import phangs_operators.routines.cubes.stage as stage

    def boom(*a, **k):
        raise CubeError("injected failure in the broad mask")

    monkeypatch.setattr(stage, "make_broad_mask", boom)
    out = tmp_path / "out"
    with pytest.raises(CubeError, match="injected"):
        run_derived_stage(small_cube, out)
    assert list(out.iterdir()) == []


def test_mismatched_noise_and_mask_grids(small_cube, tmp_path):
    other = write_cube(tmp_path / "other_grid.fits", np.ones((12, 20, 20), np.float32),
                       synthetic_header((12, 20, 20)))
    out = tmp_path / "m"
    out.mkdir()
    with pytest.raises(CubeError, match="other_grid.fits: noise grid"):
        make_moments(small_cube, other, {}, out, [PHANGS_MOMENTS["strictmom0"]])
    noise = write_cube(tmp_path / "noise.fits", np.full(SMALL, 0.1, np.float32),
                       synthetic_header(SMALL))
    with pytest.raises(CubeError, match="other_grid.fits: mask grid"):
        make_moments(small_cube, noise, {"strictmask": other}, out,
                     [PHANGS_MOMENTS["strictmom0"]])
    assert list(out.iterdir()) == []


def test_cli_bad_options(small_cube, tmp_path, capsys):
    assert main(["derive", str(small_cube), "--out", str(tmp_path / "x"),
                 "--noise-kw", "{spec_box: 5}"]) == 1
    assert "--noise-kw: not valid JSON" in capsys.readouterr().err
    assert main(["derive", str(small_cube), "--out", str(tmp_path / "x"),
                 "--resolutions", "150pc"]) == 1
    assert "distance" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_stage_result_is_json_serialisable(ref_stage):
    import json

    _, res = ref_stage
    d = json.loads(json.dumps(res.to_dict()))
    assert d["resolutions"]["native"]["strict_voxels"] == 7522
    assert d["resolutions"]["4as"]["strict_voxels"] == 41984


@pytest.mark.parametrize("option,value", [("--convolve-kw", '{"tolerance": 0.2}'),
                                          ("--strictmask-kw", '{"hi_thresold": 5}'),
                                          ("--noise-kw", '{"boxx": 5}'),
                                          ("--broadmask-kw", '{"grow": 1}')])
def test_cli_unknown_keywords_are_rejected(small_cube, tmp_path, capsys, option, value):
    out = tmp_path / "x"
    assert main(["derive", str(small_cube), "--out", str(out), option, value]) == 1
    assert "unknown keyword" in capsys.readouterr().err
    assert not out.exists()


def test_cli_missing_moment_key(small_cube, tmp_path, capsys):
    assert main(["derive", str(small_cube), "--out", str(tmp_path / "x"), "--moments",
                 str(tmp_path / "nokey.txt")]) == 1
    assert "nokey.txt: cannot read moment key" in capsys.readouterr().err
