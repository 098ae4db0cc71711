"""Pure helpers of routines.singledish (no CASA)."""

from __future__ import annotations

import numpy as np
import pytest

from phangs_operators.routines import vis
from phangs_operators.routines.simulate_tp import raster_offsets
from phangs_operators.routines.singledish import (
    SingleDishError,
    channel_ranges,
    jy_per_k,
    product_velocity_grid,
    read_jyperk_csv,
)


def test_jy_per_k_matches_casa_notes():
    # CASA_NOTES 11: 35.56 Jy/K for 28.6", 31.24 for 26.8" at 230.538 GHz
    assert jy_per_k(28.6, freq_hz=230.538e9) == pytest.approx(35.56, abs=0.02)
    assert jy_per_k(26.8, freq_hz=230.538e9) == pytest.approx(31.24, abs=0.02)
    assert jy_per_k(30.0, 20.0) == pytest.approx(np.sqrt(jy_per_k(30.0) * jy_per_k(20.0)) ** 1, rel=0.2)


def test_product_grid_is_the_staging_grid():
    native = vis.chan_width_kms(7.8125e6, 230.538)
    grid = product_velocity_grid(500.0, 360.0, 12.5, interf_native_kms=[native])
    scheme = vis.suggest_extraction_scheme([native], 12.5)[0]
    np.testing.assert_allclose(grid, np.sort(vis.velocity_grid(500.0, 360.0, scheme)))
    assert np.all(np.diff(grid) > 0)
    simple = product_velocity_grid(500.0, 360.0, 12.5)
    assert simple[0] == pytest.approx(320.0) and simple.size == 29
    with pytest.raises(SingleDishError):
        product_velocity_grid(500.0, 360.0, 0.0)


def test_channel_ranges():
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    assert channel_ranges(mask) == [(0, 1), (4, 4), (6, 8)]
    assert channel_ranges(np.zeros(4, bool)) == []


def test_read_jyperk_csv(tmp_path):
    good = tmp_path / "jyperk.csv"
    good.write_text("MS,Antenna,Spwid,Polarization,Factor\na.ms,PM01,17,I,43.5\n")
    assert read_jyperk_csv(good) == [{"ms": "a.ms", "antenna": "PM01", "spw": 17, "pol": "I", "factor": 43.5}]
    bad = tmp_path / "bad.csv"
    bad.write_text("MS,Antenna,Factor\na.ms,PM01,43.5\n")
    with pytest.raises(SingleDishError, match="bad.csv: header"):
        read_jyperk_csv(bad)
    worse = tmp_path / "worse.csv"
    worse.write_text("MS,Antenna,Spwid,Polarization,Factor\na.ms,PM01,x,I,43.5\n")
    with pytest.raises(SingleDishError, match="worse.csv line 2"):
        read_jyperk_csv(worse)
    with pytest.raises(SingleDishError, match="not found"):
        read_jyperk_csv(tmp_path / "missing.csv")


def test_raster_covers_the_map_at_the_step():
    r = raster_offsets(110.0, 7.46)
    assert r.shape == (15, 15, 2)
    assert np.ptp(r[..., 0]) == pytest.approx(14 * 7.46) and np.ptp(r[..., 1]) == pytest.approx(14 * 7.46)
    np.testing.assert_allclose(r[1, :, 0], r[0, ::-1, 0])  # boustrophedon
