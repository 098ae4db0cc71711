"""Deterministic simulated ALMA test data (interferometer measurement sets + a TP cube).

The sky is an analytic rotating CO(2-1) disk (exponential surface brightness, arctan-like
rotation curve, Gaussian velocity dispersion) plus a flat-spectrum continuum point source
at the nucleus.  It is observed with the casatools simulator (``sm``) exactly as real ALMA
data come: TOPO spectral window, XX/YY correlations, antenna positions from the casadata
``alma/simmos`` configuration files, one FIELD row per mosaic pointing (all pointings share
the target's field name, as in ALMA mosaics), ``OBSERVE_TARGET#ON_SOURCE`` intents and
thermal noise.  The total-power cube is the model convolved with a 28.5" beam, in Jy/beam on
4" pixels, with beam-correlated noise, written as a 3-D FITS (RA, Dec, VRAD) like a TP
delivery.

Everything is deterministic for a given ``seed``: numpy uses ``default_rng((seed, k))`` and
the simulator ``sm.setseed``.  Outputs are built in a temporary directory
(``outdir/.simulate-*``) and moved into place at the end, with ``manifest.json`` (the ground
truth for tests) last.

Observations (see :func:`observations`): ``ngc9999`` 12m 19-pointing + 7m 7-pointing mosaics;
``ngc9997`` one 12m pointing on the same sky; ``ngc9998_1``/``ngc9998_2``, the two overlapping
parts of the linear mosaic ``ngc9998``, each a 12m 3-pointing mosaic + one 7m pointing.  Each
MS is observed on its own date, so the TOPO frequencies differ between MSes as in real data.

Layout under ``outdir``::

    ms/<project>/<target>_<array>_<kind>.ms     interferometer data (ms_root of the demo keys)
    singledish/<galaxy>_tp_co21.fits            TP cubes (singledish_root of the demo keys)
    model/<galaxy>_model.image                  the true sky (CASA image, Jy/pixel, LSRK)
    manifest.json                               files (relative paths), model and data facts

casatools is used only through :mod:`phangs_operators.casa`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.errors import SimulationError

log = logging.getLogger(__name__)

#: CO(2-1) rest frequency [Hz] (the PHANGS line list value, 230.538 GHz)
CO21_REST_HZ = 230.538e9
#: speed of light [km/s]
C_KMS = 299792.458
#: FWHM of the TP beam [arcsec] and TP pixel [arcsec] (PHANGS TP deliveries)
TP_BEAM_ARCSEC = 28.5
TP_PIXEL_ARCSEC = 4.0
#: Gaussian beam solid angle factor: Omega = GAUSS_AREA * bmaj * bmin
GAUSS_AREA = math.pi / (4.0 * math.log(2.0))
#: ALMA-like spectral window name (band 6, baseband 1, full resolution)
SPW_NAME = "ALMA_RB_06#BB_1#SW-01#FULL_RES"
#: radii [arcsec] of the circular apertures (around the galaxy centre) with model fluxes in the manifest
APERTURE_RADII_ARCSEC = (5.0, 10.0, 15.0, 20.0, 30.0)
#: manifest schema version
MANIFEST_VERSION = 1

PRESETS = ("tiny", "bench")


# ---------------------------------------------------------------------------------------------
# Model description
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Galaxy:
    """An analytic rotating gas disk with a continuum nucleus.

    Parameters
    ----------
    name : str
        Target name of the whole galaxy (lowercase, PHANGS style).
    ra_hms, dec_dms : str
        Centre (J2000), e.g. ``"12h00m00.0s"``, ``"-30d00m00.0s"``.
    vsys_kms : float
        Systemic velocity [km/s], LSRK, radio convention.
    incl_deg, pa_deg : float
        Inclination and position angle of the receding major axis (east of north) [deg].
    vmax_kms : float
        Flat rotation speed [km/s]; ``v(r) = vmax * (2/pi) * arctan(r / r_turn)``.
    r_turn_arcsec : float
        Turnover radius of the rotation curve [arcsec].
    scale_arcsec : float
        Exponential scale length of the (deprojected) surface brightness [arcsec].
    r_max_arcsec : float
        Outer truncation radius of the disk [arcsec] (deprojected).
    sigma_kms : float
        Gas velocity dispersion [km/s].
    line_flux_jykms : float
        Total CO(2-1) line flux of the untruncated disk [Jy km/s]; the truncated disk's exact
        flux is reported in the manifest.
    cont_flux_jy : float
        Flat-spectrum nuclear continuum flux density [Jy].
    """

    name: str
    ra_hms: str
    dec_dms: str
    vsys_kms: float
    incl_deg: float = 45.0
    pa_deg: float = 30.0
    vmax_kms: float = 120.0
    r_turn_arcsec: float = 3.0
    scale_arcsec: float = 6.0
    r_max_arcsec: float = 30.0
    sigma_kms: float = 8.0
    line_flux_jykms: float = 113.0
    cont_flux_jy: float = 0.020

    def surface_brightness(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Line-integrated surface brightness and line-of-sight velocity on sky offsets.

        Parameters
        ----------
        east, north : ndarray
            Sky offsets from the centre [arcsec] (east = increasing RA).

        Returns
        -------
        sigma : ndarray
            Line-integrated surface brightness [Jy km/s / arcsec^2].
        vlos : ndarray
            Line-of-sight velocity [km/s] (LSRK, radio).
        """
        pa = math.radians(self.pa_deg)
        inc = math.radians(self.incl_deg)
        x_maj = east * math.sin(pa) + north * math.cos(pa)
        y_min = (-east * math.cos(pa) + north * math.sin(pa)) / math.cos(inc)
        r = np.hypot(x_maj, y_min)
        # exponential disk: integral over the sky plane of exp(-r/h) is 2 pi h^2 cos(i)
        sigma0 = self.line_flux_jykms / (2.0 * math.pi * self.scale_arcsec**2 * math.cos(inc))
        sb = np.where(r <= self.r_max_arcsec, sigma0 * np.exp(-r / self.scale_arcsec), 0.0)
        vrot = self.vmax_kms * (2.0 / math.pi) * np.arctan(r / self.r_turn_arcsec)
        cos_theta = np.divide(x_maj, r, out=np.zeros_like(r), where=r > 0)
        vlos = self.vsys_kms + vrot * math.sin(inc) * cos_theta
        return sb, vlos

    def line_cube(
        self, east: np.ndarray, north: np.ndarray, vel_edges_kms: np.ndarray, pixel_area_arcsec2: float
    ) -> np.ndarray:
        """Line emission integrated over channels, in Jy per pixel.

        Each channel holds the exact fraction of every pixel's Gaussian profile that falls
        between its velocity edges, divided by the channel width, so that
        ``sum(cube) * |dv|`` equals the line flux on the grid [Jy km/s].

        Parameters
        ----------
        east, north : ndarray, shape (ny, nx)
            Pixel-centre offsets [arcsec].
        vel_edges_kms : ndarray, shape (nchan + 1,)
            Channel edges [km/s] (monotonic, either direction).
        pixel_area_arcsec2 : float
            Pixel solid angle [arcsec^2].

        Returns
        -------
        ndarray, shape (nchan, ny, nx), float32
            Flux density per pixel [Jy/pixel].
        """
        from scipy.special import ndtr  # noqa: PLC0415 - keep module import light

        sb, vlos = self.surface_brightness(east, north)
        flux = (sb * pixel_area_arcsec2).astype(np.float64)  # Jy km/s per pixel
        edges = np.asarray(vel_edges_kms, dtype=np.float64)
        widths = np.abs(np.diff(edges))
        cube = np.empty((edges.size - 1,) + east.shape, dtype=np.float32)
        cdf_prev = ndtr((edges[0] - vlos) / self.sigma_kms)
        for k in range(edges.size - 1):  # loop over channels, vectorised over pixels
            cdf_next = ndtr((edges[k + 1] - vlos) / self.sigma_kms)
            cube[k] = flux * np.abs(cdf_next - cdf_prev) / widths[k]
            cdf_prev = cdf_next
        return cube


