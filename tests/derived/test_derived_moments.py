"""Moment maps: PHANGS oracle values (reference 11.D) and hand-computable spectra (11.E)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import KeyFileError
from phangs_operators.routines.cubes.moments import (
    PHANGS_MOMENTS,
    equivalent_width,
    mom1_with_prior,
    moment0,
    moment1,
    moment2,
    peak_temperature,
    peak_velocity,
    quadratic_peak_velocity,
    read_moment_key,
    tpeak_channel_mask,
)

V = 100.0 + 2.5 * np.arange(5)
DV = 2.5
SIG = 0.1


def _spec(values, mask, extra_pixel=True):
    """(5, 1, n) arrays: pixel 0 = the spectrum; pixel 1 = noise only, unmasked."""
    n = 2 if extra_pixel else 1
    T = np.zeros((5, 1, n), dtype=np.float32)
    T[:, 0, 0] = values
    if extra_pixel:
        T[:, 0, 1] = [0.05, -0.02, 0.01, 0.03, -0.04]
    m = np.zeros(T.shape, dtype=bool)
    m[:, 0, 0] = mask
    return T, m, np.full(T.shape, SIG, dtype=np.float32)


ORACLE_MAPS = ["strict_mom0", "strict_emom0", "strict_mom1", "strict_emom1", "strict_mom2",
               "strict_emom2", "strict_ew", "strict_eew", "strict_vquad", "strict_evquad",
               "strict_vpeak", "strict_evpeak", "broad_mom0", "broad_emom0", "broad_mom1",
               "broad_emom1", "broad_tpeak", "broad_etpeak", "broad_tpeak12p5",
               "broad_etpeak12p5"]


@pytest.mark.parametrize("name", ORACLE_MAPS)
def test_native_maps_match_oracle(ref_stage, oracle, name):
    out, _ = ref_stage
    path = next(out.glob(f"*_co21_{name}.fits"))
    a = fits.getdata(path).astype(np.float64)
    ref = oracle["maps"][name]
    assert a.shape == (64, 64)
    assert int(np.isfinite(a).sum()) == ref["n_finite"]
    assert np.nansum(a) == pytest.approx(ref["nansum"], rel=1e-5)
    assert np.nanmean(a) == pytest.approx(ref["nanmean"], rel=1e-5)
    assert np.nanmedian(a) == pytest.approx(ref["nanmedian"], rel=1e-5, abs=1e-9)
    if np.isfinite(ref["centre"]):
        assert a[32, 32] == pytest.approx(ref["centre"], rel=1e-5)


def test_reference_headline_numbers(ref_stage):
    """The literal numbers of reference 11.D."""
    out, _ = ref_stage

    def get(n):
        return fits.getdata(next(out.glob(f"*_co21_{n}.fits"))).astype(np.float64)

    m0 = get("strict_mom0")
    assert np.nansum(m0) == pytest.approx(9133.53, abs=0.01)
    assert m0[32, 32] == pytest.approx(25.6389, abs=1e-4)
    assert get("strict_emom0")[32, 32] == pytest.approx(1.10860, abs=1e-5)
    assert np.nanmean(get("strict_mom1")) == pytest.approx(1000.202, abs=1e-3)
    assert get("strict_mom1")[32, 32] == pytest.approx(999.2747, abs=1e-4)
    assert np.nanmean(get("strict_emom2")) == pytest.approx(1.71135, abs=1e-5)
    assert np.nanmean(get("strict_ew")) == pytest.approx(5.89846, abs=1e-5)
    assert np.isfinite(get("broad_tpeak")).sum() == 4096
    assert get("broad_tpeak12p5")[32, 32] == pytest.approx(0.962091, abs=1e-6)
    ev = get("strict_evquad")
    assert np.isfinite(ev).sum() == 675 and np.nanmedian(ev) == pytest.approx(1.25)
    assert np.nanmean(get("broad_emom1")) == pytest.approx(1324.69, abs=0.01)
    assert np.nanmedian(get("broad_emom1")) == pytest.approx(3.81523, abs=1e-5)


def test_moment_headers(ref_stage):
    out, _ = ref_stage
    h = fits.getheader(next(out.glob("*_co21_strict_mom0.fits")))
    assert h["BUNIT"] == "K km / s" and h["BTYPE"] == "Moment0"
    assert h["BMAJ"] == pytest.approx(2 / 3600) and h["NAXIS"] == 2
    assert h["CHANWDTH"] == pytest.approx(2500.0) and "m / s" in h.comments["CHANWDTH"]
    assert "BEAM" not in h and h["DATAMAX"] == pytest.approx(25.6389, abs=1e-3)
    assert any("collapsing cube over VRAD axis" in c for c in h["COMMENT"])
    he = fits.getheader(next(out.glob("*_co21_strict_emom1.fits")))
    assert he["BTYPE"] == "Moment1 Error" and he["BUNIT"] == "km / s"
    assert fits.getheader(next(out.glob("*_co21_broad_tpeak.fits")))["BUNIT"] == "K"
    assert fits.getheader(next(out.glob("*_co21_strict_ew.fits")))["BTYPE"] == "VelDisp EW"
    assert fits.getheader(next(out.glob("*_co21_strict_vquad.fits")))["BTYPE"] == "Vmax"
    assert fits.getdata(next(out.glob("*_co21_strict_mom0.fits"))).dtype.itemsize == 4


def test_mom0_and_error_hand():
    T, m, s = _spec([0, 1, 3, 1, 0], [0, 1, 1, 1, 0])
    mom0, err = moment0(T, m, s, DV)
    assert mom0[0, 0] == pytest.approx(5 * DV)
    assert err[0, 0] == pytest.approx(np.sqrt(3) * SIG * DV)
    # observed but unmasked pixel: 0, error = median sigma * sqrt(10 km/s / dv) * dv
    assert mom0[0, 1] == 0.0
    assert err[0, 1] == pytest.approx(SIG * np.sqrt(10 / DV) * DV)
    T[:, 0, 1] = np.nan  # not observed -> NaN
    mom0, err = moment0(T, m, s, DV)
    assert np.isnan(mom0[0, 1]) and np.isnan(err[0, 1])


def test_mom1_mom2_hand():
    T, m, s = _spec([0, 1, 3, 1, 0], [0, 1, 1, 1, 0])
    mom1, e1 = moment1(T, m, s, V)
    assert mom1[0, 0] == pytest.approx(105.0)
    assert e1[0, 0] == pytest.approx(SIG * np.sqrt(2 * DV**2) / 5)
    assert np.isnan(mom1[0, 1]) and np.isnan(e1[0, 1])
    mom2, e2 = moment2(T, m, s, V)
    var = 2 * DV**2 / 5
    assert mom2[0, 0] == pytest.approx(np.sqrt(var))
    numer = SIG**2 * (2 * (DV**2 - var) ** 2 + var**2)
    assert e2[0, 0] == pytest.approx((numer / 25) ** 0.25)  # PHANGS: fourth root


def test_ew_hand():
    T, m, s = _spec([0, 1, 3, 1, 0], [0, 1, 1, 1, 0])
    ew, err = equivalent_width(T, m, s, V, DV)
    sew = 5 * DV / (3 * np.sqrt(2 * np.pi))
    assert ew[0, 0] == pytest.approx(sew)
    term1 = 3 * SIG**2 * DV**2 / (2 * np.pi * 9)
    term2 = (sew**2 - sew * DV / np.sqrt(2 * np.pi)) * SIG**2
    assert err[0, 0] == pytest.approx(np.sqrt(term1 + term2))


def test_tpeak_uses_channel_range_of_mask_hand():
    T, m, s = _spec([0, 1, 1, 3, 0], [0, 1, 1, 1, 0])
    rng = tpeak_channel_mask(m)
    assert rng == (1, 3)  # [first, last): the last masked channel is excluded (PHANGS)
    tp, err = peak_temperature(T, rng, s, DV)
    assert tp[0, 0] == pytest.approx(1.0)  # the 3 K in channel 3 is outside [1, 3)
    assert tp[0, 1] == pytest.approx(0.01)  # unmasked pixel still gets a peak (spatial extent ignored)
    assert err[0, 0] == pytest.approx(SIG)


def test_tpeak_window_smoothing_hand():
    T = np.zeros((9, 1, 1), dtype=np.float32)
    T[3:6, 0, 0] = 3.0
    T[4, 0, 0] = 6.0
    s = np.full(T.shape, SIG, dtype=np.float32)
    tp, err = peak_temperature(T, (1, 8), s, DV, window_kms=3 * DV)
    assert tp[0, 0] == pytest.approx(4.0)  # (3 + 6 + 3) / 3
    assert err[0, 0] == pytest.approx(SIG / np.sqrt(3))
    tp1, err1 = peak_temperature(T, (1, 8), s, DV, window_kms=DV)  # 1 channel: no smoothing
    assert tp1[0, 0] == 6.0 and err1[0, 0] == pytest.approx(SIG)


def test_vpeak_and_vquad_hand():
    T, m, s = _spec([0, 1, 3, 2, 0], [0, 1, 1, 1, 0])
    vp, evp = peak_velocity(T, m, V, DV)
    assert vp[0, 0] == 105.0 and evp[0, 0] == DV and np.isnan(vp[0, 1])
    vq, evq = quadratic_peak_velocity(T, m, s, V, DV)
    assert vq[0, 0] == pytest.approx(105.0 + DV / 3)  # delta = -(2-1)/(2+1-6) = 1/3
    D, dT = 2 + 1 - 6.0, 2 - 1.0
    j = np.array([1 / D - dT / D**2, 2 * dT / D**2, -1 / D - dT / D**2])
    assert evq[0, 0] == pytest.approx(min(0.5, float(np.sum(j**2) * SIG**2)) * DV)
    T2, m2, s2 = _spec([0, 0, 3, 2.9, 0], [0, 1, 1, 1, 0])
    vq2, _ = quadratic_peak_velocity(T2, m2, s2, V, DV)
    assert vq2[0, 0] == pytest.approx(105.0 + 0.5 * DV)  # shift clipped at half a channel
    T3, m3, s3 = _spec([0, 1, 3, 1, 0], [0, 1, 1, 1, 0])
    assert quadratic_peak_velocity(T3, m3, s3, V, DV)[0][0, 0] == pytest.approx(105.0)


def test_mom1wprior_rules():
    strict = np.array([[1000.0, np.nan, np.nan, np.nan, np.nan]])
    estrict = np.array([[1.0, np.nan, np.nan, np.nan, np.nan]])
    broad = np.array([[990.0, 1010.0, 1010.0, 1010.0, 1050.0]])
    ebroad = np.array([[5.0, 6.0, 6.0, 6.0, 6.0]])
    m0 = np.array([[10.0, 10.0, 1.0, 10.0, 10.0]])
    em0 = np.ones((1, 5))
    prior = np.array([[1000.0, 1000.0, 1000.0, 985.0, 1000.0]])
    hyb, err = mom1_with_prior(strict, estrict, broad, ebroad, m0, em0, prior,
                               vfield_reject_thresh_kms=20.0, mom0_thresh=2.0)
    # strict wins; S/N 10 and |dv| 10 < 20 -> fill; S/N 1 -> no; |dv| 25 -> no; 50 -> no
    np.testing.assert_array_equal(hyb, [[1000.0, 1010.0, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(err, [[1.0, 6.0, np.nan, np.nan, np.nan]])


def test_phangs_moment_key_and_reader(tmp_path):
    assert len(PHANGS_MOMENTS) == 13
    d = PHANGS_MOMENTS["broadtpeak12p5"]
    assert (d.ext, d.ext_error, d.kwargs) == ("_broad_tpeak12p5", "_broad_etpeak12p5",
                                              {"window": "12.5km/s"})
    assert PHANGS_MOMENTS["mom1wprior"].round == 2
    key = tmp_path / "moment_key.txt"
    key.write_text("# test\nmymom0 algorithm mom0\nmymom0 mask strictmask\n"
                   "mymom0 ext _strict_mom0\nmymom0 ext_error _strict_emom0\n"
                   "mytp algorithm tpeak\nmytp mask broadmask\nmytp ext _tp\n"
                   "mytp ext_error _etp\nmytp kwargs {'window':'5km/s'}\n")
    defs = read_moment_key(key)
    assert defs["mytp"].kwargs == {"window": "5km/s"} and defs["mymom0"].round == 1
    key.write_text("a algorithm mom0\na colour blue\n")
    with pytest.raises(KeyFileError, match=r"moment_key.txt:2: unknown moment parameter"):
        read_moment_key(key)


def test_total_flux_of_a_bright_model_is_recovered(tmp_path):
    """Strict mom0 total flux within 10 % of the model's (high S/N cube)."""
    from phangs_operators.routines.cubes.stage import run_derived_stage
    from phangs_operators.routines.cubes.synthetic import synthetic_cube

    data, hdr = synthetic_cube(noise_k=0.02, seed=7)
    model, _ = synthetic_cube(noise_k=0.0, seed=7)
    path = tmp_path / "bright.fits"
    fits.PrimaryHDU(data, hdr).writeto(path)
    run_derived_stage(path, tmp_path / "out", moment_defs=[PHANGS_MOMENTS["strictmom0"]])
    mom0 = fits.getdata(tmp_path / "out" / "bright_strict_mom0.fits")
    model_flux = model.sum(dtype=np.float64) * 2.5
    assert np.nansum(mom0) == pytest.approx(model_flux, rel=0.10)


