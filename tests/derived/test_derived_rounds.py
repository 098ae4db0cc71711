"""Round-2 (mom1wprior) and round-3 (flat masks, flat moments) through the stage and the
per-step file routines an Airflow operator calls."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.routines.cubes import (
    PHANGS_MOMENTS,
    make_mom1wprior,
    make_moments,
    run_derived_stage,
)
from phangs_operators.routines.cubes.synthetic import synthetic_cube, synthetic_header

SHAPE = (40, 32, 32)


def _map_header(shape):
    hdr = synthetic_header((1,) + shape)
    for k in ("CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3", "NAXIS3", "SPECSYS"):
        hdr.remove(k, ignore_missing=True)
    hdr["NAXIS"] = 2
    hdr["BUNIT"] = "km/s"
    return hdr


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    data, hdr = synthetic_cube(SHAPE, disk_sigma_pix=6.0, noise_k=0.05)
    cube = tmp / "gal_7m_co21_pbcorr_trimmed_k.fits"
    fits.PrimaryHDU(data, hdr).writeto(cube)
    xx = np.arange(SHAPE[2])[None, :] * np.ones((SHAPE[1], 1))
    vfield = (1000.0 + 3.0 * 2 * (xx - SHAPE[2] // 2)).astype(np.float32)  # the model's field
    vf = tmp / "vfield.fits"
    fits.PrimaryHDU(vfield, _map_header(SHAPE[1:])).writeto(vf)
    out = tmp / "out"
    res = run_derived_stage(cube, out, vfield_prior_fits=vf, vfield_fits=vf,
                            flatstrictmask_kw={"window": "30km/s"}, resolutions="4arcsec")
    return out, res, vf, cube


def test_stage_writes_all_rounds(rounds):
    out, res, _, _ = rounds
    names = {p.name for p in out.iterdir()}
    assert res.root == "gal_7m_co21"
    for n in ("gal_7m_co21_mom1wprior.fits", "gal_7m_co21_emom1wprior.fits",
              "gal_7m_co21_flatstrictmask.fits", "gal_7m_co21_flatbroadmask.fits",
              "gal_7m_co21_flatstrict_mom0.fits", "gal_7m_co21_flatbroad_emom0.fits"):
        assert n in names, n
    assert "gal_7m_co21_4as_flatstrictmask.fits" in names  # flat masks are tagged per resolution
    assert "gal_7m_co21_4as_mom1wprior.fits" in names
    assert res.skipped == {}


def test_mom1wprior_fills_strict_holes_from_broad(rounds):
    out, _, _, _ = rounds
    strict = fits.getdata(out / "gal_7m_co21_strict_mom1.fits")
    hybrid = fits.getdata(out / "gal_7m_co21_mom1wprior.fits")
    broad = fits.getdata(out / "gal_7m_co21_broad_mom1.fits")
    prior = fits.getdata(out.parent / "vfield.fits")
    both = np.isfinite(strict)
    np.testing.assert_array_equal(hybrid[both], strict[both])
    filled = np.isfinite(hybrid) & ~both
    assert filled.sum() > 20  # the broad mask (native + 4") reaches beyond the strict one
    np.testing.assert_array_equal(hybrid[filled], broad[filled])
    assert np.all(np.abs(hybrid[filled] - prior[filled]) < 20.0)
    rejected = np.isfinite(broad) & ~both & ~filled
    assert rejected.sum() > 0  # low-S/N or off-prior broad values are not used
    h = fits.getheader(out / "gal_7m_co21_mom1wprior.fits")
    assert h["BTYPE"] == "Moment1" and h["BUNIT"] == "km / s"


def test_flat_strict_window_from_kw(rounds):
    out, _, _, _ = rounds
    flat_s = fits.getdata(out / "gal_7m_co21_flatstrictmask.fits").astype(bool)
    flat_b = fits.getdata(out / "gal_7m_co21_flatbroadmask.fits").astype(bool)
    strict = fits.getdata(out / "gal_7m_co21_strictmask.fits").astype(bool)
    # 30 km/s window: at most 13 channels per spectrum (+ the strict mask), 50 km/s: 21
    assert (flat_s & ~strict).sum(axis=0).max() <= 13
    assert (flat_b.sum(axis=0).max()) >= 20
    assert (flat_s | strict).sum() == flat_s.sum()


def test_per_step_routines_match_the_stage(rounds, tmp_path):
    out, _, vf, cube = rounds
    defs = [PHANGS_MOMENTS["strictmom0"], PHANGS_MOMENTS["broadtpeak12p5"]]
    r = make_moments(cube, out / "gal_7m_co21_noise.fits",
                     {"strictmask": out / "gal_7m_co21_strictmask.fits",
                      "broadmask": out / "gal_7m_co21_broadmask.fits"}, tmp_path, defs,
                     root="gal_7m_co21")
    assert set(r.products) == {"strictmom0", "broadtpeak12p5"}
    for n in ("gal_7m_co21_strict_mom0.fits", "gal_7m_co21_broad_etpeak12p5.fits"):
        np.testing.assert_array_equal(fits.getdata(tmp_path / n), fits.getdata(out / n))
    r2 = make_mom1wprior(out / "gal_7m_co21_strict_mom1.fits",
                         out / "gal_7m_co21_strict_emom1.fits",
                         out / "gal_7m_co21_broad_mom1.fits", out / "gal_7m_co21_broad_emom1.fits",
                         tmp_path / "h.fits", tmp_path / "eh.fits",
                         broad_mom0=out / "gal_7m_co21_broad_mom0.fits",
                         broad_emom0=out / "gal_7m_co21_broad_emom0.fits", vfield_prior=vf,
                         vfield_reject_thresh="20km/s")
    np.testing.assert_array_equal(fits.getdata(tmp_path / "h.fits"),
                                  fits.getdata(out / "gal_7m_co21_mom1wprior.fits"))
    assert r2.to_dict()["products"]["mom1wprior"]["n_filled_from_broad"] > 20


def test_prior_found_by_phangs_name(rounds, tmp_path):
    """Without an explicit prior the stage uses {target}_7m+tp_co21_15as_strict_mom1.fits."""
    _, _, vf, cube = rounds
    out = tmp_path / "o"
    out.mkdir()
    (out / "gal_7m+tp_co21_15as_strict_mom1.fits").write_bytes(vf.read_bytes())
    res = run_derived_stage(cube, out, moment_defs=[
        PHANGS_MOMENTS[n] for n in ("strictmom1", "broadmom1", "broadmom0", "mom1wprior")])
    assert (out / "gal_7m_co21_mom1wprior.fits").exists()
    assert "mom1wprior" not in res.skipped