@dataclass(frozen=True)
class Observation:
    """One simulated measurement set (one execution block).

    Offsets are pointing centres relative to ``pointing_center`` in arcsec (east, north).
    """

    ms_name: str
    target: str
    galaxy: str
    project: str
    array: str  # '12m' or '7m'
    kind: str  # 'single' or 'mosaic'
    field_name: str
    center_ra: str
    center_dec: str
    offsets_arcsec: tuple[tuple[float, float], ...]
    n_antennas: int
    n_integrations: int
    noise_jy: float
    date: str  # 'YYYY/MM/DD' (observed around transit)


@dataclass(frozen=True)
class Preset:
    """Size of a simulation (channels, model grid, antennas, integrations, noise)."""

    name: str
    nchan: int
    chan_width_hz: float
    model_cell_arcsec: float
    model_npix: int
    model_pad_chan: int
    n_ant_12m: int
    n_ant_7m: int
    n_int_single: int
    n_int_mosaic12: int
    n_int_mosaic7: int
    n_int_part12: int
    n_int_part7: int
    noise_12m_jy: float
    noise_7m_jy: float
    tp_npix: int
    tp_noise_jy_beam: float
    integration_s: float = 60.0


def _presets() -> dict[str, Preset]:
    return {
        # CI: a few seconds, a few MB.  56 x 7.8125 MHz = 570 km/s around vsys.
        "tiny": Preset(
            name="tiny",
            nchan=56,
            chan_width_hz=7.8125e6,
            model_cell_arcsec=0.5,
            model_npix=144,
            model_pad_chan=8,
            n_ant_12m=12,
            n_ant_7m=6,
            n_int_single=10,
            n_int_mosaic12=38,
            n_int_mosaic7=21,
            n_int_part12=6,
            n_int_part7=6,
            noise_12m_jy=0.10,
            noise_7m_jy=0.29,
            tp_npix=40,
            tp_noise_jy_beam=0.01,
        ),
        # benchmarks: full arrays, 2.54 km/s channels (224 x 1.953125 MHz = 570 km/s)
        "bench": Preset(
            name="bench",
            nchan=224,
            chan_width_hz=1.953125e6,
            model_cell_arcsec=0.25,
            model_npix=384,
            model_pad_chan=16,
            n_ant_12m=43,
            n_ant_7m=10,
            n_int_single=60,
            n_int_mosaic12=57,
            n_int_mosaic7=119,
            n_int_part12=12,
            n_int_part7=20,
            noise_12m_jy=1.0,
            noise_7m_jy=2.0,
            tp_npix=60,
            tp_noise_jy_beam=0.02,
        ),
    }


#: the demo galaxies (their names/positions/velocities are those of include/keys/)
GALAXIES: dict[str, Galaxy] = {
    # compact enough that the 12m+7m footprint (pb >= 0.5, ~30" radius) holds the disk with a
    # margin for the 29" TP beam, as a PHANGS mosaic covers its galaxy's CO disk
    "ngc9999": Galaxy(name="ngc9999", ra_hms="12h00m00.0s", dec_dms="-30d00m00.0s", vsys_kms=500.0,
                      scale_arcsec=3.0, r_max_arcsec=15.0),
    "ngc9998": Galaxy(
        name="ngc9998",
        ra_hms="12h10m00.0s",
        dec_dms="-30d00m00.0s",
        vsys_kms=650.0,
        pa_deg=90.0,
        scale_arcsec=8.0,
        r_max_arcsec=32.0,
        line_flux_jykms=150.0,
        cont_flux_jy=0.010,
    ),
}

#: full velocity width of the demo targets in target_definitions [km/s]
VWIDTH_KMS = 360.0
#: linear-mosaic parts of ngc9998 (RA offsets of +-1.0 s of time, i.e. +-12.99")
LINMOS_PARTS = {"ngc9998_1": ("12h09m59.0s", "-30d00m00.0s"), "ngc9998_2": ("12h10m01.0s", "-30d00m00.0s")}


def primary_beam_fwhm_arcsec(dish_m: float, freq_hz: float = CO21_REST_HZ) -> float:
    """ALMA primary-beam FWHM, 1.13 lambda / D [arcsec]."""
    return math.degrees(1.13 * (C_KMS * 1e3 / freq_hz) / dish_m) * 3600.0