def test_total_flux_in_jy_kms(ref_cube):
    from phangs_operators.routines.cubes.io import read_cube
    from phangs_operators.routines.cubes.moments import total_flux_jy_kms

    cube = read_cube(ref_cube)
    mom0 = np.full((64, 64), 0.0)
    mom0[10, 10] = 5.74865 * cube.pixels_per_beam  # 1 Jy km/s in K km/s summed over pixels
    # reference §11.C: a 2" round beam at 230.538 GHz gives 5.74865 K per Jy/beam
    assert total_flux_jy_kms(cube, mom0) == pytest.approx(1.0, rel=2e-5)


def test_nan_edged_cube_with_growth_matches_oracle(oracle, tmp_path):
    """A second oracle case: NaN footprint edges, a descending velocity axis, min_beams and
    xy/v growth (numbers from the original code, see oracle_values.json)."""
    from phangs_operators.routines.cubes.masks import make_strict_mask
    from phangs_operators.routines.cubes.moments import MomentDef, make_moments
    from phangs_operators.routines.cubes.noise import make_noise_cube
    from phangs_operators.routines.cubes.synthetic import synthetic_cube

    case = oracle["nan_edge_case"]
    d, h = synthetic_cube((50, 72, 80), seed=3)
    yy, xx = np.mgrid[0:72, 0:80]
    d[:, (yy - 36) ** 2 / 34**2 + (xx - 40) ** 2 / 36**2 > 1] = np.nan
    d[:3, :5, :] = np.nan
    d[20, 40, 40] = np.nan
    h["CDELT3"] = -2500.0
    h["CRVAL3"] = 1000e3 + 2500 * 25
    cube = tmp_path / "nan_cube.fits"
    fits.PrimaryHDU(d, h).writeto(cube)
    make_noise_cube(cube, tmp_path / "noise.fits", spec_box=5, iterations=3)
    noise = fits.getdata(tmp_path / "noise.fits")
    assert np.isfinite(noise).sum() == case["noise_n_finite"]
    assert np.nanmean(noise) == pytest.approx(case["noise_mean"], rel=1e-6)
    r = make_strict_mask(cube, tmp_path / "noise.fits", tmp_path / "strict.fits", grow_xy=1,
                         grow_v=2, min_beams=2.0)
    assert r.n_voxels == case["strict_voxels"]
    names = {"mom0": "_strict_mom0", "mom1": "_strict_mom1", "mom2": "_strict_mom2",
             "ew": "_strict_ew", "vquad": "_strict_vquad", "vpeak": "_strict_vpeak",
             "tpeak": "_strict_tpeak"}
    errs = {"_strict_ew": "_strict_eew"}
    defs = [MomentDef(a, a, "strictmask", e, errs.get(e, e.replace("_strict_", "_strict_e")))
            for a, e in names.items()]
    defs.append(MomentDef("tp12", "tpeak", "strictmask", "_strict_tpeak12p5",
                          "_strict_etpeak12p5", kwargs={"window": "12.5km/s"}))
    make_moments(cube, tmp_path / "noise.fits", {"strictmask": tmp_path / "strict.fits"},
                 tmp_path, defs, root="x")
    for name, ref in case["maps"].items():
        a = fits.getdata(tmp_path / f"x_{name}.fits").astype(np.float64)
        assert int(np.isfinite(a).sum()) == ref["n_finite"], name
        assert np.nansum(a) == pytest.approx(ref["nansum"], rel=1e-5), name


