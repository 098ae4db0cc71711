"""Convolution of cubes to a round target beam (angular or physical resolution).

The numerics of :meth:`spectral_cube.SpectralCube.convolve_to` (radio-beam deconvolution,
astropy FFT convolution, NaN interpolation), applied channel by channel and streamed to disk,
with the PHANGS tolerance rule and coverage cubes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.io import (
    PIPELINE_COMMENT,
    OutputTransaction,
    ResultBase,
    read_cube,
    write_fits,
)

logger = logging.getLogger(__name__)

#: derived-key ``convolve_kw`` keywords
CONVOLVE_KW = {"tol", "nan_treatment"}


@dataclass
class ConvolveResult(ResultBase):
    """Result of :func:`convolve_cube`.

    ``status`` is ``'convolved'``, ``'within_tolerance'`` (written unconvolved) or
    ``'skipped'`` (target smaller than the native beam: no file written).
    """

    status: str
    target_beam_arcsec: float
    native_beam_arcsec: float
    fractional_change: float
    out_fits: str | None = None
    coverage_fits: str | None = None
    coverage2d_fits: str | None = None
    dist_mpc: float | None = None
    warnings: list[str] = field(default_factory=list)


def physical_to_angular_arcsec(resolution_pc: float, distance_mpc: float) -> float:
    """theta = l / D [arcsec] for a physical resolution ``l`` [pc] at distance ``D`` [Mpc]."""
    if not distance_mpc or distance_mpc <= 0:
        raise CubeError(f"physical resolution {resolution_pc} pc needs a positive distance "
                        f"(got {distance_mpc!r} Mpc)")
    return float((resolution_pc / (distance_mpc * 1e6) * u.rad).to_value(u.arcsec))


def _stream_writer(path: Path, header: fits.Header, shape: tuple[int, int, int]):
    from phangs_operators.routines.cubes.noise import _streaming_header

    return fits.StreamingHDU(path, _streaming_header(header, shape))


def convolve_cube(in_fits: str | Path, out_fits: str | Path, *, target_beam_arcsec: float,
                  tol: float = 0.1, nan_treatment: str = "interpolate",
                  coverage_fits: str | Path | None = None,
                  coverage2d_fits: str | Path | None = None,
                  dist_mpc: float | None = None,
                  tx: OutputTransaction | None = None) -> ConvolveResult:
    """Convolve a cube to a round beam (PHANGS ``smooth_cube``), one channel at a time.

    The kernel is radio-beam's deconvolution of the target by the native beam
    (``Beam.deconvolve(...).as_kernel``) and each plane is convolved with astropy's
    ``convolve_fft`` exactly as ``SpectralCube.convolve_to`` does (normalised kernel, single
    precision FFT for float32 data, planes without data left alone, NaN kept where the input
    had none), so the result equals spectral-cube's while only a few planes are in memory.

    Parameters
    ----------
    in_fits, out_fits : str or Path
        Input cube and output cube (float32).
    target_beam_arcsec : float
        FWHM of the round target beam [arcsec].
    tol : float
        Fractional tolerance: delta = (target - native) / native major axis. delta > tol
        -> convolve; |delta| <= tol -> write unconvolved; delta < -tol -> logged skip, no file.
    nan_treatment : str
        'interpolate' or 'fill' (astropy convolution).
    coverage_fits, coverage2d_fits : str or Path, optional
        Coverage cube (finite(original) = 1, convolved identically) and its mean over
        channels; defaults ``<out>_coverage.fits`` and ``<out>_coverage2d.fits``.
    dist_mpc : float, optional
        Distance used for a physical resolution: written as the DIST_MPC card.
    """
    import scipy.fft
    from astropy.convolution import convolve_fft
    from astropy.wcs.utils import proj_plane_pixel_area
    from radio_beam import Beam

    info = read_cube(in_fits)
    native = float(info.beam_arcsec[0])
    delta = (target_beam_arcsec - native) / native
    out_fits = Path(out_fits)
    res = ConvolveResult(status="", target_beam_arcsec=float(target_beam_arcsec),
                         native_beam_arcsec=native, fractional_change=float(delta),
                         dist_mpc=dist_mpc)
    if delta < -tol:
        msg = (f"{in_fits}: target beam {target_beam_arcsec:.4g}\" is smaller than the native "
               f"beam {native:.4g}\" (beyond tol {tol}); resolution cannot be matched, skipped")
        logger.warning("%s", msg)
        res.status = "skipped"
        res.warnings.append(msg)
        return res
    coverage_fits = Path(coverage_fits or out_fits.with_name(out_fits.stem + "_coverage.fits"))
    coverage2d_fits = Path(coverage2d_fits
                           or out_fits.with_name(out_fits.stem + "_coverage2d.fits"))
    native_beam = Beam(major=info.beam_arcsec[0] * u.arcsec, minor=info.beam_arcsec[1] * u.arcsec,
                       pa=info.bpa_deg * u.deg)
    target = Beam(major=target_beam_arcsec * u.arcsec, minor=target_beam_arcsec * u.arcsec,
                  pa=0 * u.deg)
    kernel = None
    if delta > tol:
        pixscale = proj_plane_pixel_area(info.wcs.celestial) ** 0.5 * u.deg
        try:
            kernel = target.deconvolve(native_beam).as_kernel(pixscale)
        except ValueError as exc:
            raise CubeError(f"{in_fits}: cannot convolve to {target_beam_arcsec}\": {exc}"
                            ) from exc
        res.status = "convolved"
    else:
        logger.info("%s: beam within tolerance %s of %s\"; written unconvolved", in_fits,
                    tol, target_beam_arcsec)
        res.status = "within_tolerance"
    out_hdr = info.header.copy()
    for key in ("BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX"):
        out_hdr.remove(key, ignore_missing=True)
    if kernel is not None:
        out_hdr["BMAJ"] = target_beam_arcsec / 3600.0
        out_hdr["BMIN"] = target_beam_arcsec / 3600.0
        out_hdr["BPA"] = 0.0
    if dist_mpc is not None:
        out_hdr["DIST_MPC"] = (float(dist_mpc), "Used in convolution")
    out_hdr["COMMENT"] = PIPELINE_COMMENT
    cov_hdr = out_hdr.copy()
    cov_hdr["BUNIT"] = " "
    cov_hdr["BTYPE"] = "Coverage"
    single = {"complex_dtype": np.complex64, "fftn": scipy.fft.fftn, "ifftn": scipy.fft.ifftn}
    nchan = info.shape[0]
    cov_sum = np.zeros(info.shape[1:], dtype=np.float64)
    paths = {}
    for final in (out_fits, coverage_fits):
        paths[final] = tx.path(final) if tx is not None else final.with_name(
            f".{final.name}.tmp")
    try:
        w_cube = _stream_writer(paths[out_fits], out_hdr, info.shape)
        w_cov = _stream_writer(paths[coverage_fits], cov_hdr, info.shape)
        for k in range(nchan):
            img = np.array(info.data[k], dtype=np.float32)
            finite = np.isfinite(img)
            cov = finite.astype(np.float64)
            if kernel is not None:
                if finite.any():
                    img = convolve_fft(img, kernel, normalize_kernel=True,
                                       nan_treatment=nan_treatment, allow_huge=True,
                                       **single).astype(np.float32)
                cov = convolve_fft(cov, kernel, normalize_kernel=True,
                                   nan_treatment=nan_treatment, allow_huge=True)
            img[~finite] = np.nan
            cov_sum += cov
            w_cube.write(img.astype(">f4"))
            w_cov.write(cov.astype(">f4"))
        w_cube.close()
        w_cov.close()
        if tx is None:
            for final, tmp in paths.items():
                tmp.replace(final)
    finally:
        if tx is None:
            for tmp in paths.values():
                tmp.unlink(missing_ok=True)
    cov2d = (cov_sum / nchan).astype(np.float32)
    hdr2d = fits.Header()
    hdr2d.update(info.wcs.celestial.to_header())
    for key in ("BMAJ", "BMIN", "BPA", "OBJECT", "TELESCOP", "DIST_MPC"):
        if key in out_hdr:
            hdr2d[key] = out_hdr[key]
    hdr2d["BTYPE"] = "Coverage"
    if np.isfinite(cov2d).any():
        hdr2d["DATAMIN"] = float(np.nanmin(cov2d))
        hdr2d["DATAMAX"] = float(np.nanmax(cov2d))
    write_fits(cov2d, hdr2d, coverage2d_fits, tx=tx)
    res.out_fits, res.coverage_fits = str(out_fits), str(coverage_fits)
    res.coverage2d_fits = str(coverage2d_fits)
    return res
