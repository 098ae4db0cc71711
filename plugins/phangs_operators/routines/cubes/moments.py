"""Moment maps and their error maps with the PHANGS-ALMA definitions (Leroy et al. 2021).

Products (algorithm tags of the moment key): ``mom0``, ``mom1``, ``mom2``, ``ew``, ``tpeak``
(optional ``window`` boxcar smoothing), ``vpeak``, ``vquad``, and the round-2 ``mom1wprior``.
Every map is computed with vectorised numpy over blocks of rows (bounded memory); velocities are
handled in km/s. The formulas, including the documented PHANGS quirks (4th-root mom2 error,
vquad "error" as a clipped variance x dv, tpeak over the channel range of the mask), are listed
in ``docs/DEVIATIONS.md`` and in the reference, section 3.5.
"""

from __future__ import annotations

import ast
import logging
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.convolution import Box1DKernel
from astropy.io import fits
from scipy.ndimage import correlate1d

from phangs_operators.errors import CubeError, KeyFileError
from phangs_operators.routines.cubes.io import (
    PIPELINE_COMMENT,
    CubeInfo,
    OutputTransaction,
    ResultBase,
    block_bytes,
    map_header,
    read_cube,
    read_map,
    read_mask_cube,
    write_fits,
)
from phangs_operators.routines.cubes.masks import (
    parse_window_kms,
    reproject_map,
    velocity_map_kms,
)
from phangs_operators.routines.cubes.noise import NoiseSource, read_noise

logger = logging.getLogger(__name__)

SQRT2PI = np.sqrt(2.0 * np.pi)

#: algorithm -> (BUNIT, BTYPE)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "mom0": ("K km / s", "Moment0"),
    "mom1": ("km / s", "Moment1"),
    "mom2": ("km / s", "Moment2"),
    "ew": ("km / s", "VelDisp EW"),
    "tpeak": ("K", "Tpeak"),
    "vpeak": ("km / s", "Vmax"),
    "vquad": ("km / s", "Vmax"),
    "mom1wprior": ("km / s", "Moment1"),
}
ROUND1 = {"mom0", "mom1", "mom2", "ew", "tpeak", "vpeak", "vquad"}


@dataclass
class MomentDef:
    """One moment of the moment key (``moment_key.txt``)."""

    name: str
    algorithm: str
    mask: str | None
    ext: str
    ext_error: str
    round: int = 1
    kwargs: dict = field(default_factory=dict)
    maps_to_pass: list[str] = field(default_factory=list)
    other_exts: dict = field(default_factory=dict)


def _m(name, alg, mask, ext, rnd=1, kwargs=None, maps=None, other=None) -> MomentDef:
    return MomentDef(name, alg, mask, ext, "", rnd, dict(kwargs or {}), list(maps or []),
                     dict(other or {}))


#: The PHANGS moment key (``phangs-alma_keys/moment_key.txt``), 13 moments.
PHANGS_MOMENTS: dict[str, MomentDef] = {d.name: d for d in [
    _m("strictmom0", "mom0", "strictmask", "_strict_mom0"),
    _m("strictmom1", "mom1", "strictmask", "_strict_mom1"),
    _m("strictvpeak", "vpeak", "strictmask", "_strict_vpeak"),
    _m("strictvquad", "vquad", "strictmask", "_strict_vquad"),
    _m("strictmom2", "mom2", "strictmask", "_strict_mom2"),
    _m("strictew", "ew", "strictmask", "_strict_ew"),
    _m("broadmom0", "mom0", "broadmask", "_broad_mom0"),
    _m("broadmom1", "mom1", "broadmask", "_broad_mom1"),
    _m("broadtpeak", "tpeak", "broadmask", "_broad_tpeak"),
    _m("broadtpeak12p5", "tpeak", "broadmask", "_broad_tpeak12p5", kwargs={"window": "12.5km/s"}),
    _m("mom1wprior", "mom1wprior", None, "_mom1wprior", 2,
       kwargs={"vfield_reject_thresh": "20km/s", "mom0_thresh": 2.0},
       maps=["strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1", "broad_mom0",
             "broad_emom0"],
       other={"vfield_prior": "_7m+tp_co21_15as_strict_mom1.fits"}),
    _m("flatstrictmom0", "mom0", "flatstrictmask", "_flatstrict_mom0", 3),
    _m("flatbroadmom0", "mom0", "flatbroadmask", "_flatbroad_mom0", 3),
]}
for _d in PHANGS_MOMENTS.values():  # explicit error extensions of the PHANGS key
    _d.ext_error = {"_strict_mom0": "_strict_emom0", "_strict_mom1": "_strict_emom1",
                    "_strict_vpeak": "_strict_evpeak", "_strict_vquad": "_strict_evquad",
                    "_strict_mom2": "_strict_emom2", "_strict_ew": "_strict_eew",
                    "_broad_mom0": "_broad_emom0", "_broad_mom1": "_broad_emom1",
                    "_broad_tpeak": "_broad_etpeak", "_broad_tpeak12p5": "_broad_etpeak12p5",
                    "_mom1wprior": "_emom1wprior", "_flatstrict_mom0": "_flatstrict_emom0",
                    "_flatbroad_mom0": "_flatbroad_emom0"}[_d.ext]