def hexagonal_offsets(n: int, spacing_arcsec: float) -> tuple[tuple[float, float], ...]:
    """Mosaic pointing offsets (east, north) [arcsec].

    ``n`` = 1 (centre), 3 (equilateral triangle of side ``spacing`` around the centre), 7 or 19
    (the centre and the first one or two rings of a hexagonal lattice of pitch ``spacing``, as
    the ALMA OT lays out rectangular mosaics).
    """
    if n == 1:
        return ((0.0, 0.0),)
    if n == 3:
        radius = spacing_arcsec / math.sqrt(3.0)
        angles = np.radians([90.0, 210.0, 330.0])
        return tuple((round(float(radius * math.cos(a)), 6), round(float(radius * math.sin(a)), 6))
                     for a in angles)
    rings = {7: 1, 19: 2}.get(n)
    if rings is None:
        raise SimulationError(f"unsupported number of mosaic pointings: {n} (use 1, 3, 7 or 19)")
    # axial lattice coordinates (i, j) with hexagonal distance <= rings, sorted by ring then angle
    a1 = np.array([1.0, 0.0])
    a2 = np.array([0.5, math.sqrt(3.0) / 2.0])
    pts = []
    for i in range(-rings, rings + 1):
        for j in range(-rings, rings + 1):
            if max(abs(i), abs(j), abs(i + j)) <= rings:
                xy = spacing_arcsec * (i * a1 + j * a2)
                pts.append((max(abs(i), abs(j), abs(i + j)), round(math.atan2(xy[1], xy[0]) % (2 * math.pi), 9),
                            round(float(xy[0]), 6) + 0.0, round(float(xy[1]), 6) + 0.0))
    return tuple((e, nn) for _, _, e, nn in sorted(pts))


def observations(preset: Preset) -> list[Observation]:
    """The measurement sets a preset makes (fixed order: it sets the noise seeds)."""
    s12 = 0.511 * primary_beam_fwhm_arcsec(12.0)
    s7 = 0.511 * primary_beam_fwhm_arcsec(7.0)
    g1, g2 = GALAXIES["ngc9999"], GALAXIES["ngc9998"]
    p1, p2 = "2024.1.99999.S", "2024.1.99998.S"
    obs = [
        Observation(
            "ngc9997_12m_single.ms",
            "ngc9997",
            g1.name,
            p1,
            "12m",
            "single",
            "NGC9997",
            g1.ra_hms,
            g1.dec_dms,
            hexagonal_offsets(1, s12),
            preset.n_ant_12m,
            preset.n_int_single,
            preset.noise_12m_jy,
            "2024/03/20",
        ),
        Observation(
            "ngc9999_12m_mosaic.ms",
            "ngc9999",
            g1.name,
            p1,
            "12m",
            "mosaic",
            "NGC9999",
            g1.ra_hms,
            g1.dec_dms,
            hexagonal_offsets(19, s12),
            preset.n_ant_12m,
            preset.n_int_mosaic12,
            preset.noise_12m_jy,
            "2024/04/02",
        ),
        Observation(
            "ngc9999_7m_mosaic.ms",
            "ngc9999",
            g1.name,
            p1,
            "7m",
            "mosaic",
            "NGC9999",
            g1.ra_hms,
            g1.dec_dms,
            hexagonal_offsets(7, s7),
            preset.n_ant_7m,
            preset.n_int_mosaic7,
            preset.noise_7m_jy,
            "2024/05/15",
        ),
    ]
    for k, (part, (ra, dec)) in enumerate(LINMOS_PARTS.items()):
        obs.append(
            Observation(
                f"{part}_12m_mosaic.ms",
                part,
                g2.name,
                p2,
                "12m",
                "mosaic",
                part.upper(),
                ra,
                dec,
                hexagonal_offsets(3, s12),
                preset.n_ant_12m,
                preset.n_int_part12,
                preset.noise_12m_jy,
                f"2024/03/{22 + k}",
            )
        )
        obs.append(
            Observation(
                f"{part}_7m_single.ms",
                part,
                g2.name,
                p2,
                "7m",
                "single",
                part.upper(),
                ra,
                dec,
                hexagonal_offsets(1, s7),
                preset.n_ant_7m,
                preset.n_int_part7,
                preset.noise_7m_jy,
                f"2024/06/{10 + k}",
            )
        )
    return obs


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _lsrk_freq_of_velocity(v_kms: float | np.ndarray) -> float | np.ndarray:
    """LSRK frequency [Hz] of a radio velocity [km/s] of CO(2-1)."""
    return CO21_REST_HZ * (1.0 - np.asarray(v_kms) / C_KMS)


def _radio_velocity(freq_hz: float | np.ndarray) -> float | np.ndarray:
    """Radio velocity [km/s] of a frequency [Hz] for CO(2-1)."""
    return C_KMS * (1.0 - np.asarray(freq_hz) / CO21_REST_HZ)


