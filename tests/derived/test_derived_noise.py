"""Noise estimator and noise cubes against the PHANGS oracle values (reference 11.D)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.io import read_cube
from phangs_operators.routines.cubes.noise import (
    estimate_noise,
    mad_zero_centered,
    mad_zero_centered_rows,
    make_noise_cube,
    resolve_noise_params,
)
from phangs_operators.routines.cubes.synthetic import synthetic_cube, synthetic_header

from .conftest import write_cube


def test_default_parameters(ref_cube, oracle):
    cube = read_cube(ref_cube)
    assert cube.pixels_per_beam == pytest.approx(oracle["pixels_per_beam"], rel=1e-9)
    p = resolve_noise_params(cube.shape, cube.pixels_per_beam)
    assert (p.box, p.substride, p.bandpass_smooth_window) == (11.0, 1, 13)
    assert (p.spec_box, p.iterations) == (5, 4)  # recipe defaults; PHANGS key sets 3 iterations


def test_unknown_noise_keyword_is_an_error():
    with pytest.raises(CubeError, match="unknown keyword"):
        resolve_noise_params((10, 10, 10), 10.0, spec_bx=5)


def test_mad_values():
    noise = np.random.default_rng(42).normal(0, 0.1, (60, 64, 64)).astype(np.float32)
    assert mad_zero_centered(noise) == pytest.approx(0.099883, abs=5e-7)
    x = np.random.default_rng(1).normal(0, 1, 100000)
    assert mad_zero_centered(x) == pytest.approx(0.992784, abs=5e-7)
    y = x.copy()
    y[:2000] = 10.0  # 2 % strong positive outliers barely move the estimate
    assert mad_zero_centered(y) == pytest.approx(0.992321, abs=5e-7)
    assert np.std(y) > 1.5


def test_mad_empty_is_nan():
    assert np.isnan(mad_zero_centered(np.array([np.nan, np.nan])))
    assert np.isnan(mad_zero_centered(np.ones(5), np.zeros(5, bool)))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (7, 40), elements=st.floats(-5, 5, width=32)),
       arrays(np.bool_, (7, 40)), arrays(np.bool_, (7, 40)))
def test_vectorised_mad_equals_scalar(values, mask, nanify):
    values = values.copy()
    values[nanify & ~mask] = np.nan
    usable = mask & np.isfinite(values)
    rows = mad_zero_centered_rows(values, usable, mask.sum(axis=1))
    for i in range(values.shape[0]):
        ref = mad_zero_centered(values[i], mask[i])
        if np.isnan(ref):
            assert np.isnan(rows[i])
        else:
            assert rows[i] == ref


def test_noise_cube_matches_oracle(ref_stage, oracle):
    out, _ = ref_stage
    noise = fits.getdata(next(out.glob("*_co21_noise.fits")))
    assert noise.dtype.kind == "f" and noise.dtype.itemsize == 4
    assert np.isfinite(noise).all()
    assert np.mean(noise) == pytest.approx(oracle["noise"]["mean"], rel=1e-5)
    assert np.median(noise) == pytest.approx(oracle["noise"]["median"], rel=1e-5)


def test_noise_cube_at_4as_matches_oracle(ref_stage, oracle):
    out, _ = ref_stage
    noise = fits.getdata(next(out.glob("*_4as_noise.fits")))
    assert np.median(noise) == pytest.approx(oracle["noise_4as"]["median"], rel=1e-5)
    assert np.mean(noise) == pytest.approx(oracle["noise_4as"]["mean"], rel=1e-5)


def test_make_noise_cube_routine(ref_cube, tmp_path, oracle):
    res = make_noise_cube(ref_cube, tmp_path / "n.fits", spec_box=5, iterations=3)
    assert res.to_dict()["params"]["box"] == 11.0
    assert res.median_noise == pytest.approx(oracle["noise"]["median"], rel=1e-5)
    hdr = fits.getheader(tmp_path / "n.fits")
    assert hdr["BUNIT"] == "K" and hdr["DATAMIN"] > 0 and hdr["NAXIS3"] == 60
    assert [p.name for p in tmp_path.iterdir()] == ["n.fits"]


def test_noise_recovers_injected_spatial_and_spectral_pattern():
    shape = (40, 48, 48)
    rng = np.random.default_rng(3)
    true_map = np.where(np.arange(48)[None, :] < 24, 1.0, 2.0) * np.ones((48, 1))
    data = (rng.normal(size=shape) * true_map[None]).astype(np.float32)
    data[:, :, :3] = np.nan  # NaN edge: dilated and excluded, no crash
    p = resolve_noise_params(shape, 10.0, iterations=2, spec_box=5)
    noise = estimate_noise(data, p).full()
    assert np.isnan(noise[:, :, :3]).all()
    left = np.nanmedian(noise[:, 10:40, 6:18])
    right = np.nanmedian(noise[:, 10:40, 32:44])
    assert left == pytest.approx(1.0, rel=0.08)
    assert right == pytest.approx(2.0, rel=0.08)


def test_tiny_cube_does_not_crash(tmp_path):
    data, _ = synthetic_cube((8, 12, 12))
    path = write_cube(tmp_path / "tiny.fits", data, synthetic_header((8, 12, 12)))
    res = make_noise_cube(path, tmp_path / "tiny_noise.fits")
    assert np.isfinite(res.median_noise)


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.integers(1, 300), elements=st.floats(-4, 4)),
       st.integers(0, 40))
def test_single_row_mad_equals_scalar(values, n_nan):
    from phangs_operators.routines.cubes.noise import mad_zero_centered_sorted_1d

    vals = np.concatenate([values, np.full(n_nan, np.nan)])
    mask = np.isfinite(vals)
    ref = mad_zero_centered(vals, mask)
    got = mad_zero_centered_sorted_1d(np.sort(vals), int(mask.sum()))
    assert (np.isnan(ref) and np.isnan(got)) or got == ref
