"""Strict, broad and flat masks: hand-made exact cases and the PHANGS oracle masks."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.masks import (
    cprops_mask,
    grow_mask,
    join_masks_nearest,
    make_broad_mask,
    make_flat_mask,
    make_strict_mask,
    nchan_thresh_mask,
    reject_small_regions,
)
from phangs_operators.routines.cubes.synthetic import synthetic_header

from .conftest import write_cube


def _hand_cube() -> np.ndarray:
    snr = np.zeros((6, 5, 5), dtype=np.float32)
    snr[:, 1, 1] = [2.5, 5, 5, 2.5, 0, 0]  # core 2 channels + 2 wing channels
    snr[:, 1, 2] = [0, 2.5, 2.5, 0, 0, 0]  # wing touching the core spectrum
    snr[:, 3, 3] = [0, 0, 3, 3, 0, 0]  # wing-only region: not connected to a core
    snr[:, 4, 0] = [0, 0, 5, 0, 0, 0]  # single-channel spike
    snr[:, 0, 4] = [np.nan, 5, np.nan, 5, 5, 5]  # NaN never passes
    return snr


def test_nchan_thresh_mask_hand_made():
    m = nchan_thresh_mask(_hand_cube(), thresh=4.0, nchan=2)
    assert m.sum() == 5
    assert m[:, 1, 1].tolist() == [False, True, True, False, False, False]
    assert m[:, 0, 4].tolist() == [False, False, False, True, True, True]
    assert not m[:, 4, 0].any()
    assert nchan_thresh_mask(_hand_cube(), thresh=4.0, nchan=3).sum() == 3


def test_cprops_mask_hand_made():
    snr = _hand_cube()
    snr[:, 0, 4] = 0
    m = cprops_mask(snr, 1.0, hi_thresh=4.0, hi_nchan=2, lo_thresh=2.0, lo_nchan=2)
    assert m.sum() == 6
    assert m[:, 1, 1].sum() == 4 and m[:, 1, 2].sum() == 2 and not m[:, 3, 3].any()
    # noise scales the S/N: doubling the noise kills the core and everything with it
    assert cprops_mask(snr, 2.0, hi_thresh=4.0, lo_thresh=2.0, lo_nchan=2).sum() == 0


@pytest.mark.parametrize("xy,v,expected", [(1, 0, 5), (0, 1, 1), (0, 2, 2), (0, 3, 3),
                                           (1, 2, 6), (2, 0, 13)])
def test_grow_mask_single_voxel(xy, v, expected):
    m = np.zeros((7, 5, 5), dtype=bool)
    m[3, 2, 2] = True
    assert grow_mask(m, iters_xy=xy, iters_v=v).sum() == expected


def test_grow_mask_v2_is_one_sided():
    m = np.zeros((7, 1, 1), dtype=bool)
    m[3] = True
    g = grow_mask(m, iters_v=2)[:, 0, 0]
    assert g.sum() == 2 and g[3] and (g[2] != g[4])


def test_reject_small_regions_volume_and_area():
    m = np.zeros((6, 6, 6), dtype=bool)
    m[0:3, 0, 0] = True  # volume 3, area 1
    m[0:2, 3:5, 3:5] = True  # volume 8, area 4
    assert reject_small_regions(m, min_volume=4).sum() == 8
    assert reject_small_regions(m, min_area=2).sum() == 8
    assert reject_small_regions(m, min_area=5).sum() == 0
    assert reject_small_regions(m, min_volume=3).sum() == 11
    assert m.sum() == 11  # input untouched


def test_strict_mask_equals_oracle(ref_stage, oracle_masks, oracle):
    out, res = ref_stage
    mask = fits.getdata(next(out.glob("*_co21_strictmask.fits")))
    assert mask.dtype == np.uint8
    assert int(mask.sum()) == oracle["strict_voxels"] == 7522
    np.testing.assert_array_equal(mask.astype(bool), oracle_masks["strict"])
    assert res.resolutions["native"]["strict_voxels"] == 7522


def test_strict_mask_4as_with_coverage_prior_equals_oracle(ref_stage, oracle_masks):
    out, _ = ref_stage
    mask = fits.getdata(next(out.glob("*_4as_strictmask.fits"))).astype(bool)
    assert mask.sum() == 41984
    np.testing.assert_array_equal(mask, oracle_masks["strict_4as"])


def test_broad_mask_equals_oracle(ref_stage, oracle_masks):
    out, res = ref_stage
    mask = fits.getdata(next(out.glob("*_broadmask.fits"))).astype(bool)
    assert mask.sum() == 41984 == res.broad_mask["n_voxels"]
    np.testing.assert_array_equal(mask, oracle_masks["strict"] | oracle_masks["strict_4as"])
    hdr = fits.getheader(next(out.glob("*_broadmask.fits")))
    assert hdr["DATAMAX"] == 1 and hdr["DATAMIN"] == 0 and hdr["BTYPE"] == "Mask"


def test_broad_mask_honours_grow_kw(ref_stage, tmp_path):
    out, _ = ref_stage
    native = next(out.glob("*_co21_strictmask.fits"))
    plain = make_broad_mask(native, [native], tmp_path / "b0.fits")
    grown = make_broad_mask(native, [native], tmp_path / "b1.fits", grow_xy=1)
    expect = grow_mask(fits.getdata(native).astype(bool), iters_xy=1).sum()
    assert plain.n_voxels == 7522
    assert grown.n_voxels == expect > plain.n_voxels
    missing = make_broad_mask(native, [tmp_path / "nope.fits"], tmp_path / "b2.fits")
    assert missing.n_voxels == 7522 and "missing" in missing.warnings[0]


def test_broad_mask_unknown_kw(ref_stage, tmp_path):
    out, _ = ref_stage
    native = next(out.glob("*_co21_strictmask.fits"))
    with pytest.raises(CubeError, match="broadmask_kw"):
        make_broad_mask(native, [], tmp_path / "b.fits", grow=1)
    assert not (tmp_path / "b.fits").exists()


def test_join_masks_nearest_pixel_on_shifted_grid():
    shape = (6, 10, 12)
    h1 = synthetic_header(shape)
    h2 = synthetic_header(shape)
    h2["CRPIX1"] = h1["CRPIX1"] + 2  # other grid shifted by two pixels in x
    h2["CRPIX3"] = h1["CRPIX3"] + 1  # and by one channel
    other = np.zeros(shape, dtype=bool)
    other[2, 5, 6] = True
    out = join_masks_nearest(h1, shape, other, h2)
    assert out.sum() == 1
    assert out[1, 5, 4]


def test_strict_mask_rejects_mismatched_noise_grid(ref_cube, tmp_path):
    data = np.ones((60, 32, 32), dtype=np.float32)
    noise = write_cube(tmp_path / "noise_small.fits", data, synthetic_header((60, 32, 32)))
    with pytest.raises(CubeError, match="noise_small.fits.*does not match"):
        make_strict_mask(ref_cube, noise, tmp_path / "m.fits")
    assert not (tmp_path / "m.fits").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise_small.fits"]


def test_flat_mask_window_and_signal(ref_cube, ref_stage, tmp_path):
    out, _ = ref_stage
    vf = tmp_path / "vfield.fits"
    hdr = fits.Header()
    hdr.update(synthetic_header((60, 64, 64)))
    for k in ("CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3", "NAXIS3", "SPECSYS"):
        hdr.remove(k, ignore_missing=True)
    hdr["NAXIS"] = 2
    hdr["BUNIT"] = "km/s"
    fits.PrimaryHDU(np.full((64, 64), 1000.0, dtype=np.float32), hdr).writeto(vf)
    r = make_flat_mask(ref_cube, vf, tmp_path / "flat.fits", window="10km/s")
    assert r.n_voxels == 5 * 64 * 64  # 995, 997.5, 1000, 1002.5, 1005 km/s
    r2 = make_flat_mask(ref_cube, vf, tmp_path / "flat2.fits", v_window="10km/s")
    assert r2.n_voxels == r.n_voxels  # the v_window name is honoured (PHANGS ignores it)
    strict = next(out.glob("*_co21_strictmask.fits"))
    r3 = make_flat_mask(ref_cube, vf, tmp_path / "flat3.fits", mask_fits=strict,
                        window="10km/s")
    window = fits.getdata(tmp_path / "flat.fits").astype(bool)
    s = fits.getdata(strict).astype(bool)
    assert r3.n_voxels == int((window | s).sum()) > r.n_voxels
    r4 = make_flat_mask(ref_cube, vf, tmp_path / "flat4.fits")
    assert r4.n_voxels == 21 * 64 * 64  # default 50 km/s: |v - 1000| <= 25


def _grow_by_labels(mask, constraint):
    import scipy.ndimage as ndi

    regions, n = ndi.label(constraint)
    keep = np.zeros(n + 1, dtype=bool)
    keep[regions[mask]] = True
    keep[0] = False
    return keep[regions]


def test_grow_into_constraint_equals_region_labelling():
    """The reconstruction used for the lo-mask expansion equals PHANGS' labelling definition."""
    rng = np.random.default_rng(5)
    for density in (0.2, 0.35, 0.5, 0.65):
        constraint = rng.random((12, 20, 20)) < density
        seeds = rng.random(constraint.shape) < 0.02  # some seeds fall outside the constraint
        got = grow_mask(seeds, constraint=constraint)
        np.testing.assert_array_equal(got, _grow_by_labels(seeds, constraint))