def _sky_offsets(npix: int, cell_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) offsets [arcsec], shape (npix, npix) indexed [y, x], centre at npix//2.

    RA increases to lower x index (FITS/CASA convention cdelt1 < 0).
    """
    idx = (np.arange(npix) - npix // 2) * cell_arcsec
    east = -idx[np.newaxis, :] * np.ones((npix, 1))
    north = idx[:, np.newaxis] * np.ones((1, npix))
    return east, north


def _parse_direction(ra_hms: str, dec_dms: str) -> tuple[float, float]:
    """(RA, Dec) [deg] of sexagesimal strings."""
    from astropy.coordinates import Angle  # noqa: PLC0415

    return float(Angle(ra_hms).to_value("deg")), float(Angle(dec_dms).to_value("deg"))


def offset_direction(ra_deg: float, dec_deg: float, east: float, north: float) -> tuple[float, float]:
    """Exact spherical offset of a direction by (east, north) [arcsec] -> (RA, Dec) [deg]."""
    from astropy import units as u  # noqa: PLC0415
    from astropy.coordinates import SkyCoord  # noqa: PLC0415

    c = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="fk5").spherical_offsets_by(
        east * u.arcsec, north * u.arcsec
    )
    return float(c.ra.deg), float(c.dec.deg)


# ---------------------------------------------------------------------------------------------
# Model image (CASA) and TP cube (FITS)
# ---------------------------------------------------------------------------------------------


def _model_axes(galaxy: Galaxy, preset: Preset) -> tuple[np.ndarray, float]:
    """LSRK channel-centre frequencies [Hz] of the model (spw + padding) and their step."""
    n = preset.nchan + 2 * preset.model_pad_chan
    f0 = float(_lsrk_freq_of_velocity(galaxy.vsys_kms))
    # ascending frequency, vsys at the centre of channel n//2
    freqs = f0 + (np.arange(n) - n // 2) * preset.chan_width_hz
    return freqs, preset.chan_width_hz


def model_sky(galaxy: Galaxy, preset: Preset) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """The model cube in Jy/pixel on the preset's model grid.

    Returns
    -------
    cube : ndarray (nchan, ny, nx), float32
        Line + continuum [Jy/pixel].
    freqs : ndarray (nchan,)
        LSRK channel-centre frequencies [Hz], ascending.
    line_flux : float
        Line flux on the grid [Jy km/s] (what the truncated disk really holds).
    centre_pixel : (int, int)
        (y, x) pixel of the galaxy centre (holds the continuum source).
    """
    east, north = _sky_offsets(preset.model_npix, preset.model_cell_arcsec)
    freqs, df = _model_axes(galaxy, preset)
    f_edges = np.concatenate([freqs - df / 2.0, [freqs[-1] + df / 2.0]])
    v_edges = _radio_velocity(f_edges)
    cube = galaxy.line_cube(east, north, v_edges, preset.model_cell_arcsec**2)
    dv = np.abs(np.diff(v_edges))
    line_flux = float(np.sum(cube.sum(axis=(1, 2), dtype=np.float64) * dv))
    c = preset.model_npix // 2
    cube[:, c, c] += np.float32(galaxy.cont_flux_jy)
    return cube, freqs, line_flux, (c, c)


def tp_cube(
    galaxy: Galaxy, preset: Preset, rng: np.random.Generator | None, oversample: int = 4
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The total-power cube: model convolved to 28.5", in Jy/beam on 4" pixels.

    The model is evaluated on a grid ``oversample`` times finer than the TP pixels that
    covers the whole TP map, convolved with a normalised Gaussian of FWHM 28.5" (flux
    conserving), multiplied by the beam area in fine pixels (Jy/pixel -> Jy/beam) and
    block-averaged to 4" pixels.  Beam-correlated Gaussian noise of rms
    ``preset.tp_noise_jy_beam`` (zero mean along every spectrum) is added when ``rng`` is
    given.  Like delivered (baseline-subtracted) TP cubes it holds no continuum.

    Returns
    -------
    cube : ndarray (nchan, ny, nx), float32
        [Jy/beam]; channel k at ``velocities[k]``.
    velocities : ndarray (nchan,)
        LSRK radio velocities [km/s] of the channel centres (ascending).
    info : dict
        ``line_flux_jykms`` (on the TP grid, noise-free), ``beam_area_pix``.
    """
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415

    n_fine = preset.tp_npix * oversample
    cell_fine = TP_PIXEL_ARCSEC / oversample
    # fine-grid offsets so that block averaging puts TP pixel tp_npix//2 at the centre
    idx = (np.arange(n_fine) - (preset.tp_npix // 2) * oversample - (oversample - 1) / 2.0) * cell_fine
    east = -idx[np.newaxis, :] * np.ones((n_fine, 1))
    north = idx[:, np.newaxis] * np.ones((1, n_fine))
    # velocity axis: the spw's channel width in km/s, ascending velocity, vsys at nchan//2
    dv = C_KMS * preset.chan_width_hz / CO21_REST_HZ
    nchan = preset.nchan
    velocities = galaxy.vsys_kms + (np.arange(nchan) - nchan // 2) * dv
    v_edges = np.concatenate([velocities - dv / 2.0, [velocities[-1] + dv / 2.0]])
    fine = galaxy.line_cube(east, north, v_edges, cell_fine**2)  # Jy / fine pixel
    line_flux = float(fine.sum(dtype=np.float64) * dv)
    sigma_fine = TP_BEAM_ARCSEC / math.sqrt(8.0 * math.log(2.0)) / cell_fine
    smooth = gaussian_filter(fine, sigma=(0.0, sigma_fine, sigma_fine), mode="constant", truncate=5.0)
    beam_area_fine = GAUSS_AREA * (TP_BEAM_ARCSEC / cell_fine) ** 2
    smooth *= np.float32(beam_area_fine)  # Jy/beam
    cube = smooth.reshape(nchan, preset.tp_npix, oversample, preset.tp_npix, oversample).mean(axis=(2, 4))
    if rng is not None and preset.tp_noise_jy_beam > 0:
        sigma_tp = TP_BEAM_ARCSEC / math.sqrt(8.0 * math.log(2.0)) / TP_PIXEL_ARCSEC
        noise = rng.standard_normal(cube.shape)
        noise = gaussian_filter(noise, sigma=(0.0, sigma_tp, sigma_tp), mode="wrap")
        # TP spectra are baseline subtracted: every spectrum's noise has zero mean, so the
        # noise adds nothing to the cube's total flux
        noise -= noise.mean(axis=0, keepdims=True)
        noise *= preset.tp_noise_jy_beam / noise.std()
        cube = cube + noise
    info = {
        "line_flux_jykms": line_flux,
        "beam_area_pix": GAUSS_AREA * (TP_BEAM_ARCSEC / TP_PIXEL_ARCSEC) ** 2,
        "channel_width_kms": dv,
    }
    return cube.astype(np.float32), velocities, info


def _write_tp_fits(path: Path, galaxy: Galaxy, cube: np.ndarray, velocities: np.ndarray, npix: int) -> None:
    """Write a TP cube as a 3-D FITS (RA---SIN, DEC--SIN, VRAD) like a TP delivery."""
    from astropy.io import fits  # noqa: PLC0415

    ra, dec = _parse_direction(galaxy.ra_hms, galaxy.dec_dms)
    hdr = fits.Header()
    hdr["BUNIT"] = "Jy/beam"
    hdr["BMAJ"] = TP_BEAM_ARCSEC / 3600.0
    hdr["BMIN"] = TP_BEAM_ARCSEC / 3600.0
    hdr["BPA"] = 0.0
    hdr["BTYPE"] = "Intensity"
    hdr["OBJECT"] = galaxy.name.upper()
    hdr["TELESCOP"] = "ALMA"
    hdr["INSTRUME"] = "ALMA TP (simulated)"
    hdr["CTYPE1"] = "RA---SIN"
    hdr["CRVAL1"] = ra
    hdr["CDELT1"] = -TP_PIXEL_ARCSEC / 3600.0
    hdr["CRPIX1"] = npix // 2 + 1.0
    hdr["CUNIT1"] = "deg"
    hdr["CTYPE2"] = "DEC--SIN"
    hdr["CRVAL2"] = dec
    hdr["CDELT2"] = TP_PIXEL_ARCSEC / 3600.0
    hdr["CRPIX2"] = npix // 2 + 1.0
    hdr["CUNIT2"] = "deg"
    hdr["CTYPE3"] = "VRAD"
    hdr["CRVAL3"] = float(velocities[0]) * 1e3
    hdr["CDELT3"] = float(velocities[1] - velocities[0]) * 1e3
    hdr["CRPIX3"] = 1.0
    hdr["CUNIT3"] = "m/s"
    hdr["RESTFRQ"] = CO21_REST_HZ
    hdr["SPECSYS"] = "LSRK"
    hdr["VELREF"] = 257  # LSRK, radio (AIPS convention)
    hdr["RADESYS"] = "FK5"
    hdr["EQUINOX"] = 2000.0
    hdr["ORIGIN"] = "phangs-airflow simulate"
    fits.PrimaryHDU(data=cube.astype(np.float32), header=hdr).writeto(path, overwrite=True)


def write_lsrk_image(
    ct: Any, path: Path, pixels: np.ndarray, *, refpix_xy: tuple[float, float], ra_rad: float, dec_rad: float,
    freq0_hz: float, cell_rad: float, dnu_hz: float, restfreq_hz: float,
) -> None:
    """Write a 4-D CASA image (RA, Dec, Stokes I, Freq; Jy/pixel; J2000 and LSRK).

    Parameters
    ----------
    ct : module
        casatools (from :func:`phangs_operators.casa.casatools`).
    path : Path
        Output image (overwritten).
    pixels : numpy.ndarray
        Pixel values [Jy/pixel], shape (nx, ny, 1, nchan).
    refpix_xy : tuple of float
        Reference pixel (x, y) [pixels, 0-based] of the direction axes.
    ra_rad, dec_rad : float
        Direction of the reference pixel [rad].
    freq0_hz : float
        LSRK frequency of the first channel [Hz].
    cell_rad : float
        Pixel size [rad] (RA increases to the left).
    dnu_hz : float
        Channel increment [Hz].
    restfreq_hz : float
        Rest frequency [Hz].
    """
    cs = ct.coordsys()
    csys = cs.newcoordsys(direction=True, spectral=True, stokes=["I"])
    csys.setreferencecode("J2000", type="direction")
    csys.setreferencecode("LSRK", type="spectral")
    csys.setunits(["rad", "rad", "", "Hz"])
    csys.setreferencepixel([refpix_xy[0], refpix_xy[1], 0, 0])
    csys.setreferencevalue([ra_rad, dec_rad, 1.0, freq0_hz])
    csys.setincrement([-cell_rad, cell_rad, 1.0, dnu_hz])
    csys.setrestfrequency(restfreq_hz)
    ia = ct.image()
    try:
        ia.fromarray(outfile=str(path), pixels=np.ascontiguousarray(pixels), csys=csys.torecord(), overwrite=True)
        ia.setbrightnessunit("Jy/pixel")
    finally:
        ia.close()
        ia.done()
        csys.done()
        cs.done()


def _write_model_image(ct: Any, path: Path, galaxy: Galaxy, preset: Preset) -> dict[str, Any]:
    """Write the model as a 4-D CASA image (RA, Dec, Stokes, Freq; Jy/pixel; LSRK)."""
    cube, freqs, line_flux, (cy, cx) = model_sky(galaxy, preset)
    dv = C_KMS * preset.chan_width_hz / CO21_REST_HZ
    line_map = cube.sum(axis=0, dtype=np.float64) * dv
    line_map[cy, cx] -= galaxy.cont_flux_jy * cube.shape[0] * dv
    east, north = _sky_offsets(preset.model_npix, preset.model_cell_arcsec)
    radius = np.hypot(east, north)
    apertures = {f"{r:g}": float(line_map[radius <= r].sum()) for r in APERTURE_RADII_ARCSEC}
    ra, dec = _parse_direction(galaxy.ra_hms, galaxy.dec_dms)
    n = preset.model_npix
    rad = math.pi / 180.0
    # (nchan, ny, nx) -> (nx, ny, 1, nchan)
    pixels = np.ascontiguousarray(np.transpose(cube, (2, 1, 0))[:, :, np.newaxis, :], dtype=np.float64)
    write_lsrk_image(ct, path, pixels, refpix_xy=(n // 2, n // 2), ra_rad=ra * rad, dec_rad=dec * rad,
                     freq0_hz=float(freqs[0]), cell_rad=preset.model_cell_arcsec / 3600.0 * rad,
                     dnu_hz=float(freqs[1] - freqs[0]), restfreq_hz=CO21_REST_HZ)
    return {
        "line_flux_jykms": line_flux,
        "cont_flux_jy": galaxy.cont_flux_jy,
        "line_flux_within_radius_jykms": apertures,
        "shape": [n, n, 1, int(freqs.size)],
        "cell_arcsec": preset.model_cell_arcsec,
        "freq_range_lsrk_hz": [float(freqs[0]), float(freqs[-1])],
    }


# ---------------------------------------------------------------------------------------------
# Interferometer simulation
# ---------------------------------------------------------------------------------------------


def antennas_from_config(cfg_name: str, n_ant: int) -> dict[str, Any]:
    """Read a casadata alma/simmos configuration and keep its ``n_ant`` most central antennas."""
    from phangs_operators.casa import casatasks, casatools  # noqa: PLC0415

    ct = casatools()
    casatasks()  # simutil lives in casatasks
    from casatasks.private.simutil import simutil  # noqa: PLC0415

    cfg = ct.ctsys.resolve(f"alma/simmos/{cfg_name}")
    if not cfg or not os.path.exists(cfg):
        raise SimulationError(f"antenna configuration alma/simmos/{cfg_name} not found in casadata")
    x, y, z, d, pads, names, telescope, posobs = simutil().readantenna(cfg)
    total = len(x)
    if n_ant > total:
        raise SimulationError(f"{cfg_name} has {total} antennas, {n_ant} requested")
    # the n_ant pads closest to the array centre (a compact subset, like a real short EB)
    xyz = np.column_stack([x, y, z]).astype(np.float64)
    dist = np.linalg.norm(xyz - xyz.mean(axis=0), axis=1)
    keep = np.sort(np.argsort(dist, kind="stable")[:n_ant])
    return {
        "x": [float(x[i]) for i in keep],
        "y": [float(y[i]) for i in keep],
        "z": [float(z[i]) for i in keep],
        "diam": [float(d[i]) for i in keep],
        "pads": [str(pads[i]) for i in keep],
        "names": [str(names[i]) for i in keep],
        "telescope": str(telescope),
        "posobs": posobs,
        "cfg": cfg_name,
    }


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to this module's DEBUG log.

    The measures tool prints the (harmless) "Leap second table TAI_UTC seems out-of-date"
    SEVERE message of the first UTC conversion straight to stderr, whatever
    ``casalog.showconsole`` says; it is kept in the log instead of the user's terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace").strip()
            if text:
                log.debug("CASA stderr: %s", text)


def topo_frequency(ct: Any, lsrk_hz: float, ra_deg: float, dec_deg: float, date: str, posobs: Any) -> float:
    """TOPO frequency [Hz] seen at the observatory at transit on ``date`` of an LSRK frequency."""
    with _stderr_to_log():
        return _topo_frequency_measures(ct, lsrk_hz, ra_deg, dec_deg, date, posobs)


def _topo_frequency_measures(
    ct: Any, lsrk_hz: float, ra_deg: float, dec_deg: float, date: str, posobs: Any
) -> float:
    me = ct.measures()
    qa = ct.quanta()
    try:
        me.doframe(posobs)
        direction = me.direction("J2000", qa.quantity(ra_deg, "deg"), qa.quantity(dec_deg, "deg"))
        me.doframe(direction)
        # transit: hour angle 0 -> LAST = RA; approximate with the date at the RA's sidereal time
        epoch = me.epoch("UTC", date)
        # find the UTC of transit on that date by iterating LAST
        mjd = epoch["m0"]["value"]
        for _ in range(3):
            me.doframe(me.epoch("UTC", qa.quantity(mjd, "d")))
            last = me.measure(me.epoch("UTC", qa.quantity(mjd, "d")), "LAST")["m0"]["value"] % 1.0
            ha = (last * 360.0 - ra_deg) / 360.0  # in days of sidereal time
            ha = (ha + 0.5) % 1.0 - 0.5
            mjd -= ha / 1.00273790935
        me.doframe(me.epoch("UTC", qa.quantity(mjd, "d")))
        f = me.frequency("LSRK", qa.quantity(lsrk_hz, "Hz"))
        topo = me.measure(f, "TOPO")
        return float(topo["m0"]["value"])
    finally:
        me.done()
        qa.done()


def _simulate_ms(
    ct: Any, ms_path: Path, obs: Observation, model_image: Path, galaxy: Galaxy, preset: Preset, seed: int
) -> dict[str, Any]:
    """Simulate one measurement set; returns its manifest entry (without the path)."""
    cfg_name = "alma.cycle10.1.cfg" if obs.array == "12m" else "aca.cycle10.cfg"
    ants = antennas_from_config(cfg_name, obs.n_antennas)
    ra0, dec0 = _parse_direction(obs.center_ra, obs.center_dec)
    pointings = [offset_direction(ra0, dec0, e, n) for e, n in obs.offsets_arcsec]
    lsrk_centre = float(_lsrk_freq_of_velocity(galaxy.vsys_kms))
    topo_centre = topo_frequency(ct, lsrk_centre, ra0, dec0, obs.date, ants["posobs"])
    nchan, dnu = preset.nchan, preset.chan_width_hz
    # ALMA-like: ascending TOPO channels, vsys near the centre channel
    freq0 = topo_centre - (nchan // 2) * dnu

    sm = ct.simulator()
    me = ct.measures()
    qa = ct.quanta()
    try:
        sm.open(str(ms_path))
        sm.setconfig(
            telescopename=ants["telescope"],
            x=ants["x"],
            y=ants["y"],
            z=ants["z"],
            dishdiameter=ants["diam"],
            mount=["alt-az"],
            antname=ants["names"],
            padname=ants["pads"],
            coordsystem="global",
            referencelocation=ants["posobs"],
        )
        sm.setspwindow(
            spwname=SPW_NAME,
            freq=f"{freq0:.3f}Hz",
            deltafreq=f"{dnu:.3f}Hz",
            freqresolution=f"{dnu:.3f}Hz",
            nchannels=nchan,
            refcode="TOPO",
            stokes="XX YY",
        )
        sm.setfeed(mode="perfect X Y", pol=[""])
        sm.setlimits(shadowlimit=0.01, elevationlimit="10deg")
        sm.setauto(0.0)
        names = []
        for k, (ra, dec) in enumerate(pointings):
            name = f"{obs.field_name}_{k}"
            names.append(name)
            sm.setfield(
                sourcename=name,
                sourcedirection=me.direction("J2000", qa.quantity(ra, "deg"), qa.quantity(dec, "deg")),
                calcode="OBJ",
                distance="0m",
            )
        sm.settimes(
            integrationtime=f"{preset.integration_s}s",
            usehourangle=True,
            referencetime=me.epoch("UTC", obs.date),
        )
        n_int = obs.n_integrations
        t = preset.integration_s
        starts = [(k - n_int / 2.0) * t for k in range(n_int)]
        src = [names[k % len(names)] for k in range(n_int)]
        sm.observemany(
            sourcenames=src,
            spwname=SPW_NAME,
            starttimes=[f"{s}s" for s in starts],
            stoptimes=[f"{s + t}s" for s in starts],
            project=obs.project,
        )
        sm.setdata(fieldid=list(range(len(names))))
        sm.setvp(dovp=True, usedefaultvp=False)
        sm.predict(imagename=str(model_image))
        sm.setseed(int(seed))
        sm.setnoise(mode="simplenoise", simplenoise=f"{obs.noise_jy}Jy")
        sm.corrupt()
    finally:
        sm.close()
        sm.done()
        me.done()
        qa.done()
    _finalise_ms(ct, ms_path, obs)
    return {
        "target": obs.target,
        "galaxy": obs.galaxy,
        "project": obs.project,
        "array": obs.array,
        "kind": obs.kind,
        "telescope": ants["telescope"],
        "antenna_config": cfg_name,
        "n_antennas": len(ants["names"]),
        "dish_diameter_m": ants["diam"][0],
        "field_name": obs.field_name,
        "n_fields": len(pointings),
        "pointings_deg": [[ra, dec] for ra, dec in pointings],
        "pointing_offsets_arcsec": [list(o) for o in obs.offsets_arcsec],
        "spw_name": SPW_NAME,
        "spw_frame": "TOPO",
        "correlations": ["XX", "YY"],
        "n_channels": nchan,
        "channel_width_hz": dnu,
        "freq_range_topo_hz": [freq0, freq0 + (nchan - 1) * dnu],
        "vsys_topo_hz": topo_centre,
        "date": obs.date,
        "n_integrations": n_int,
        "integration_s": preset.integration_s,
        "noise_per_visibility_jy": obs.noise_jy,
    }


def _finalise_ms(ct: Any, ms_path: Path, obs: Observation) -> None:
    """Make the simulator's MS look like ALMA data: one field name, science intents."""
    tb = ct.table()
    try:
        tb.open(str(ms_path / "FIELD"), nomodify=False)
        nfield = tb.nrows()
        tb.putcol("NAME", np.array([obs.field_name] * nfield))
        tb.close()
        if os.path.isdir(ms_path / "SOURCE"):
            tb.open(str(ms_path / "SOURCE"), nomodify=False)
            if tb.nrows() > 0:
                tb.putcol("NAME", np.array([obs.field_name] * tb.nrows()))
            tb.close()
        tb.open(str(ms_path / "STATE"), nomodify=False)
        if tb.nrows() == 0:
            tb.addrows(1)
        tb.putcol("OBS_MODE", np.array(["OBSERVE_TARGET#ON_SOURCE"] * tb.nrows()))
        tb.putcol("SIG", np.ones(tb.nrows(), dtype=bool))
        tb.putcol("REF", np.zeros(tb.nrows(), dtype=bool))
        tb.close()
        tb.open(str(ms_path), nomodify=False)
        state = tb.getcol("STATE_ID")
        if np.any(state < 0):
            tb.putcol("STATE_ID", np.zeros_like(state))
        tb.close()
    finally:
        tb.close()
        tb.done()


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 3)


def _prepare_outdir(outdir: Path) -> None:
    """Create ``outdir``; refuse a non-empty directory that holds no previous simulation."""
    if outdir.exists():
        if not outdir.is_dir():
            raise SimulationError(f"output {outdir} exists and is not a directory")
        for stale in outdir.glob(".simulate-*"):  # build directory of an interrupted run
            shutil.rmtree(stale, ignore_errors=True)
        ours = {"ms", "singledish", "model", "manifest.json", "logs"}
        leftovers = sorted(p.name for p in outdir.iterdir() if p.name not in ours)
        if leftovers and not (outdir / "manifest.json").exists():
            raise SimulationError(
                f"output directory {outdir} is not empty and holds no simulation "
                f"(found {', '.join(leftovers[:5])}); choose an empty or new directory"
            )
    outdir.mkdir(parents=True, exist_ok=True)


#: galaxies that also get ALMA TP measurement sets (and their ALMA project code)
TP_MS_GALAXIES: tuple[str, ...] = ("ngc9999",)
TP_MS_PROJECTS: dict[str, str] = {"ngc9999": "2024.1.99999.S"}


def simulate(outdir: str | os.PathLike[str], preset: str = "tiny", seed: int = 42) -> dict[str, Any]:
    """Simulate the demo project's ALMA data (12m/7m measurement sets and TP cubes).

    Parameters
    ----------
    outdir : path
        Output directory (created; a previous simulation in it is replaced).
    preset : {'tiny', 'bench'}
        ``tiny``: CI-sized, a few seconds and a few MB; ``bench``: full arrays and 2.5 km/s
        channels for benchmarks (3-5 minutes on 2 cores, about 2.2 GB, 2 GB peak memory).
    seed : int
        Seed of all random numbers (thermal noise of every MS, TP noise).  Same seed, same
        output.

    Returns
    -------
    dict
        The manifest (also written to ``outdir/manifest.json``); paths are relative to
        ``outdir``.
    """
    presets = _presets()
    if preset not in presets:
        raise SimulationError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if int(seed) < 0:
        raise SimulationError(f"seed must be >= 0, got {seed}")
    p = presets[preset]
    out = Path(outdir).resolve()
    _prepare_outdir(out)
    build = Path(tempfile.mkdtemp(prefix=".simulate-", dir=out))
    timer = _Timer()
    t_all = time.perf_counter()
    try:
        manifest = _simulate_into(build, p, int(seed), timer)
        timer.add("total", t_all)
        manifest["timings_s"] = timer.timings
        (build / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        # publish: replace previous products, manifest last
        for name in ("ms", "singledish", "model", "logs"):
            target = out / name
            if target.exists():
                shutil.rmtree(target)
            if (build / name).exists():
                os.replace(build / name, target)
        os.replace(build / "manifest.json", out / "manifest.json")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("simulation %s (seed %d) written to %s in %.1f s", preset, seed, out, timer.timings["total"])
    return manifest


def _simulate_into(build: Path, p: Preset, seed: int, timer: _Timer) -> dict[str, Any]:
    from phangs_operators.casa import casa_session, casatools  # noqa: PLC0415

    ct = casatools()
    (build / "ms").mkdir()
    (build / "singledish").mkdir()
    (build / "model").mkdir()
    (build / "logs").mkdir()
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "phangs_operators.routines.simulate",
        "preset": p.name,
        "seed": seed,
        "rest_frequency_hz": CO21_REST_HZ,
        "line": "co21",
        "velocity_convention": "radio",
        "velocity_frame": "LSRK",
        "preset_parameters": asdict(p),
        "galaxies": {},
        "targets": {},
        "measurement_sets": {},
        "singledish": {},
    }
    with casa_session(build / "scratch", build / "logs" / "casa_simulate.log"):
        for gname, galaxy in GALAXIES.items():
            t0 = time.perf_counter()
            model_path = build / "model" / f"{gname}_model.image"
            model_info = _write_model_image(ct, model_path, galaxy, p)
            timer.add(f"model {gname}", t0)
            log.info(
                "model %s: line flux %.2f Jy km/s (%.1f s)",
                gname,
                model_info["line_flux_jykms"],
                timer.timings[f"model {gname}"],
            )
            g = asdict(galaxy)
            vproj = galaxy.vmax_kms * math.sin(math.radians(galaxy.incl_deg))
            g.update(
                {
                    "model_image": f"model/{gname}_model.image",
                    "model": model_info,
                    "line_flux_jykms": model_info["line_flux_jykms"],
                    "projected_rotation_range_kms": [galaxy.vsys_kms - vproj, galaxy.vsys_kms + vproj],
                    "line_extent_kms": [
                        galaxy.vsys_kms - vproj - 3 * galaxy.sigma_kms,
                        galaxy.vsys_kms + vproj + 3 * galaxy.sigma_kms,
                    ],
                    "line_flux_within_radius_jykms": model_info["line_flux_within_radius_jykms"],
                    "vwidth_kms": VWIDTH_KMS,
                }
            )
            manifest["galaxies"][gname] = g
        obs_list = observations(p)
        for k, obs in enumerate(obs_list):
            t0 = time.perf_counter()
            galaxy = GALAXIES[obs.galaxy]
            rel = Path("ms") / obs.project / obs.ms_name
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            entry = _simulate_ms(
                ct,
                build / rel,
                obs,
                build / "model" / f"{obs.galaxy}_model.image",
                galaxy,
                p,
                seed * 1000 + k + 1,
            )
            entry["path"] = rel.as_posix()
            entry["ms_file_key_path"] = (Path(obs.project) / obs.ms_name).as_posix()
            entry["size_bytes"] = sum(f.stat().st_size for f in (build / rel).rglob("*") if f.is_file())
            manifest["measurement_sets"][obs.ms_name] = entry
            timer.add(f"ms {obs.ms_name}", t0)
            log.info(
                "[%d/%d] %s: %d antennas, %d fields, %d channels (%.1f s)",
                k + 1,
                len(obs_list),
                rel,
                entry["n_antennas"],
                entry["n_fields"],
                entry["n_channels"],
                timer.timings[f"ms {obs.ms_name}"],
            )
            t = manifest["targets"].setdefault(
                obs.target,
                {
                    "galaxy": obs.galaxy,
                    "ra": obs.center_ra,
                    "dec": obs.center_dec,
                    "vsys_kms": galaxy.vsys_kms,
                    "vwidth_kms": VWIDTH_KMS,
                    "measurement_sets": [],
                },
            )
            t["measurement_sets"].append(obs.ms_name)
    for gi, (gname, galaxy) in enumerate(GALAXIES.items()):
        t0 = time.perf_counter()
        rng = np.random.default_rng((seed, 1000 + gi))
        cube, velocities, info = tp_cube(galaxy, p, rng)
        rel = Path("singledish") / f"{gname}_tp_co21.fits"
        _write_tp_fits(build / rel, galaxy, cube, velocities, p.tp_npix)
        timer.add(f"tp {gname}", t0)
        manifest["singledish"][gname] = {
            "path": rel.as_posix(),
            "galaxy": gname,
            "product": "co21",
            "shape": list(cube.shape),  # (nchan, ny, nx) as numpy reads the FITS
            "beam_fwhm_arcsec": TP_BEAM_ARCSEC,
            "pixel_arcsec": TP_PIXEL_ARCSEC,
            "beam_area_pix": info["beam_area_pix"],
            "bunit": "Jy/beam",
            "specsys": "LSRK",
            "ctype3": "VRAD",
            "channel_width_kms": info["channel_width_kms"],
            "velocity_range_kms": [float(velocities[0]), float(velocities[-1])],
            "noise_rms_jy_beam": p.tp_noise_jy_beam,
            "line_flux_jykms": info["line_flux_jykms"],
            "continuum_subtracted": True,
        }
        log.info(
            "TP cube %s: %s, line flux %.2f Jy km/s (%.1f s)",
            rel,
            cube.shape,
            info["line_flux_jykms"],
            timer.timings[f"tp {gname}"],
        )
    # ALMA total-power measurement sets of ngc9999 (the TP stage turns them into its cube;
    # ngc9998 keeps a delivered cube, as in PHANGS-ALMA)
    from phangs_operators.routines.simulate_tp import simulate_tp_ms  # noqa: PLC0415

    for gi, gname in enumerate(TP_MS_GALAXIES):
        t0 = time.perf_counter()
        galaxy = GALAXIES[gname]
        project = TP_MS_PROJECTS[gname]
        tp = simulate_tp_ms(build / "ms" / project, model_image=build / "model" / f"{gname}_model.image",
                            vsys_kms=galaxy.vsys_kms, ms_name=f"{gname}_tp.ms", preset=p.name, project=project,
                            field_name=gname.upper(), date="2024/04/20", seed=seed * 1000 + 500 + gi)
        tp.pop("ms", None)
        tp["path"] = f"ms/{project}/{gname}_tp.ms"
        tp["jyperk_csv"] = f"ms/{project}/jyperk.csv"
        tp["galaxy"] = gname
        manifest.setdefault("tp_measurement_sets", {})[f"{gname}_tp.ms"] = tp
        timer.add(f"tp ms {gname}", t0)
        log.info("TP measurement set %s (%.1f s)", tp["path"], timer.timings[f"tp ms {gname}"])
    for part in LINMOS_PARTS:
        manifest["targets"][part]["linmos_parent"] = "ngc9998"
    g2 = GALAXIES["ngc9998"]
    manifest["targets"]["ngc9998"] = {
        "galaxy": g2.name,
        "ra": g2.ra_hms,
        "dec": g2.dec_dms,
        "vsys_kms": g2.vsys_kms,
        "vwidth_kms": VWIDTH_KMS,
        "measurement_sets": [],
        "linmos_parts": sorted(LINMOS_PARTS),
    }
    manifest["linear_mosaics"] = {"ngc9998": sorted(LINMOS_PARTS)}
    shutil.rmtree(build / "scratch", ignore_errors=True)
    return manifest
