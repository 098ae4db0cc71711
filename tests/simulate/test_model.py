"""The analytic sky model and the TP cube builder (pure numpy, no CASA)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phangs_operators.errors import SimulationError
from phangs_operators.routines import simulate as sim

TINY = sim._presets()["tiny"]
G1 = sim.GALAXIES["ngc9999"]


def _truncated_exponential_flux(galaxy: sim.Galaxy) -> float:
    """Flux of an exponential disk inside the deprojected radius r_max [Jy km/s]."""
    x = galaxy.r_max_arcsec / galaxy.scale_arcsec
    return galaxy.line_flux_jykms * (1.0 - (1.0 + x) * math.exp(-x))


@pytest.mark.parametrize("name", sorted(sim.GALAXIES))
def test_model_grid_holds_the_analytic_line_flux(name: str) -> None:
    galaxy = sim.GALAXIES[name]
    cube, freqs, line_flux, (cy, cx) = sim.model_sky(galaxy, TINY)
    assert cube.shape == (TINY.nchan + 2 * TINY.model_pad_chan, TINY.model_npix, TINY.model_npix)
    assert np.all(np.diff(freqs) > 0)
    assert line_flux == pytest.approx(_truncated_exponential_flux(galaxy), rel=5e-3)
    # continuum: the centre pixel of a line-free channel holds exactly the nucleus
    assert cube[0, cy, cx] == pytest.approx(galaxy.cont_flux_jy, rel=1e-5)
    assert cube[0].sum() == pytest.approx(galaxy.cont_flux_jy, rel=1e-4)


def test_model_velocity_field_rotates_and_is_centred_on_vsys() -> None:
    cube, freqs, _, _ = sim.model_sky(G1, TINY)
    v = sim._radio_velocity(freqs)
    line = cube.copy()
    c = TINY.model_npix // 2
    line[:, c, c] -= G1.cont_flux_jy
    spec = line.sum(axis=(1, 2), dtype=np.float64)
    assert (spec * v).sum() / spec.sum() == pytest.approx(G1.vsys_kms, abs=1.0)
    vmax_proj = G1.vmax_kms * math.sin(math.radians(G1.incl_deg))
    outside = np.abs(v - G1.vsys_kms) > vmax_proj + 5 * G1.sigma_kms
    assert spec[outside].max() < 1e-6 * spec.max()
    # receding major axis at PA 30 deg (east of north): positive offsets along it are redshifted
    pa = math.radians(G1.pa_deg)
    east, north = 10.0 * math.sin(pa), 10.0 * math.cos(pa)
    _, vlos = G1.surface_brightness(np.array([east, -east]), np.array([north, -north]))
    assert vlos[0] > G1.vsys_kms + 50 and vlos[1] < G1.vsys_kms - 50


def test_tp_cube_conserves_flux_without_noise() -> None:
    cube, vel, info = sim.tp_cube(G1, TINY, rng=None)
    assert cube.shape == (TINY.nchan, TINY.tp_npix, TINY.tp_npix)
    dv = info["channel_width_kms"]
    assert np.allclose(np.diff(vel), dv)
    flux = cube.sum(dtype=np.float64) * dv / info["beam_area_pix"]
    assert flux == pytest.approx(info["line_flux_jykms"], rel=5e-3)
    assert info["line_flux_jykms"] == pytest.approx(_truncated_exponential_flux(G1), rel=5e-3)
    # the emission peaks at the map centre pixel
    mom0 = cube.sum(axis=0)
    assert np.unravel_index(np.argmax(mom0), mom0.shape) == (TINY.tp_npix // 2, TINY.tp_npix // 2)


def test_tp_noise_is_seeded_and_flux_neutral() -> None:
    a, _, info = sim.tp_cube(G1, TINY, rng=np.random.default_rng(1))
    b, _, _ = sim.tp_cube(G1, TINY, rng=np.random.default_rng(1))
    c, _, _ = sim.tp_cube(G1, TINY, rng=np.random.default_rng(2))
    clean, _, _ = sim.tp_cube(G1, TINY, rng=None)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.std(a - clean) == pytest.approx(TINY.tp_noise_jy_beam, rel=0.05)
    assert a.sum(dtype=np.float64) == pytest.approx(clean.sum(dtype=np.float64), rel=1e-4)


@pytest.mark.parametrize("n", [3, 7, 19])
def test_mosaic_pointings_are_hexagonally_spaced(n: int) -> None:
    spacing = 11.0
    pts = np.array(sim.hexagonal_offsets(n, spacing))
    assert len(pts) == n
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    nearest = np.sort(d, axis=1)[:, 1]
    assert np.allclose(nearest, spacing, atol=1e-4)
    assert np.allclose(pts.mean(axis=0), 0.0, atol=1e-4)


def test_bad_pointing_count_is_an_error() -> None:
    with pytest.raises(SimulationError, match="unsupported number of mosaic pointings: 5"):
        sim.hexagonal_offsets(5, 10.0)


def test_spectral_window_is_wider_than_the_staging_window() -> None:
    """Line-free channels on both sides of vsys +- vwidth/2 (contsub) and statwt edges inside."""
    for preset in sim._presets().values():
        dv = sim.C_KMS * preset.chan_width_hz / sim.CO21_REST_HZ
        half_spw = preset.nchan // 2 * dv
        assert half_spw > sim.VWIDTH_KMS / 2 + 5 * dv, preset.name
        for g in sim.GALAXIES.values():
            line_half = g.vmax_kms * math.sin(math.radians(g.incl_deg)) + 3 * g.sigma_kms
            assert line_half < sim.VWIDTH_KMS / 2 - 50.0, (preset.name, g.name)
