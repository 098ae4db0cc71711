"""Convolution to angular/physical resolutions, tolerance rule and coverage (reference 11.D)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.convolution import (
    convolve_cube,
    physical_to_angular_arcsec,
)
from phangs_operators.routines.cubes.stage import parse_resolutions


def test_4as_cube_and_coverage_match_oracle(ref_stage, oracle):
    out, res = ref_stage
    cube = next(out.glob("*_co21_4as.fits"))
    hdr = fits.getheader(cube)
    assert hdr["BMAJ"] * 3600 == pytest.approx(4.0) and hdr["BMIN"] * 3600 == pytest.approx(4.0)
    data = fits.getdata(cube).astype(np.float64)
    assert np.nansum(data) == pytest.approx(oracle["cube_4as"]["nansum"], rel=1e-5)
    cov = fits.getdata(next(out.glob("*_4as_coverage.fits")))
    assert np.nanmean(cov) == pytest.approx(oracle["coverage_4as_mean"], rel=1e-5)
    assert np.nanmean(cov) == pytest.approx(0.928671, abs=1e-6)
    cov2d = fits.getdata(next(out.glob("*_4as_coverage2d.fits")))
    assert cov2d.shape == (64, 64)
    assert np.nansum(cov2d) == pytest.approx(3803.84, abs=0.01)
    assert res.resolutions["4as"]["convolve"]["status"] == "convolved"


def test_smaller_beam_is_a_logged_skip(ref_cube, tmp_path, caplog):
    res = convolve_cube(ref_cube, tmp_path / "c1.fits", target_beam_arcsec=1.0)
    assert res.status == "skipped" and "cannot be matched" in res.warnings[0]
    assert "cannot be matched" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_within_tolerance_is_written_unconvolved(ref_cube, tmp_path):
    res = convolve_cube(ref_cube, tmp_path / "c.fits", target_beam_arcsec=2.1)
    assert res.status == "within_tolerance"
    np.testing.assert_array_equal(fits.getdata(tmp_path / "c.fits"), fits.getdata(ref_cube))
    assert np.all(fits.getdata(tmp_path / "c_coverage.fits") == 1.0)
    # a tighter tolerance convolves
    res = convolve_cube(ref_cube, tmp_path / "d.fits", target_beam_arcsec=2.1, tol=0.01)
    assert res.status == "convolved"


def test_physical_resolution_and_dist_card(ref_cube, tmp_path):
    theta = physical_to_angular_arcsec(150.0, 10.0)
    assert theta == pytest.approx(150 / 10e6 * 206264.806, rel=1e-8)
    res = convolve_cube(ref_cube, tmp_path / "p.fits", target_beam_arcsec=theta, dist_mpc=10.0)
    hdr = fits.getheader(tmp_path / "p.fits")
    assert hdr["DIST_MPC"] == 10.0 and hdr["BMAJ"] * 3600 == pytest.approx(theta)
    assert res.to_dict()["dist_mpc"] == 10.0
    with pytest.raises(CubeError, match="distance"):
        physical_to_angular_arcsec(150.0, 0.0)


def test_resolution_tags():
    tags = [r.tag for r in parse_resolutions("4arcsec, 7.5as,150pc,1kpc")]
    assert tags == ["4as", "7p5as", "150pc", "1kpc"]
    assert parse_resolutions("1kpc")[0].value == 1000.0
    with pytest.raises(CubeError, match="resolution"):
        parse_resolutions("4 parsnips")
