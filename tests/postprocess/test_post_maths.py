"""Post-processing maths without CASA (reference section 11.F and 11.C)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import CubeError
from phangs_operators.routines.post import maths
from phangs_operators.routines.post.fitsheader import REMOVED_CARDS, clean_header
from tests.postprocess import synth

# ----------------------------------------------------------------------------- Kelvin factor


@pytest.mark.parametrize(("beam", "expected"), [(1.0, 22.9946), (2.0, 5.74865)])
def test_jytok_reference_values(beam, expected):
    assert maths.jytok_factor(beam, beam, 230.538e9) == pytest.approx(expected, rel=2e-6)


def test_jytok_scales_with_beam_area_and_frequency():
    base = maths.jytok_factor(2.0, 1.0, 230e9)
    assert maths.jytok_factor(4.0, 1.0, 230e9) == pytest.approx(base / 2)
    assert maths.jytok_factor(2.0, 1.0, 115e9) == pytest.approx(base * 4)
    with pytest.raises(CubeError):
        maths.jytok_factor(0.0, 1.0, 230e9)


def test_mean_frequency_of_linear_axis():
    assert maths.mean_frequency(100.0, 2.0, 0.0, 5) == pytest.approx(104.0)
    assert maths.mean_frequency(100.0, -2.0, 2.0, 5) == pytest.approx(100.0)


# ----------------------------------------------------------------------------- pb correction


def test_pb_correct_divides_above_cutoff_and_blanks_below():
    data = np.array([1.0, 1.0, 1.0, 2.0])
    pb = np.array([1.0, 0.5, 0.49, 0.8])
    out = maths.pb_correct(data, pb, cutoff=0.5)
    np.testing.assert_allclose(out[[0, 1, 3]], [1.0, 2.0, 2.5])
    assert np.isnan(out[2])
    with pytest.raises(CubeError):
        maths.pb_correct(data, pb, cutoff=0.0)


# ----------------------------------------------------------------------------- beams


def test_round_beam_target_uses_largest_plane_and_two_pixels():
    # per-plane majors, 0.5" pixels: sqrt(3.2^2 + 1^2)
    assert maths.round_beam_target([3.0, 3.2, 3.1], 0.5) == pytest.approx(math.sqrt(3.2**2 + 1.0))
    assert maths.round_beam_target(2.0, 0.25, padding_pixels=4) == pytest.approx(math.sqrt(4.0 + 1.0))
    with pytest.raises(CubeError):
        maths.round_beam_target([], 0.5)
    with pytest.raises(CubeError):
        maths.round_beam_target([1.0, np.nan], 0.5)


def test_beam_rounding_tolerance_is_one_percent():
    assert maths.beam_is_round(1.0, 0.9905)
    assert not maths.beam_is_round(1.0, 0.9895)


def test_beam_area_pixels():
    assert maths.beam_area_pixels(2.0, 2.0, 1.0) == pytest.approx(math.pi * 4 / (4 * math.log(2)))


# ----------------------------------------------------------------------------- mosaic


def test_mosaic_combine_weights_by_pb_squared_over_noise_squared():
    img1 = np.array([1.0, 1.0, np.nan, 5.0])
    img2 = np.array([3.0, 3.0, 3.0, np.nan])
    pb1 = np.array([1.0, 0.5, 1.0, 1.0])
    pb2 = np.array([1.0, 1.0, 1.0, 0.0])
    mos, w = maths.mosaic_combine([img1, img2], [pb1, pb2], [1.0, 2.0])
    # pixel 0: weights 1 and 1/4 -> (1 + 3/4) / 1.25
    assert mos[0] == pytest.approx((1 + 0.75) / 1.25)
    # pixel 1: weights 1/4 and 1/4 -> mean
    assert mos[1] == pytest.approx(2.0)
    assert mos[2] == pytest.approx(3.0)  # NaN part contributes nothing
    assert mos[3] == pytest.approx(5.0)
    np.testing.assert_allclose(w, [1.25, 0.5, 0.25, 1.0])


def test_mosaic_combine_masks_zero_weight_and_is_optimal():
    rng = np.random.default_rng(0)
    truth = 1.0
    n = 200_000
    a = truth + rng.normal(0, 1.0, n)
    b = truth + rng.normal(0, 3.0, n)
    mos, w = maths.mosaic_combine([a, b], [np.ones(n), np.ones(n)], [1.0, 3.0])
    # optimal variance 1 / (1 + 1/9)
    assert np.var(mos) == pytest.approx(1 / (1 + 1 / 9), rel=0.02)
    assert np.var(0.5 * (a + b)) > np.var(mos) * 2
    mos2, w2 = maths.mosaic_combine([np.ones(3)], [np.array([0.0, 1.0, np.nan])], [1.0])
    assert np.isnan(mos2[0]) and np.isnan(mos2[2]) and mos2[1] == 1.0
    assert (w2 > 0).tolist() == [False, True, False]


def test_mosaic_grid_from_corners_uses_cos_dec():
    dec0 = math.radians(60.0)
    pix = 1.0  # arcsec
    as2rad = math.pi / 180 / 3600
    # corners spanning 100" in RA coordinate (50" on the sky at dec 60) and 40" in Dec
    ra = np.array([0.0, 100.0, 0.0, 100.0]) * as2rad + 1.0
    dec = dec0 + np.array([-20.0, -20.0, 20.0, 20.0]) * as2rad
    g = maths.mosaic_grid(ra, dec, pix)
    assert g["width_ra_arcsec"] == pytest.approx(50.0, rel=1e-6)
    assert g["width_dec_arcsec"] == pytest.approx(40.0, rel=1e-9)
    assert (g["nx"], g["ny"]) == (51, 41)  # ceil(width / pixel) + 1
    assert g["crpix_x"] == pytest.approx(25.0)
    assert g["ra_ctr_rad"] == pytest.approx(1.0 + 50 * as2rad)
    with pytest.raises(CubeError):
        maths.mosaic_grid(ra, dec, 1e-4, max_pixels=10_000)


# ----------------------------------------------------------------------------- trimming


def test_valid_bounding_box_pads_and_clips():
    valid = np.zeros((10, 12, 6), dtype=bool)
    valid[3:5, 0:2, 2] = True
    valid[6, 4, 3] = True
    box = maths.valid_bounding_box(valid, pad=1)
    assert box == [(2, 7), (0, 5), (1, 4)]
    box2 = maths.valid_bounding_box(valid, pad=1, axes=[0, 2])
    assert box2[1] == (0, 11)
    with pytest.raises(CubeError):
        maths.valid_bounding_box(np.zeros((3, 3), bool))


@pytest.mark.parametrize(
    ("ppb", "minimum", "factor"), [(5.9, 3, 1), (6.0, 3, 2), (6.5, 3, 2), (9.1, 3, 3), (7.0, 4, 1), (8.0, 4, 2)]
)
def test_rebin_factor_respects_min_pixperbeam(ppb, minimum, factor):
    assert maths.rebin_factor(ppb * 0.5, 0.5, minimum) == factor
    # the rebinned cube keeps at least min_pixperbeam pixels per beam
    assert ppb / factor >= minimum or factor == 1


def test_trim_rind_erodes_one_pixel_per_plane():
    mask = np.zeros((7, 7, 2), dtype=bool)
    mask[1:6, 1:6, 0] = True
    mask[3, 3, 1] = True
    out = maths.trim_rind(mask, 1)
    assert out[:, :, 0].sum() == 9 and out[2:5, 2:5, 0].all()
    assert not out[:, :, 1].any()
    assert maths.trim_rind(mask, 0).sum() == mask.sum()


# ----------------------------------------------------------------------------- noise


def test_robust_noise_gaussian_and_outliers():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 100_000)
    assert maths.robust_noise(x) == pytest.approx(1.0, rel=0.02)
    y = x.copy()
    y[:2000] += 10.0
    assert maths.robust_noise(y) == pytest.approx(1.0, rel=0.03)
    assert np.std(y) > 1.3
    with pytest.raises(CubeError):
        maths.robust_noise(np.zeros(10))


# ----------------------------------------------------------------------------- feather


def test_feather_plane_recovers_missing_short_spacings():
    """Gaussian sky, interferometer with short spacings removed, TP copy at 28.5": total flux back."""
    sky = synth.Sky()
    n, pix = 128, 2.0
    x, y = synth.offsets(n, n, pix)
    bint, bsd = 6.0, 28.5
    truth = sky.image(x, y, bint, bint)
    interf = synth.highpass(truth, 10.0 / pix)
    sd = sky.image(x, y, bsd, bsd)
    area = maths.beam_area_pixels(bint, bint, pix)
    flux_truth = truth.sum() / area
    assert abs(interf.sum() / area) < 0.01 * flux_truth  # all zero-spacing flux gone
    out = maths.feather_plane(interf, sd, (bint / pix, bint / pix), bsd / pix, sdfactor=1.0)
    assert out.sum() / area == pytest.approx(flux_truth, rel=0.01)
    # small scales come from the interferometer: Fourier components above 0.15 cycles/pixel equal
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    high = k > 0.15
    f_out, f_truth = np.fft.fft2(out)[high], np.fft.fft2(truth)[high]
    assert np.max(np.abs(f_out - f_truth)) < 1e-3 * np.max(np.abs(np.fft.fft2(truth)))
    # and the result is much closer to the truth than the interferometer alone
    assert np.abs(out - truth).max() < 0.5 * np.abs(interf - truth).max()
    # sdfactor scales the low spacings only
    out2 = maths.feather_plane(interf, sd, (bint / pix, bint / pix), bsd / pix, sdfactor=2.0)
    assert out2.sum() / area == pytest.approx(2 * flux_truth, rel=0.01)


