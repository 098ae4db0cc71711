"""Post-processing maths in numpy (reference section 11.F), without CASA.

Each function is the array form of one PHANGS post-processing rule. The CASA routines of
:mod:`phangs_operators.routines.postprocess` either call these directly (mosaic combination,
trimming box, rebinning factor, Kelvin factor, round-beam target, noise) or are tested
against them (primary-beam division, feathering).

Conventions: arrays of cubes are indexed like CASA ``getchunk`` output, ``[x, y, ...]``,
unless a docstring says otherwise; angles in arcsec unless the name says ``_rad``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from phangs_operators.errors import CubeError

__all__ = [
    "C_CGS",
    "KB_CGS",
    "beam_area_pixels",
    "beam_is_round",
    "box_from_projections",
    "coarse_beam_edge_channels",
    "feather_plane",
    "gaussian_beam_image",
    "jytok_factor",
    "mean_frequency",
    "mosaic_combine",
    "mosaic_grid",
    "pb_correct",
    "rebin_factor",
    "robust_noise",
    "round_beam_target",
    "trim_rind",
    "valid_bounding_box",
]

#: speed of light [cm/s] and Boltzmann constant [erg/K] exactly as PHANGS ``calc_jytok``
#: uses them (k_B from CODATA 1986): they reproduce the reference values 22.9946 and
#: 5.74865 K/(Jy/beam); astropy's CODATA 2018 k_B differs by 6.5e-6 relative.
C_CGS = 2.99792458e10
KB_CGS = 1.380658e-16

_FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))


def pb_correct(data: np.ndarray, pb: np.ndarray, cutoff: float) -> np.ndarray:
    """Primary-beam correction: ``data / pb`` where ``pb >= cutoff``, NaN elsewhere.

    Parameters
    ----------
    data : numpy.ndarray
        Flat-noise image [Jy/beam].
    pb : numpy.ndarray
        Primary-beam response (0..1), broadcastable to ``data``.
    cutoff : float
        Lowest primary-beam response kept (PHANGS: the imaging ``pblimit``; impbcor
        masks pixels with ``pb < cutoff``).
    """
    if not 0.0 < cutoff <= 1.0:
        raise CubeError(f"primary-beam cutoff must be in (0, 1], got {cutoff}")
    pb = np.asarray(pb, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(data, dtype=float) / pb
    return np.where(pb >= cutoff, out, np.nan)


def round_beam_target(
    bmaj_arcsec: float | Sequence[float] | np.ndarray, pixel_arcsec: float, padding_pixels: float = 2.0
) -> float:
    """FWHM of the round beam every plane is convolved to [arcsec].

    ``sqrt(bmaj_max**2 + (padding_pixels * pixel)**2)``: the largest major axis over all
    planes (per-plane beams after gathering chunks), padded in quadrature so that a
    convolution kernel of at least ``padding_pixels`` pixels exists for every plane (PHANGS
    ``convolve_to_round_beam``; ``common_res_for_mosaic`` uses the largest pixel of the parts).
    """
    bmaj = np.atleast_1d(np.asarray(bmaj_arcsec, dtype=float))
    if bmaj.size == 0 or not np.all(np.isfinite(bmaj)) or np.any(bmaj <= 0):
        raise CubeError(f"beam major axes must be positive and finite, got {bmaj_arcsec!r}")
    if pixel_arcsec <= 0:
        raise CubeError(f"pixel size must be positive, got {pixel_arcsec}")
    return float(math.hypot(float(bmaj.max()), padding_pixels * pixel_arcsec))


def beam_is_round(bmaj: float, bmin: float, tol: float = 0.01) -> bool:
    """True when ``|bmaj - bmin| / bmaj <= tol`` (PHANGS export rounds such beams)."""
    if bmaj <= 0:
        raise CubeError(f"beam major axis must be positive, got {bmaj}")
    return abs(bmaj - bmin) / bmaj <= tol


def beam_area_pixels(bmaj_arcsec: float, bmin_arcsec: float, pixel_arcsec: float) -> float:
    """Area of an elliptical Gaussian beam in pixels: ``pi bmaj bmin / (4 ln 2) / pixel**2``."""
    return math.pi * bmaj_arcsec * bmin_arcsec / (4.0 * math.log(2.0)) / pixel_arcsec**2


def mean_frequency(crval: float, cdelt: float, crpix0: float, nchan: int) -> float:
    """Mean frequency [Hz] of a linear spectral axis (0-based reference pixel ``crpix0``)."""
    return float(np.mean(crval + (np.arange(nchan) - crpix0) * cdelt))


def jytok_factor(bmaj_arcsec: float, bmin_arcsec: float, freq_hz: float) -> float:
    """Rayleigh-Jeans factor from Jy/beam to K [K per Jy/beam].

    ``c**2 / (Omega_beam * 1e23 * 2 k_B nu**2)`` with ``Omega_beam = pi bmaj bmin /
    (4 ln 2)`` in steradians (PHANGS ``calc_jytok``, constants :data:`C_CGS`,
    :data:`KB_CGS`). A 1 arcsec round beam at 230.538 GHz gives 22.9946.
    """
    if bmaj_arcsec <= 0 or bmin_arcsec <= 0 or freq_hz <= 0:
        raise CubeError(f"Kelvin factor needs positive beam and frequency, got {bmaj_arcsec}, {bmin_arcsec}, {freq_hz}")
    as2rad = math.pi / 180.0 / 3600.0
    omega = math.pi * (bmaj_arcsec * as2rad) * (bmin_arcsec * as2rad) / (4.0 * math.log(2.0))
    return C_CGS**2 / omega / 1e23 / (2.0 * KB_CGS * freq_hz**2)


def robust_noise(values: np.ndarray, niter: int = 5, nsigma: float | None = None) -> float:
    """Noise of mostly signal-free data: iterative MAD with Chauvenet-style clipping.

    The first estimate is ``1.4826 * median(|x - median(x)|)`` over all finite values; at each
    iteration values further than ``nsigma`` estimates from zero are rejected and the MAD is
    recomputed about zero (the PHANGS ``chauvmad`` idea). ``nsigma`` defaults to the Chauvenet
    criterion for the number of samples.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 3:
        raise CubeError(f"noise estimate needs at least 3 finite values, got {x.size}")
    if nsigma is None:
        from scipy.special import erfcinv  # noqa: PLC0415

        nsigma = float(math.sqrt(2.0) * erfcinv(0.5 / x.size))
    sigma = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    for _ in range(niter):
        if sigma <= 0:
            break
        kept = x[np.abs(x) < nsigma * sigma]
        if kept.size < 3:
            break
        new = 1.4826 * float(np.median(np.abs(kept)))
        if new == sigma:
            break
        sigma = new
    if not sigma > 0:
        raise CubeError("noise estimate is zero (constant data)")
    return sigma