_MOMENT_PARAMS = {"algorithm", "mask", "ext", "ext_error", "round", "maps_to_pass",
                  "other_exts", "kwargs"}


def read_moment_key(path: str | Path) -> dict[str, MomentDef]:
    """Parse a PHANGS ``moment_key.txt`` (``moment_name param value`` lines).

    Raises
    ------
    KeyFileError
        Unknown parameter (the original raises too), bad value or incomplete definition,
        naming the file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read moment key ({exc})") from exc
    raw: dict[str, dict] = {}
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(None, 2)
        if len(parts) != 3:
            raise KeyFileError(f"{path}:{lineno}: expected 'moment param value', got {s!r}")
        name, param, value = parts
        if param not in _MOMENT_PARAMS:
            raise KeyFileError(f"{path}:{lineno}: unknown moment parameter {param!r}")
        entry = raw.setdefault(name, {"kwargs": {}, "maps_to_pass": [], "other_exts": {}})
        if param in ("kwargs", "other_exts", "maps_to_pass", "round"):
            try:
                val = ast.literal_eval(value)
            except (ValueError, SyntaxError) as exc:
                raise KeyFileError(f"{path}:{lineno}: bad value {value!r} for {param}") from exc
            if param in ("kwargs", "other_exts"):
                if not isinstance(val, dict):
                    raise KeyFileError(f"{path}:{lineno}: {param} must be a dict")
                entry[param].update(val)
            elif param == "maps_to_pass":
                if not isinstance(val, list):
                    raise KeyFileError(f"{path}:{lineno}: maps_to_pass must be a list")
                entry[param] = val
            else:
                entry[param] = int(val)
        else:
            entry[param] = None if value == "None" else value.strip("'\"")
    out = {}
    for name, e in raw.items():
        for need in ("algorithm", "ext", "ext_error"):
            if need not in e:
                raise KeyFileError(f"{path}: moment {name!r} has no {need}")
        if e["algorithm"] not in ALGORITHMS:
            raise KeyFileError(f"{path}: moment {name!r}: unknown algorithm {e['algorithm']!r}")
        out[name] = MomentDef(name, e["algorithm"], e.get("mask"), e["ext"], e["ext_error"],
                              e.get("round", 1), e["kwargs"], e["maps_to_pass"], e["other_exts"])
    return out


# ------------------------------------------------------------------------------------------
# array formulas (one block of rows: T, mask, sigma shaped (nchan, ny, nx))


class _Prep:
    """Per-block, per-mask quantities shared by several moments (computed on first use)."""

    def __init__(self, T: np.ndarray, mask: np.ndarray, sigma: np.ndarray, v: np.ndarray):
        self.T, self.mask, self.sigma, self.v = T, mask, sigma, v

    @cached_property
    def m(self) -> np.ndarray:
        return self.mask & np.isfinite(self.T)

    @cached_property
    def valid(self) -> np.ndarray:
        return self.m.any(axis=0)

    @cached_property
    def Tm(self) -> np.ndarray:
        return np.where(self.m, self.T, 0).astype(np.float64)

    @cached_property
    def sum_t(self) -> np.ndarray:
        return self.Tm.sum(axis=0)

    @cached_property
    def sum_t32(self) -> np.ndarray:
        # PHANGS divides the errors by spectral-cube's float32 sum of T
        return np.where(self.m, self.T, 0).sum(axis=0, dtype=np.float32).astype(np.float64)

    @cached_property
    def mom1(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.Tm * self.v[:, None, None]).sum(axis=0) / self.sum_t

    @cached_property
    def s2(self) -> np.ndarray:
        return np.where(self.mask, self.sigma.astype(np.float64) ** 2, np.nan)

    @cached_property
    def sumsq(self) -> np.ndarray:
        return np.nansum(self.s2, axis=0)

    @cached_property
    def peak(self) -> tuple[np.ndarray, np.ndarray]:
        return _masked_max(self.T, self.m)


def _prep(T, mask, sigma, v, prep):
    return prep if prep is not None else _Prep(T, mask, sigma, v)


def moment0(T, mask, sigma, dv, *, include_limits=True, line_width_kms=10.0, prep=None):
    """Sum T dv over the mask; 0 at observed unmasked pixels; error sqrt(sum sigma^2) dv."""
    p = _prep(T, mask, sigma, None, prep)
    valid = p.valid
    mom0 = p.sum_t * dv
    mom0[~valid] = np.nan
    err = np.full(mom0.shape, np.nan)
    if include_limits:
        observed = np.isfinite(T).any(axis=0)
        mom0[~valid & observed] = 0.0
        if np.isnan(sigma).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN spectra -> NaN
                rmsmed = np.nanmedian(sigma, axis=0)
        else:
            rmsmed = np.median(sigma, axis=0)
        err[observed] = rmsmed[observed] * np.sqrt(abs(line_width_kms / dv))
    err[valid] = np.sqrt(p.sumsq[valid])
    return mom0, err * dv


def moment1(T, mask, sigma, v, *, prep=None):
    """Intensity-weighted velocity and its error sqrt(sum sigma^2 (v - M1)^2) / |sum T|."""
    p = _prep(T, mask, sigma, v, prep)
    mom1 = p.mom1.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        numer = np.nansum(p.s2 * (v[:, None, None] - mom1[None]) ** 2, axis=0)
        err = np.sqrt(numer / p.sum_t32**2)
    err[np.isnan(mom1)] = np.nan
    return mom1, err


def moment2(T, mask, sigma, v, *, prep=None):
    """Linewidth sqrt(sum T (v-M1)^2 / sum T) and the PHANGS 4th-root error."""
    p = _prep(T, mask, sigma, v, prep)
    with np.errstate(divide="ignore", invalid="ignore"):
        dv2 = (v[:, None, None] - p.mom1[None]) ** 2
        var = (p.Tm * dv2).sum(axis=0) / p.sum_t
        mom2 = np.sqrt(var)
        numer = np.nansum(p.s2 * (dv2 - mom2[None] ** 2) ** 2, axis=0)
        err = (numer / p.sum_t32**2) ** 0.25
    return mom2, err


def _masked_max(T, m):
    filled = np.where(m, T, -np.inf)
    arg = np.argmax(filled, axis=0)
    tmax = np.take_along_axis(filled, arg[None], 0)[0].astype(np.float64)
    tmax[~m.any(axis=0)] = np.nan
    return tmax, arg


def equivalent_width(T, mask, sigma, v, dv, *, prep=None):
    """sigma_ew = M0 / (Tmax sqrt(2 pi)) and its PHANGS error."""
    p = _prep(T, mask, sigma, v, prep)
    tmax, arg = p.peak
    mom0 = p.sum_t * dv
    mom0[~p.valid] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ew = mom0 / tmax / SQRT2PI
        s_at = np.take_along_axis(sigma, arg[None], 0)[0].astype(np.float64)
        dv0 = abs(v[1] - v[0])
        term1 = p.sumsq * dv0**2 / (2 * np.pi * tmax**2)
        term2 = (ew**2 - ew * dv0 / SQRT2PI) * s_at**2
        err = np.sqrt(term1 + term2)
    return ew, err


def box_smooth_spectra(T: np.ndarray, m: np.ndarray, nchan_kernel: float) -> np.ndarray:
    """Boxcar-smooth spectra (axis 0) like astropy ``convolve(Box1DKernel(n))``.

    Voxels outside ``m`` are treated as NaN and interpolated over; beyond the ends of the
    spectrum the data count as zeros (astropy's ``boundary='fill'``).
    """
    kern = Box1DKernel(nchan_kernel).array[::-1]
    x0 = np.where(m, T, 0).astype(np.float64)
    num = correlate1d(x0, kern, axis=0, mode="constant", cval=0.0)
    den = correlate1d(m.astype(np.float64), kern, axis=0, mode="constant", cval=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def tpeak_channel_mask(mask: np.ndarray) -> tuple[int, int] | None:
    """PHANGS tpeak channel range [lo, hi) of the channels holding any masked voxel."""
    chans = np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
    if chans.size == 0:
        return None
    return int(chans.min()), int(chans.max())


def peak_temperature(T, chan_range, sigma, dv, window_kms=None):
    """Peak over the mask's channel range (all pixels), optional boxcar; error sigma(argmax).

    With a window of n = window / dv > 1 channels the spectra are boxcar-smoothed and the
    error is divided by sqrt(n).
    """
    m = np.zeros(T.shape, dtype=bool)
    if chan_range is not None:
        m[chan_range[0]:chan_range[1]] = True
    m &= np.isfinite(T)
    fac = 1.0
    vals = T
    if window_kms is not None:
        n = window_kms / dv
        if n > 1:
            vals = box_smooth_spectra(T, m, n)
            fac = 1.0 / np.sqrt(n)
    tmax, arg = _masked_max(vals, m)
    s = np.where(m, sigma, np.nan)
    err = np.take_along_axis(s, arg[None], 0)[0].astype(np.float64) * fac
    return tmax, err


def peak_velocity(T, mask, v, dv, window_kms=None, *, prep=None):
    """Velocity of the masked peak; error = channel width where defined."""
    p = _prep(T, mask, None, v, prep)
    m = p.m
    if window_kms is not None and window_kms / dv > 1:
        tmax, arg = _masked_max(box_smooth_spectra(T, m, window_kms / dv), m)
    else:
        tmax, arg = p.peak
    vpk = v[arg].astype(np.float64)
    vpk[~np.isfinite(tmax)] = np.nan
    err = np.where(np.isfinite(tmax), dv, np.nan)
    return vpk, err


def quadratic_peak_velocity(T, mask, sigma, v, dv, window_kms=None, maxshift=0.5, *,
                            prep=None):
    """Peak velocity refined by a parabola through the peak and its neighbours (PHANGS vquad).

    The "error" is the PHANGS quantity sum J_k^2 sigma_k^2 clipped to +-maxshift, times dv.
    """
    p = _prep(T, mask, sigma, v, prep)
    m = p.m
    vals = T
    if window_kms is not None and window_kms / dv > 1:
        vals = box_smooth_spectra(T, m, window_kms / dv)
        tmax, arg = _masked_max(vals, m)
    else:
        tmax, arg = p.peak
    nchan = T.shape[0]
    arg = np.clip(arg, 1, nchan - 2)
    filled = np.where(m, vals, np.nan)
    tup = np.nan_to_num(np.take_along_axis(filled, arg[None] + 1, 0)[0].astype(np.float64))
    tdn = np.nan_to_num(np.take_along_axis(filled, arg[None] - 1, 0)[0].astype(np.float64))
    tup[tup < 0] = 0
    tdn[tdn < 0] = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = tup + tdn - 2 * tmax
        delta = -((tup - tdn) / denom)
        if maxshift is not None:
            delta = np.clip(delta, -maxshift, maxshift)
        good = np.isfinite(tmax)
        vq = np.full(tmax.shape, np.nan)
        vq[good] = np.interp(arg[good] + delta[good], np.arange(nchan), v)
        s = np.where(mask, sigma, np.float32(np.nan))
        r_up = np.take_along_axis(s, arg[None] + 1, 0)[0].astype(np.float64)
        r_mx = np.take_along_axis(s, arg[None], 0)[0].astype(np.float64)
        r_dn = np.take_along_axis(s, arg[None] - 1, 0)[0].astype(np.float64)
        j1 = 1 / denom - (tup - tdn) / denom**2
        j2 = 2 * (tup - tdn) / denom**2
        j3 = -1 / denom - (tup - tdn) / denom**2
        err = j1**2 * r_up**2 + j2**2 * r_mx**2 + j3**2 * r_dn**2
        if maxshift is not None:
            err = np.clip(err, -maxshift, maxshift)
    vq[~good] = np.nan
    return vq, err * dv


def mom1_with_prior(strict_mom1, strict_emom1, broad_mom1, broad_emom1, broad_mom0=None,
                    broad_emom0=None, prior=None, *, vfield_reject_thresh_kms=30.0,
                    mom0_thresh=2.0):
    """Hybrid velocity field (PHANGS ``write_moment1_hybrid``), all maps on one grid [km/s].

    Strict mom1 where finite; else broad mom1 where finite, broad mom0 > mom0_thresh x its
    error, and |broad mom1 - prior| < vfield_reject_thresh. The error is the broad error where
    the hybrid is defined, replaced by the strict error where that is finite.
    """
    hybrid = np.array(strict_mom1, dtype=np.float64)
    fill = np.isfinite(broad_mom1) & ~np.isfinite(strict_mom1)
    with np.errstate(invalid="ignore"):
        if broad_mom0 is not None:
            if broad_emom0 is not None:
                fill &= broad_mom0 > mom0_thresh * broad_emom0
            else:
                fill &= broad_mom0 > mom0_thresh
        if prior is not None:
            fill &= np.abs(broad_mom1 - prior) < vfield_reject_thresh_kms
    hybrid[fill] = broad_mom1[fill]
    err = np.array(broad_emom1, dtype=np.float64)
    err[~np.isfinite(hybrid)] = np.nan
    sv = np.isfinite(strict_emom1)
    err[sv] = strict_emom1[sv]
    return hybrid, err


# ------------------------------------------------------------------------------------------
# file routines


@dataclass
class MomentResult(ResultBase):
    """Result of :func:`make_moments` (one entry per moment written or skipped)."""

    products: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def moment_header(cube: CubeInfo, algorithm: str, error: bool, data: np.ndarray
                  ) -> fits.Header:
    """Header of a moment map: celestial WCS, beam, BUNIT, BTYPE, DATAMIN/MAX, CHANWDTH."""
    bunit, btype = ALGORITHMS[algorithm]
    hdr = map_header(cube)
    hdr["BUNIT"] = bunit
    hdr["BTYPE"] = btype + (" Error" if error else "")
    fin = np.isfinite(data)
    if fin.any():
        hdr["DATAMAX"] = float(np.max(data[fin]))
        hdr["DATAMIN"] = float(np.min(data[fin]))
    unit = cube.wcs.sub([3]).wcs.cunit[0]
    try:
        import astropy.units as u

        width = (cube.channel_width_kms * u.km / u.s).to(unit)
        hdr["CHANWDTH"] = (float(width.value), f"Median channel width in {width.unit}")
    except Exception:  # noqa: BLE001 - frequency axes: report km/s
        hdr["CHANWDTH"] = (cube.channel_width_kms, "Median channel width in km / s")
    hdr.remove("BEAM", ignore_missing=True)
    axis = cube.wcs.axis_type_names[2] if len(cube.wcs.axis_type_names) > 2 else "spectral"
    hdr["COMMENT"] = PIPELINE_COMMENT
    hdr["COMMENT"] = f"{btype}{' Error' if error else ''} generated by collapsing cube over " \
                     f"{axis} axis."
    return hdr


def moment_round1_arrays(cube: CubeInfo, noise: NoiseSource, masks: dict[str, np.ndarray],
                         defs: list[MomentDef]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Compute round-1 moments of ``defs`` (masks by name) block by block.

    Returns ``{name: (map, error_map)}`` in float64, units of :data:`ALGORITHMS`.
    """
    nchan, ny, nx = cube.shape
    v = np.asarray(cube.velocity_kms, dtype=np.float64)
    dv = cube.channel_width_kms
    out = {d.name: (np.full((ny, nx), np.nan), np.full((ny, nx), np.nan)) for d in defs}
    ranges = {}
    for d in defs:
        if d.algorithm == "tpeak":
            ranges[d.name] = tpeak_channel_mask(masks[d.mask])
    # ~20 float64 temporaries per block: 1/64 of the cube per block keeps them < cube size
    step = max(1, int(block_bytes(cube.shape, 1 / 64, 16.0) // max(1, 4 * nchan * nx)))
    to_k = cube.kelvin_per_unit()  # moments are in K (PHANGS converts the cube to K)
    scale = None if np.all(to_k == 1.0) else to_k.astype(np.float32)[:, None, None]
    for y0 in range(0, ny, step):
        y1 = min(ny, y0 + step)
        T = np.asarray(cube.data[:, y0:y1, :], dtype=np.float32)
        sig = noise.rows(y0, y1)
        if scale is not None:
            T = T * scale
            sig = sig * scale
        preps: dict[str, _Prep] = {}
        for d in defs:
            mk = masks[d.mask][:, y0:y1, :] if d.mask in masks else None
            if d.mask in masks and d.mask not in preps:
                preps[d.mask] = _Prep(T, mk, sig, v)
            pr = preps.get(d.mask)
            window = d.kwargs.get("window")
            wk = parse_window_kms(window) if window is not None else None
            a = d.algorithm
            if a == "mom0":
                res = moment0(T, mk, sig, dv, prep=pr)
            elif a == "mom1":
                res = moment1(T, mk, sig, v, prep=pr)
            elif a == "mom2":
                res = moment2(T, mk, sig, v, prep=pr)
            elif a == "ew":
                res = equivalent_width(T, mk, sig, v, dv, prep=pr)
            elif a == "tpeak":
                res = peak_temperature(T, ranges[d.name], sig, dv, wk)
            elif a == "vpeak":
                res = peak_velocity(T, mk, v, dv, wk, prep=pr)
            elif a == "vquad":
                res = quadratic_peak_velocity(T, mk, sig, v, dv, wk,
                                              d.kwargs.get("maxshift", 0.5), prep=pr)
            else:
                raise CubeError(f"moment {d.name}: algorithm {a!r} is not a round-1 moment")
            out[d.name][0][y0:y1] = res[0]
            out[d.name][1][y0:y1] = res[1]
    return out


def total_flux_jy_kms(cube: CubeInfo, mom0_k_kms: np.ndarray) -> float | None:
    """Total line flux [Jy km/s] of a mom0 map [K km/s] (Rayleigh-Jeans, radio-beam's jtok).

    None when the cube has no rest frequency.
    """
    restfrq = cube.header.get("RESTFRQ", cube.header.get("RESTFREQ"))
    if not restfrq:
        return None
    import astropy.units as u
    from radio_beam import Beam

    beam = Beam(major=cube.beam_arcsec[0] * u.arcsec, minor=cube.beam_arcsec[1] * u.arcsec)
    k_per_jybeam = beam.jtok(float(restfrq) * u.Hz).to_value(u.K)
    beam_pixels = cube.pixels_per_beam
    return float(np.nansum(mom0_k_kms) / k_per_jybeam / beam_pixels)


def moment_paths(out_dir: str | Path, root: str, d: MomentDef) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    return out_dir / f"{root}{d.ext}.fits", out_dir / f"{root}{d.ext_error}.fits"


def make_moments(cube_fits: str | Path, noise_fits: str | Path | None,
                 mask_fits: dict[str, str | Path], out_dir: str | Path,
                 moment_defs: list[MomentDef], *, root: str | None = None,
                 cube: CubeInfo | None = None, noise: NoiseSource | None = None,
                 masks: dict[str, np.ndarray] | None = None,
                 tx: OutputTransaction | None = None) -> MomentResult:
    """Write round-1 moment maps and error maps.

    Parameters
    ----------
    cube_fits : str or Path
        Cube [K].
    noise_fits : str or Path
        Its noise cube (same grid); may be None when ``noise`` is given.
    mask_fits : dict
        Mask name (``strictmask``, ``broadmask``, ``flatstrictmask``...) -> FITS path.
    out_dir : str or Path
        Output directory; files ``{root}{ext}.fits`` and ``{root}{ext_error}.fits``.
    moment_defs : list of MomentDef
        Round-1 definitions (others are skipped and reported).
    root : str, optional
        File root; default the cube's file stem.
    cube, noise, masks : optional
        Already-loaded inputs (the stage passes them to avoid re-reading).
    """
    cube = cube if cube is not None else read_cube(cube_fits)
    if noise is None:
        if noise_fits is None:
            raise CubeError(f"{cube_fits}: moments need a noise cube")
        noise = read_noise(noise_fits, cube)
    root = root or Path(cube_fits).stem
    masks = dict(masks or {})
    result = MomentResult()
    todo = []
    for d in moment_defs:
        if d.algorithm not in ROUND1:
            result.skipped[d.name] = f"round {d.round} ({d.algorithm}) is not a round-1 moment"
            continue
        if d.mask not in masks:
            path = mask_fits.get(d.mask) if d.mask else None
            if path is None:
                result.skipped[d.name] = f"no {d.mask} given"
                result.warnings.append(f"moment {d.name}: mask {d.mask} missing; skipped")
                continue
            masks[d.mask] = read_mask_cube(path, cube)
        todo.append(d)
    arrays = moment_round1_arrays(cube, noise, masks, todo)
    for d in todo:
        mp, ep = moment_paths(out_dir, root, d)
        m, e = arrays[d.name]
        write_fits(m.astype(np.float32), moment_header(cube, d.algorithm, False, m), mp, tx=tx)
        write_fits(e.astype(np.float32), moment_header(cube, d.algorithm, True, e), ep, tx=tx)
        result.products[d.name] = {"map": str(mp), "error": str(ep),
                                   "n_finite": int(np.isfinite(m).sum()),
                                   "nansum": float(np.nansum(m))}
        if d.algorithm == "mom0":
            result.products[d.name]["total_flux_jy_kms"] = total_flux_jy_kms(cube, m)
    return result


def make_mom1wprior(strict_mom1: str | Path, strict_emom1: str | Path, broad_mom1: str | Path,
                    broad_emom1: str | Path, out_fits: str | Path, error_fits: str | Path, *,
                    broad_mom0: str | Path | None = None, broad_emom0: str | Path | None = None,
                    vfield_prior: str | Path | None = None,
                    vfield_reject_thresh: object = "30km/s", mom0_thresh: float = 2.0,
                    tx: OutputTransaction | None = None) -> MomentResult:
    """Round-2 hybrid velocity field (see :func:`mom1_with_prior`); maps reprojected
    (bilinear) onto the strict mom1 grid.
    """
    sm1, shdr = read_map(strict_mom1)
    shape = sm1.shape

    def load(path, velocity=True):
        if path is None:
            return None
        data, hdr = read_map(path)
        if velocity:
            data = velocity_map_kms(data, hdr, path)
        return reproject_map(data, hdr, shdr, shape)

    sm1 = velocity_map_kms(sm1, shdr, strict_mom1)
    hyb, err = mom1_with_prior(
        sm1, load(strict_emom1), load(broad_mom1), load(broad_emom1),
        load(broad_mom0, velocity=False), load(broad_emom0, velocity=False),
        load(vfield_prior), vfield_reject_thresh_kms=parse_window_kms(vfield_reject_thresh),
        mom0_thresh=float(mom0_thresh))
    hdr = shdr.copy()
    for key in ("DATAMIN", "DATAMAX", "BTYPE"):
        hdr.remove(key, ignore_missing=True)
    hdr["BUNIT"] = "km / s"
    ehdr = hdr.copy()
    hdr["BTYPE"] = "Moment1"
    ehdr["BTYPE"] = "Moment1 Error"
    for h, a in ((hdr, hyb), (ehdr, err)):
        fin = np.isfinite(a)
        if fin.any():
            h["DATAMAX"] = float(a[fin].max())
            h["DATAMIN"] = float(a[fin].min())
    write_fits(hyb.astype(np.float32), hdr, out_fits, tx=tx)
    write_fits(err.astype(np.float32), ehdr, error_fits, tx=tx)
    res = MomentResult()
    res.products["mom1wprior"] = {"map": str(out_fits), "error": str(error_fits),
                                  "n_finite": int(np.isfinite(hyb).sum()),
                                  "n_filled_from_broad": int((np.isfinite(hyb)
                                                              & ~np.isfinite(sm1)).sum())}
    if vfield_prior is None:
        res.warnings.append("no velocity-field prior: broad mom1 accepted without the "
                            "prior check")
    return res