# ----------------------------------------------------------------------------- FITS header


def _raw_header() -> fits.Header:
    h = fits.Header()
    h["NAXIS"] = 3
    h["CTYPE1"], h["CTYPE2"], h["CTYPE3"] = "RA---SIN", "DEC--SIN", "VRAD"
    h["CUNIT3"], h["CRVAL3"], h["CDELT3"] = "km/s", 300.0, 2.5
    h["BMAJ"], h["BMIN"], h["BPA"] = 1.0e-3, 0.995e-3, 37.0
    h["TELESCOP"] = "ACA"
    for card in REMOVED_CARDS:
        h[card] = 1
    h.add_history("casa did this")
    h.add_history("and that")
    return h


def test_clean_header_phangs_rules():
    h = _raw_header()
    data = np.array([[[np.nan, 1.0], [-2.0, 3.0]]])
    notes = clean_header(h, data, object_name="ngc0628")
    for card in REMOVED_CARDS:
        assert card not in h
    assert "HISTORY" not in h
    assert h["OBJECT"] == "NGC0628"
    assert h["TELESCOP"] == "ALMA"
    assert h["BMIN"] == h["BMAJ"] and h["BPA"] == 0.0
    assert (h["DATAMIN"], h["DATAMAX"]) == (-2.0, 3.0)
    assert h["CUNIT3"] == "m/s" and h["CRVAL3"] == 300e3 and h["CDELT3"] == 2.5e3
    assert h["SPECSYS"] == "LSRK"
    assert any("HISTORY" in n for n in notes)


def test_clean_header_keeps_elliptical_beam():
    h = _raw_header()
    h["BMIN"] = 0.98e-3
    clean_header(h)
    assert h["BMIN"] == 0.98e-3 and h["BPA"] == 37.0


def test_coarse_beam_edge_channels():
    b = np.full(40, 3.0) + np.linspace(0, 0.01, 40)
    assert maths.coarse_beam_edge_channels(b) == (0, 39)
    b2 = b.copy()
    b2[0], b2[-1], b2[20] = 4.5, 4.4, 4.3  # the interior coarse plane stays inside the range
    assert maths.coarse_beam_edge_channels(b2) == (1, 38)
    assert maths.coarse_beam_edge_channels(np.full(5, 2.0)) == (0, 4)
    assert maths.coarse_beam_edge_channels([9.0] + [6.0] * 7) == (1, 7)  # constant clipped beams
