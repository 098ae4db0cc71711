"""Reproducible synthetic spectral cubes (tests, benchmarks, reference section 11.D).

The reference cube is 60 x 64 x 64 (v, y, x), float32, Gaussian noise of 0.1 K from
``numpy.random.default_rng(42)`` plus a rotating Gaussian line, 0.5 arcsec pixels, a 2 arcsec
round beam and a radio-velocity axis in m/s starting at 925 km/s with 2.5 km/s channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["synthetic_cube", "synthetic_header", "write_synthetic_cube"]


def synthetic_header(
    shape: tuple[int, int, int],
    *,
    pixel_arcsec: float = 0.5,
    beam_arcsec: float = 2.0,
    v0_kms: float | None = None,
    dv_kms: float = 2.5,
    object_name: str = "synthetic",
) -> fits.Header:
    """FITS header of a synthetic cube of ``shape`` = (nchan, ny, nx).

    Parameters
    ----------
    shape : tuple of int
        (nchan, ny, nx).
    pixel_arcsec : float
        Pixel size [arcsec].
    beam_arcsec : float
        FWHM of the round beam [arcsec].
    v0_kms, dv_kms : float
        Velocity of the first channel (default: centred on 1000 km/s, i.e. 925 km/s for 60
        channels) and channel width [km/s].
    object_name : str
        OBJECT card.
    """
    nchan, ny, nx = shape
    if v0_kms is None:
        v0_kms = 1000.0 - dv_kms * (nchan // 2)
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -32
    hdr["NAXIS"] = 3
    hdr["NAXIS1"] = nx
    hdr["NAXIS2"] = ny
    hdr["NAXIS3"] = nchan
    hdr["BUNIT"] = "K"
    hdr["BMAJ"] = beam_arcsec / 3600.0
    hdr["BMIN"] = beam_arcsec / 3600.0
    hdr["BPA"] = 0.0
    hdr["CTYPE1"] = "RA---SIN"
    hdr["CRVAL1"] = 24.174
    hdr["CDELT1"] = -pixel_arcsec / 3600.0
    hdr["CRPIX1"] = nx // 2 + 1
    hdr["CUNIT1"] = "deg"
    hdr["CTYPE2"] = "DEC--SIN"
    hdr["CRVAL2"] = 15.783
    hdr["CDELT2"] = pixel_arcsec / 3600.0
    hdr["CRPIX2"] = ny // 2 + 1
    hdr["CUNIT2"] = "deg"
    hdr["CTYPE3"] = "VRAD"
    hdr["CRVAL3"] = v0_kms * 1e3
    hdr["CDELT3"] = dv_kms * 1e3
    hdr["CRPIX3"] = 1.0
    hdr["CUNIT3"] = "m/s"
    hdr["SPECSYS"] = "LSRK"
    hdr["RESTFRQ"] = 230.538e9
    hdr["RADESYS"] = "ICRS"
    hdr["EQUINOX"] = 2000.0
    hdr["TELESCOP"] = "ALMA"
    hdr["OBJECT"] = object_name
    return hdr


def synthetic_cube(
    shape: tuple[int, int, int] = (60, 64, 64),
    *,
    seed: int = 42,
    noise_k: float = 0.1,
    line_sigma_kms: float = 10.0,
    disk_sigma_pix: float | None = None,
    gradient_kms_per_pix: float = 3.0,
) -> tuple[np.ndarray, fits.Header]:
    """Data and header of the reference synthetic cube (section 11.D of the reference).

    Parameters
    ----------
    shape : tuple of int
        (nchan, ny, nx); the default is the reference cube.
    seed : int
        Seed of ``numpy.random.default_rng``.
    noise_k : float
        Standard deviation of the Gaussian noise [K].
    line_sigma_kms : float
        Gaussian line dispersion [km/s].
    disk_sigma_pix : float, optional
        Gaussian radius of the line amplitude [pixels]; 10 for the reference cube, scaled
        with the map size by default.
    gradient_kms_per_pix : float
        Velocity gradient along x [km/s per pixel] of a 64-pixel map (scaled by 64 / map size
        so that larger maps span the same velocities).

    Returns
    -------
    data : numpy.ndarray
        float32 cube in K.
    header : astropy.io.fits.Header
        Its header (m/s radio-velocity axis, 0.5" pixels, 2" beam).
    """
    nchan, ny, nx = shape
    if disk_sigma_pix is None:
        disk_sigma_pix = 10.0 * min(ny, nx) / 64.0
    rng = np.random.default_rng(seed)
    cy, cx = ny // 2, nx // 2
    yy, xx = np.mgrid[0:ny, 0:nx]
    amp = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * disk_sigma_pix**2))
    vc = 1000.0 + gradient_kms_per_pix * (xx - cx) * 64.0 / min(ny, nx)
    v0 = 1000.0 - 2.5 * (nchan // 2)  # 925 km/s for the 60-channel reference cube
    vel = v0 + 2.5 * np.arange(nchan)
    data = np.empty(shape, dtype=np.float32)
    # one plane at a time: the same random stream as a single call, float64 only per plane
    for k in range(nchan):
        plane = rng.normal(0.0, noise_k, (ny, nx))
        plane += amp * np.exp(-((vel[k] - vc) ** 2) / (2.0 * line_sigma_kms**2))
        data[k] = plane
    return data, synthetic_header(shape, v0_kms=v0)


def write_synthetic_cube(path: str | Path, **kwargs) -> Path:
    """Write :func:`synthetic_cube` to ``path`` (keyword arguments passed on)."""
    data, hdr = synthetic_cube(**kwargs)
    path = Path(path)
    fits.PrimaryHDU(data, hdr).writeto(path, overwrite=True)
    return path