def mosaic_combine(
    images: Sequence[np.ndarray], pbs: Sequence[np.ndarray], sigmas: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-weighted linear mosaic of aligned, primary-beam corrected images.

    ``M = sum_i I_i w_i / sum_i w_i`` with ``w_i = pb_i**2 / sigma_i**2`` (the optimal weight of
    a pb-corrected image whose flat noise is ``sigma_i``; PHANGS weight files ``pb^2/noise^2``).
    Pixels that are NaN in ``I_i`` or ``pb_i`` get ``w_i = 0``; where the total weight is 0 the
    mosaic is NaN.

    Returns
    -------
    mosaic, weight : numpy.ndarray
        The mosaic and the summed weight ``sum_i w_i`` [1/(Jy/beam)**2].
    """
    if not (len(images) == len(pbs) == len(sigmas)) or len(images) == 0:
        raise CubeError(f"mosaic needs matching non-empty lists, got {len(images)}, {len(pbs)}, {len(sigmas)}")
    num = np.zeros(np.shape(images[0]), dtype=float)
    den = np.zeros_like(num)
    for img, pb, sigma in zip(images, pbs, sigmas, strict=True):
        if not sigma > 0:
            raise CubeError(f"mosaic noise must be positive, got {sigma}")
        img = np.asarray(img, dtype=float)
        pb = np.broadcast_to(np.asarray(pb, dtype=float), img.shape)
        good = np.isfinite(img) & np.isfinite(pb) & (pb > 0)
        w = np.where(good, pb**2 / sigma**2, 0.0)
        num += np.where(good, img, 0.0) * w
        den += w
    with np.errstate(divide="ignore", invalid="ignore"):
        mosaic = np.where(den > 0, num / den, np.nan)
    return mosaic, den


def mosaic_grid(
    corner_ra_rad: Sequence[float] | np.ndarray,
    corner_dec_rad: Sequence[float] | np.ndarray,
    pixel_arcsec: float,
    max_pixels: int = 10_000,
) -> dict[str, float | int]:
    """Common sky grid of a linear mosaic from the corners of its parts.

    Centre = midpoint of the RA and Dec extremes; full width = twice the largest offset of a
    corner from the centre, the RA width multiplied by ``cos(dec_centre)``; size =
    ``ceil(width / pixel) + 1`` pixels with the centre on pixel ``(n - 1) / 2`` (0-based),
    as PHANGS ``calculate_mosaic_extent`` + ``build_common_header``.

    Returns
    -------
    dict
        ``ra_ctr_rad, dec_ctr_rad, nx, ny, crpix_x, crpix_y`` (0-based reference pixels),
        ``width_ra_arcsec, width_dec_arcsec``.
    """
    ra = np.asarray(corner_ra_rad, dtype=float)
    dec = np.asarray(corner_dec_rad, dtype=float)
    if ra.size == 0 or ra.shape != dec.shape:
        raise CubeError("mosaic grid needs matching non-empty corner lists")
    if ra.max() - ra.min() > math.pi:
        raise CubeError("mosaic parts straddle RA = 0; not supported")
    ra_ctr = 0.5 * (ra.max() + ra.min())
    dec_ctr = 0.5 * (dec.max() + dec.min())
    rad2as = 180.0 / math.pi * 3600.0
    width_ra = 2.0 * float(np.max(np.abs(ra - ra_ctr))) * math.cos(dec_ctr) * rad2as
    width_dec = 2.0 * float(np.max(np.abs(dec - dec_ctr))) * rad2as
    nx = int(math.ceil(width_ra / pixel_arcsec - 1e-9)) + 1
    ny = int(math.ceil(width_dec / pixel_arcsec - 1e-9)) + 1
    if nx > max_pixels or ny > max_pixels:
        raise CubeError(f"mosaic grid of {nx} x {ny} pixels exceeds {max_pixels} per axis (a wrong part?)")
    return {
        "ra_ctr_rad": float(ra_ctr),
        "dec_ctr_rad": float(dec_ctr),
        "nx": nx,
        "ny": ny,
        "crpix_x": (nx - 1) / 2.0,
        "crpix_y": (ny - 1) / 2.0,
        "width_ra_arcsec": width_ra,
        "width_dec_arcsec": width_dec,
    }


def valid_bounding_box(valid: np.ndarray, pad: int = 1, axes: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Inclusive index ranges of the bounding box of ``valid`` grown by ``pad`` (clipped).

    Parameters
    ----------
    valid : numpy.ndarray of bool
        True where the cube holds data (unmasked and finite).
    pad : int
        Pixels added on each side (PHANGS ``trim_cube(pad=1)``).
    axes : sequence of int, optional
        Axes to trim; the others keep their full range. Default: all axes.

    Returns
    -------
    list of (lo, hi)
        One inclusive range per axis of ``valid``.
    """
    valid = np.asarray(valid, dtype=bool)
    projections = [valid.any(axis=tuple(i for i in range(valid.ndim) if i != ax)) for ax in range(valid.ndim)]
    return box_from_projections(projections, pad=pad, axes=axes)


def box_from_projections(
    projections: Sequence[np.ndarray], pad: int = 1, axes: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Bounding box from per-axis "any valid" projections (see :func:`valid_bounding_box`).

    ``projections[ax][i]`` is True when the hyper-plane ``i`` of axis ``ax`` holds valid data;
    computing them block by block lets large cubes be trimmed without loading them whole.
    """
    nd = len(projections)
    if not all(np.any(p) for p in projections):
        raise CubeError("no valid (unmasked, finite) pixel: nothing to trim to")
    axes = range(nd) if axes is None else [a % nd for a in axes]
    box = []
    for ax, proj in enumerate(projections):
        n = len(proj)
        if ax not in axes:
            box.append((0, n - 1))
            continue
        idx = np.flatnonzero(proj)
        box.append((max(0, int(idx[0]) - pad), min(n - 1, int(idx[-1]) + pad)))
    return box


def rebin_factor(bmaj_arcsec: float, pixel_arcsec: float, min_pixperbeam: float = 3.0) -> int:
    """Integer spatial rebinning factor that keeps at least ``min_pixperbeam`` pixels per beam.

    ``floor(bmaj / pixel / min_pixperbeam)`` (1 = no rebinning). With the PHANGS default of
    3 this gives 2 for 6-9 pixels per beam, as the original's hard-coded "2 when > 6", but it
    honours ``min_pixperbeam`` (reference section 9 item 10).
    """
    if pixel_arcsec <= 0 or bmaj_arcsec <= 0 or min_pixperbeam <= 0:
        raise CubeError(f"rebin factor needs positive sizes, got {bmaj_arcsec}, {pixel_arcsec}, {min_pixperbeam}")
    return max(1, int(math.floor(bmaj_arcsec / pixel_arcsec / min_pixperbeam + 1e-9)))


def trim_rind(mask: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Erode the sky mask of every plane by ``pixels`` with a 2-D cross (PHANGS ``trim_rind``).

    ``mask`` is ``[x, y, ...]``; only the first two axes are eroded.
    """
    mask = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return mask.copy()
    elt = ndimage.generate_binary_structure(2, 1)
    if pixels > 1:
        elt = ndimage.iterate_structure(elt, pixels - 1)
    elt = elt.reshape(elt.shape + (1,) * (mask.ndim - 2))
    return ndimage.binary_erosion(mask, structure=elt)


def coarse_beam_edge_channels(bmaj_arcsec: Sequence[float] | np.ndarray) -> tuple[int, int]:
    """First and last channel to keep when dropping edge channels with much coarser beams.

    PHANGS ``trim_coarse_beam_edge_channels``: threshold ``median + 3 std`` of the per-plane
    major axes, recomputed once on the planes below it; the kept range runs from the first to
    the last plane below the second threshold (interior coarse planes are kept). Comparisons
    are ``<=`` (the original's ``<`` finds no valid plane when the clipped beams are all equal).
    """
    b = np.asarray(bmaj_arcsec, dtype=float)
    if b.size == 0 or not np.all(np.isfinite(b)):
        raise CubeError("per-plane beams must be a non-empty finite list")
    thresh = np.median(b) + 3.0 * np.std(b)
    kept = b[b <= thresh]
    thresh2 = np.median(kept) + 3.0 * np.std(kept)
    good = np.flatnonzero(b <= thresh2)
    return int(good[0]), int(good[-1])


def gaussian_beam_image(
    shape: tuple[int, int], fwhm_pixels: float, centre: tuple[float, float] | None = None
) -> np.ndarray:
    """Round Gaussian of peak 1 and FWHM ``fwhm_pixels`` on a ``shape`` grid ``[x, y]``."""
    cx, cy = centre if centre is not None else ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
    x = np.arange(shape[0])[:, None] - cx
    y = np.arange(shape[1])[None, :] - cy
    s = fwhm_pixels * _FWHM_TO_SIGMA
    return np.exp(-(x**2 + y**2) / (2.0 * s**2))


def feather_plane(
    interf: np.ndarray,
    sd: np.ndarray,
    interf_beam_pixels: tuple[float, float],
    sd_fwhm_pixels: float,
    sdfactor: float = 1.0,
) -> np.ndarray:
    """Reference feather of one plane (the algorithm of CASA ``feather``, round SD beam).

    In the Fourier domain ``F = F_int (1 - W) + sdfactor (Omega_int / Omega_sd) F_sd`` with
    ``W`` the single-dish beam's transfer function normalised to 1 at zero spacing and
    ``Omega`` the beam areas; both planes in Jy/beam of their own beam, NaN treated as 0.

    Parameters
    ----------
    interf, sd : numpy.ndarray
        Planes ``[x, y]`` on the same grid [Jy/beam].
    interf_beam_pixels : (float, float)
        Interferometer beam FWHM major, minor [pixels] (used for the area ratio only).
    sd_fwhm_pixels : float
        Single-dish beam FWHM [pixels].
    sdfactor : float
        Scale applied to the single-dish data.
    """
    a = np.nan_to_num(np.asarray(interf, dtype=float))
    b = np.nan_to_num(np.asarray(sd, dtype=float))
    kx = np.fft.fftfreq(a.shape[0])[:, None]
    ky = np.fft.fftfreq(a.shape[1])[None, :]
    s = sd_fwhm_pixels * _FWHM_TO_SIGMA
    w = np.exp(-2.0 * math.pi**2 * s**2 * (kx**2 + ky**2))
    ratio = (interf_beam_pixels[0] * interf_beam_pixels[1]) / sd_fwhm_pixels**2
    out = np.fft.fft2(a) * (1.0 - w) + sdfactor * ratio * np.fft.fft2(b)
    return np.fft.ifft2(out).real