def test_jy_per_beam_cube_gives_kelvin_maps(tmp_path):
    """Moments are in K whatever the cube unit (PHANGS converts the cube to K)."""
    import astropy.units as u
    from radio_beam import Beam

    from phangs_operators.routines.cubes.stage import run_derived_stage
    from phangs_operators.routines.cubes.synthetic import synthetic_cube

    data, hdr = synthetic_cube((24, 32, 32), disk_sigma_pix=5.0, noise_k=0.05)
    vel = 1000.0 - 2.5 * 12 + 2.5 * np.arange(24)
    freq = 230.538e9 * (1 - vel / 299792.458) * u.Hz
    jtok = Beam(2 * u.arcsec).jtok(freq).to_value(u.K)
    fits.PrimaryHDU(data, hdr).writeto(tmp_path / "k.fits")
    hj = hdr.copy()
    hj["BUNIT"] = "Jy/beam"
    fits.PrimaryHDU((data / jtok[:, None, None]).astype(np.float32), hj).writeto(
        tmp_path / "jy.fits")
    defs = [PHANGS_MOMENTS["strictmom0"], PHANGS_MOMENTS["broadtpeak"]]
    run_derived_stage(tmp_path / "k.fits", tmp_path / "a", moment_defs=defs)
    run_derived_stage(tmp_path / "jy.fits", tmp_path / "b", moment_defs=defs)
    for name in ("strict_mom0", "strict_emom0", "broad_tpeak"):
        a = fits.getdata(tmp_path / "a" / f"k_{name}.fits")
        b = fits.getdata(tmp_path / "b" / f"jy_{name}.fits")
        # the noise spectrum sees the 4e-4 slope of jtok across the band: tiny differences
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)
    assert fits.getheader(tmp_path / "b" / "jy_strict_mom0.fits")["BUNIT"] == "K km / s"
    hj["BUNIT"] = "erg/s"
    fits.PrimaryHDU(data, hj).writeto(tmp_path / "bad.fits")
    from phangs_operators.errors import CubeError

    with pytest.raises(CubeError, match="bad.fits: BUNIT 'erg/s' is neither K nor Jy/beam"):
        run_derived_stage(tmp_path / "bad.fits", tmp_path / "c", moment_defs=defs)
    assert list((tmp_path / "c").iterdir()) == []
