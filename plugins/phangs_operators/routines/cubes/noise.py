"""Empirical noise cubes with the PHANGS-ALMA estimator (Leroy et al. 2021, sect. 7.2).

The noise is modelled as separable, sigma(v, y, x) = map(y, x) * spectrum(v), estimated with the
zero-centred median absolute deviation (:func:`mad_zero_centered`) in spatial boxes (map) and
spectral slabs (spectrum), iterated on the normalised data. Because every iteration's estimate
is separable, so is their product: the routine keeps the per-iteration maps and spectra
(:class:`SeparableNoise`) and never holds a full noise cube in memory except when asked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.ndimage as ndi
from astropy.convolution import Gaussian2DKernel, convolve, convolve_fft
from astropy.io import fits
from scipy.signal import savgol_coeffs
from scipy.stats import norm

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.io import (
    PIPELINE_COMMENT,
    CubeInfo,
    OutputTransaction,
    ResultBase,
    block_bytes,
    cube_header,
    read_cube,
    read_mask_cube,
    same_grid,
)

logger = logging.getLogger(__name__)

#: 1 / Phi^-1(3/4): converts a median absolute deviation into a Gaussian sigma.
MAD_TO_STD = 1.482602218505602

#: keyword arguments understood by :func:`make_noise_cube` (the derived key ``noise_kw``).
NOISE_KW = {"box", "spec_box", "substride", "iterations", "bandpass_smooth_window",
            "bandpass_smooth_order", "nThresh", "n_thresh", "do_map", "do_spec"}

#: above this many voxels the reported median noise uses a regular subsample
_EXACT_MEDIAN_VOXELS = 1024**2


def mad_zero_centered(data: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Zero-centred MAD noise estimate of a data set (PHANGS definition).

    sigma_1 = 1.4826 |median(x < 0)|, then sigma = 1.4826 median(|x|) over the x below
    ``norm.isf(0.5 / N) * sigma_1`` (N = number of voxels in ``mask``).

    Parameters
    ----------
    data : numpy.ndarray
        Values (any shape; NaN ignored).
    mask : numpy.ndarray of bool, optional
        True where the data may be used (noise). Default: the finite data.

    Returns
    -------
    float
        The noise estimate, in the unit of ``data`` (NaN when the mask is empty).
    """
    data = np.asarray(data)
    valid = np.isfinite(data)
    if mask is None:
        mask = valid
    else:
        mask = np.asarray(mask, dtype=bool)
    n_data = int(mask.sum())
    mask = mask & valid
    if n_data == 0:
        return float("nan")
    vals = data[mask]
    sig_false = norm.isf(0.5 / n_data)
    neg = vals[vals < 0]
    mad1 = MAD_TO_STD * np.abs(np.median(neg)) if neg.size else np.nan
    sel = vals[vals < sig_false * mad1]
    if sel.size == 0:
        return float("nan")
    return float(MAD_TO_STD * np.abs(np.median(np.abs(sel))))


def _gather(s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """s[row, idx[row]] with idx clipped into range (callers mask invalid positions)."""
    rows = np.arange(s.shape[0])
    return s[rows, np.minimum(np.maximum(idx, 0), s.shape[1] - 1)]


def _kth_abs_prefix(s: np.ndarray, a: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """k-th smallest |x| (0-based) of the sorted prefix ``s[row, :m]`` of each row.

    The prefix holds ``a`` negatives then non-negatives, so |x| is the merge of two sorted
    runs, A_i = -s[a-1-i] and B_j = s[a+j]; the k-th element is found by a vectorised binary
    search on how many elements come from A (no second sort).
    """
    b = m - a
    lo = np.maximum(0, k + 1 - b)
    hi = np.minimum(a, k + 1)
    inf = s.dtype.type(np.inf)
    for _ in range(int(np.ceil(np.log2(max(2, s.shape[1])))) + 2):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi + 1) // 2
        a_prev = -_gather(s, a - mid)  # A[mid-1]
        j = k + 1 - mid
        b_at = np.where(j < b, _gather(s, a + j), inf)  # B[j]
        ok = (mid == 0) | (a_prev <= b_at)
        lo = np.where(active & ok, mid, lo)
        hi = np.where(active & ~ok, mid - 1, hi)
    i = lo
    a_last = np.where(i > 0, -_gather(s, a - i), -inf)
    jj = k - i  # index of the last element taken from B
    b_last = np.where(jj >= 0, _gather(s, a + jj), -inf)
    return np.maximum(a_last, b_last)


def _count_less(s: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Per sorted row (NaN last), the number of entries < t (vectorised binary search)."""
    n = s.shape[1]
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), (s.shape[0],))
    lo = np.zeros(s.shape[0], dtype=np.int64)
    hi = np.full(s.shape[0], n, dtype=np.int64)
    for _ in range(int(np.ceil(np.log2(max(2, n)))) + 2):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        less = _gather(s, mid) < t
        lo = np.where(active & less, mid + 1, lo)
        hi = np.where(active & ~less, mid, hi)
    return lo


def mad_zero_centered_sorted(s: np.ndarray, n_mask: np.ndarray) -> np.ndarray:
    """Row-wise :func:`mad_zero_centered` of rows sorted ascending with NaN (unusable) last.

    Parameters
    ----------
    s : numpy.ndarray, shape (n_sets, n_values)
        Each row sorted (``np.sort``), excluded values set to NaN beforehand.
    n_mask : numpy.ndarray of int, shape (n_sets,)
        Size N of each set's mask (sets the false-positive threshold).

    Returns
    -------
    numpy.ndarray
        One estimate per row, in the dtype of ``s`` (NaN where undefined).
    """
    two = s.dtype.type(2)
    n_neg = _count_less(s, 0.0)
    med_neg = (_gather(s, (n_neg - 1) // 2) + _gather(s, n_neg // 2)) / two
    mad1 = MAD_TO_STD * np.abs(np.where(n_neg > 0, med_neg, np.nan).astype(s.dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        sig_false = norm.isf(0.5 / np.maximum(n_mask, 1))
        thresh = sig_false * mad1
    m = _count_less(s, thresh)
    a = np.minimum(n_neg, m)
    x1 = _kth_abs_prefix(s, a, m, (m - 1) // 2)
    x2 = _kth_abs_prefix(s, a, m, m // 2)
    med = ((x1 + x2) / two).astype(s.dtype)
    return MAD_TO_STD * np.abs(np.where(m > 0, med, np.nan).astype(s.dtype))


def mad_zero_centered_sorted_1d(s: np.ndarray, n_mask: int) -> float:
    """:func:`mad_zero_centered_sorted` for one sorted 1-D array (scalar binary searches,
    no per-step numpy overhead); same result, same dtype arithmetic."""
    dt = s.dtype.type
    two = dt(2)
    n_neg = int(np.searchsorted(s, 0.0, side="left"))
    if n_neg == 0 or n_mask == 0:
        return float("nan")
    med_neg = (s[(n_neg - 1) // 2] + s[n_neg // 2]) / two
    mad1 = dt(MAD_TO_STD) * abs(dt(med_neg))
    thresh = float(norm.isf(0.5 / n_mask)) * float(mad1)
    m = int(np.searchsorted(s, thresh, side="left")) if np.isfinite(thresh) else 0
    # NaN sorts last and is never < thresh; searchsorted treats it the same way
    if m == 0:
        return float("nan")
    a = min(n_neg, m)
    b = m - a

    def kth(k: int):
        lo, hi = max(0, k + 1 - b), min(a, k + 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            j = k + 1 - mid
            if mid == 0 or j >= b or -s[a - mid] <= s[a + j]:
                lo = mid
            else:
                hi = mid - 1
        i = lo
        a_last = -s[a - i] if i > 0 else dt(-np.inf)
        b_last = s[a + k - i] if k - i >= 0 else dt(-np.inf)
        return max(a_last, b_last)

    med = (dt(kth((m - 1) // 2)) + dt(kth(m // 2))) / two
    return float(dt(MAD_TO_STD) * abs(dt(med)))


def mad_zero_centered_rows(values: np.ndarray, usable: np.ndarray, n_mask: np.ndarray
                           ) -> np.ndarray:
    """Row-wise :func:`mad_zero_centered` (vectorised over many independent data sets).

    Parameters
    ----------
    values : numpy.ndarray, shape (n_sets, n_values)
        Data (float32 or float64).
    usable : numpy.ndarray of bool, same shape
        Mask AND finite data.
    n_mask : numpy.ndarray of int, shape (n_sets,)
        Size N of each set's mask (sets the false-positive threshold).
    """
    s = np.sort(np.where(usable, values, values.dtype.type(np.nan)), axis=1)
    return mad_zero_centered_sorted(s, n_mask)


class NoiseSource(Protocol):
    """Anything that returns float32 noise for a block ``[:, y0:y1, :]`` or channels."""

    def rows(self, y0: int, y1: int) -> np.ndarray: ...

    def channels(self, z0: int, z1: int) -> np.ndarray: ...


@dataclass
class SeparableNoise:
    """Product over iterations of separable noise estimates map_i(y, x) * spec_i(v).

    The float32 rounding of the PHANGS code (each iteration's cube rounded to float32, then
    multiplied in float32) is reproduced.
    """

    maps: list[np.ndarray]
    specs: list[np.ndarray]

    def _combine(self, spec_sl: slice, map_sl: tuple[slice, slice]) -> np.ndarray:
        out = None
        for m, s in zip(self.maps, self.specs, strict=True):
            part = (m[map_sl][None, :, :] * s[spec_sl][:, None, None]).astype(np.float32)
            out = part if out is None else out * part
        return out

    def rows(self, y0: int, y1: int) -> np.ndarray:
        return self._combine(slice(None), (slice(y0, y1), slice(None)))

    def channels(self, z0: int, z1: int) -> np.ndarray:
        return self._combine(slice(z0, z1), (slice(None), slice(None)))

    def full(self) -> np.ndarray:
        return self.channels(0, self.specs[0].size)


@dataclass
class ArrayNoise:
    """Noise held in an array (e.g. a memory-mapped noise cube)."""

    data: np.ndarray

    def rows(self, y0: int, y1: int) -> np.ndarray:
        return np.asarray(self.data[:, y0:y1, :], dtype=np.float32)

    def channels(self, z0: int, z1: int) -> np.ndarray:
        return np.asarray(self.data[z0:z1], dtype=np.float32)


@dataclass
class NoiseParams:
    """Resolved noise-estimation parameters (PHANGS defaults filled in)."""

    box: float | None
    spec_box: int | None
    substride: int
    iterations: int
    bandpass_smooth_window: int
    bandpass_smooth_order: int = 3
    n_thresh: int = 30
    do_map: bool = True
    do_spec: bool = True


def resolve_noise_params(shape: tuple[int, int, int], pixels_per_beam: float,
                         **noise_kw: object) -> NoiseParams:
    """Fill the PHANGS defaults for ``noise_kw`` (``recipe_phangs_noise``).

    box = ceil(2.5 sqrt(ppbeam)); substride = max(1, floor(sqrt(4 ppbeam / pi) / 2.5));
    bandpass window = ceil(nchan / 5) // 2 * 2 + 1; spec_box = 5; iterations = 4.
    """
    unknown = set(noise_kw) - NOISE_KW
    if unknown:
        raise CubeError(f"noise_kw: unknown keyword(s) {sorted(unknown)}; known: "
                        f"{sorted(NOISE_KW)}")
    box = noise_kw.get("box", math.ceil(2.5 * math.sqrt(pixels_per_beam)))
    substride = noise_kw.get("substride")
    if substride is None:
        substride = max(1, int(math.floor(math.sqrt(pixels_per_beam * 4.0 / math.pi) / 2.5)))
    window = noise_kw.get("bandpass_smooth_window")
    if window is None:
        window = math.ceil(shape[0] / 5) // 2 * 2 + 1
    return NoiseParams(
        box=None if box is None else float(box),
        spec_box=None if noise_kw.get("spec_box", 5) is None else int(noise_kw.get("spec_box", 5)),
        substride=int(substride),
        iterations=int(noise_kw.get("iterations", 4)),
        bandpass_smooth_window=int(window),
        bandpass_smooth_order=int(noise_kw.get("bandpass_smooth_order", 3)),
        n_thresh=int(noise_kw.get("n_thresh", noise_kw.get("nThresh", 30))),
        do_map=bool(noise_kw.get("do_map", True)),
        do_spec=bool(noise_kw.get("do_spec", True)),
    )


class _NormalisedData:
    """data / (previous iterations' noise), computed block by block in float32."""

    def __init__(self, data: np.ndarray, bad: np.ndarray | None,
                 maps: list[np.ndarray], specs: list[np.ndarray]) -> None:
        self.data, self.bad, self.maps, self.specs = data, bad, maps, specs

    def get(self, zsl: slice, ysl: slice) -> np.ndarray:
        blk = np.array(self.data[zsl, ysl, :], dtype=np.float32)
        if self.bad is not None:
            blk[self.bad[zsl, ysl, :]] = np.nan
        for m, s in zip(self.maps, self.specs, strict=True):
            blk = blk / (m[ysl][None, :, :] * s[zsl][:, None, None]).astype(np.float32)
        return blk


def _noise_map(src: _NormalisedData, noisemask: np.ndarray, boundary: np.ndarray,
               footprint: np.ndarray, p: NoiseParams, shape: tuple[int, int, int]) -> np.ndarray:
    nchan, ny, nx = shape
    pixdim = int(np.ceil(np.sum(np.any(noisemask, axis=0)) ** 0.5))
    step, halfbox = 1, 0
    if p.box is not None:
        step = int(min(np.floor(p.box / 2.5), pixdim // 20))
        halfbox = int(p.box // 2)
    step = max(step, 1)  # the original fails with step 0 on maps < 20 valid pixels across
    noise_map = np.full((ny, nx), np.nan)
    ys = np.arange(ny)[halfbox::step]
    xs = np.arange(nx)[halfbox::step]
    width = 2 * halfbox + 1
    nw = len(range(0, width, p.substride))
    per_row = max(1, nchan * nw * xs.size * nw * 4)
    # ~4 temporaries of the gather size: 1/8 of the cube keeps them below the cube size
    nyb = max(1, block_bytes(shape, 0.125, 48.0) // per_row)
    for b0 in range(0, ys.size, nyb):
        yb = ys[b0:b0 + nyb]
        r0, r1 = int(yb[0] - halfbox), int(yb[-1] + halfbox + 1)
        blk = src.get(slice(None), slice(r0, min(r1, ny)))
        blk[~noisemask[:, r0:min(r1, ny), :]] = np.nan
        # pad with NaN so that boxes running over the upper edges are truncated, as slices are
        pad_y, pad_x = r1 - min(r1, ny), max(0, int(xs[-1]) + halfbox + 1 - nx)
        if pad_y or pad_x:
            blk = np.pad(blk, ((0, 0), (0, pad_y), (0, pad_x)), constant_values=np.nan)
        win = np.lib.stride_tricks.sliding_window_view(blk, (width, width), axis=(1, 2))
        # (nchan, nyb, nxs, nw, nw) -> one copy as (points, voxels)
        win = win[:, ::step, int(xs[0]) - halfbox::step][:, :yb.size, :xs.size,
                                                         ::p.substride, ::p.substride]
        vals = np.ascontiguousarray(win.transpose(1, 2, 0, 3, 4)).reshape(yb.size * xs.size, -1)
        vals.sort(axis=1)
        n_mask = _count_less(vals, np.inf)  # NaN (not noise) sorts last
        mad = mad_zero_centered_sorted(vals, n_mask)
        mad = np.where(n_mask > p.n_thresh, mad, np.nan)
        noise_map[np.ix_(yb, xs)] = mad.reshape(yb.size, xs.size)
    noise_map[boundary] = np.nan
    if halfbox > 0:
        kernel = Gaussian2DKernel(p.box / np.sqrt(8 * np.log(2)))
        pad = int(p.box)
        padded = np.pad(noise_map, pad, "edge")
        padded = convolve_fft(padded, kernel, nan_treatment="interpolate", boundary="wrap")
        noise_map = padded[pad:-pad, pad:-pad]
        noise_map[~footprint] = np.nan
    return noise_map


def _noise_spectrum(src: _NormalisedData, noisemask: np.ndarray, noise_map: np.ndarray,
                    p: NoiseParams, nchan: int) -> np.ndarray:
    boxv = 0 if p.spec_box is None else int(p.spec_box // 2)
    spec = np.full(nchan, np.nan)
    cache: dict[int, np.ndarray] = {}
    for z in range(nchan):
        lowz, hiz = max(z - boxv, 0), min(z + boxv + 1, nchan)
        for k in list(cache):
            if k < lowz:
                del cache[k]
        for k in range(lowz, hiz):
            if k not in cache:
                plane = src.get(slice(k, k + 1), slice(None))[0] / noise_map
                plane[~noisemask[k]] = np.nan
                cache[k] = plane.ravel()
        vals = np.concatenate([cache[k] for k in range(lowz, hiz)])
        vals.sort()
        spec[z] = mad_zero_centered_sorted_1d(vals, int(np.count_nonzero(noisemask[lowz:hiz])))
    if p.bandpass_smooth_window > 0:
        if p.bandpass_smooth_window <= p.bandpass_smooth_order:
            logger.warning("bandpass smoothing window %s <= order %s: not smoothing the "
                           "noise spectrum", p.bandpass_smooth_window, p.bandpass_smooth_order)
        else:
            kernel = savgol_coeffs(int(p.bandpass_smooth_window), int(p.bandpass_smooth_order))
            bad = np.isnan(spec)
            spec = convolve(spec, kernel, nan_treatment="interpolate", boundary="extend")
            spec[bad] = np.nan
            spec /= np.nanmedian(spec)
    return spec


def estimate_noise(data: np.ndarray, params: NoiseParams,
                   signal_mask: np.ndarray | None = None) -> SeparableNoise:
    """Estimate the PHANGS noise model of a cube.

    Parameters
    ----------
    data : numpy.ndarray, shape (nchan, ny, nx)
        The cube (any float dtype; may be a memory map; not modified).
    params : NoiseParams
        See :func:`resolve_noise_params`.
    signal_mask : numpy.ndarray of bool, optional
        True on signal, excluded from the estimate.

    Returns
    -------
    SeparableNoise
        Maps [data unit] and relative spectra of every iteration.
    """
    shape = tuple(data.shape)
    nan = np.isnan(data)
    bad = None
    if nan.any():
        bad = ndi.binary_dilation(nan, structure=ndi.generate_binary_structure(3, 2))
    del nan
    noisemask = np.isfinite(data)
    if bad is not None:
        noisemask &= ~bad
    if signal_mask is not None:
        noisemask &= ~signal_mask
    if bad is not None:
        boundary = np.all(bad | np.isnan(data), axis=0)
    else:
        boundary = np.all(np.isnan(data), axis=0)
    footprint = ~boundary
    maps: list[np.ndarray] = []
    specs: list[np.ndarray] = []
    for it in range(max(1, params.iterations)):
        src = _NormalisedData(data, bad, list(maps), list(specs))
        if params.do_map:
            nmap = _noise_map(src, noisemask, boundary, footprint, params, shape)
        else:
            vals = src.get(slice(None), slice(None))
            nmap = np.full(shape[1:], mad_zero_centered(vals, noisemask))
        if params.do_spec:
            nspec = _noise_spectrum(src, noisemask, nmap, params, shape[0])
        else:
            nspec = np.ones(shape[0])
        maps.append(nmap)
        specs.append(nspec)
        logger.debug("noise iteration %s: median map %s", it, np.nanmedian(nmap))
    return SeparableNoise(maps, specs)


@dataclass
class NoiseResult(ResultBase):
    """Result of :func:`make_noise_cube`."""

    noise_fits: str
    params: dict
    median_noise: float
    mean_noise: float
    noise_map_median: float
    warnings: list[str] = field(default_factory=list)


def write_noise(noise: NoiseSource, cube: CubeInfo, out_fits: str | Path,
                tx: OutputTransaction | None = None) -> tuple[float, float]:
    """Write a noise cube channel block by channel block; returns (median, mean).

    The median is exact up to 1 M voxels and from a regular subsample above.
    """
    nchan = cube.shape[0]
    hdr = cube_header(cube, btype="Noise")
    if isinstance(noise, SeparableNoise):
        # separable model: DATAMIN/DATAMAX from the combined factors (no pass over the cube)
        with np.errstate(invalid="ignore"):
            full_map = np.prod(np.array(noise.maps), axis=0)
            full_spec = np.prod(np.array(noise.specs), axis=0)
        if np.isfinite(full_map).any() and np.isfinite(full_spec).any():
            vals = np.array([np.nanmin(full_map) * np.nanmin(full_spec),
                             np.nanmin(full_map) * np.nanmax(full_spec),
                             np.nanmax(full_map) * np.nanmin(full_spec),
                             np.nanmax(full_map) * np.nanmax(full_spec)])
            hdr["DATAMIN"] = float(vals.min())
            hdr["DATAMAX"] = float(vals.max())
    hdr["COMMENT"] = PIPELINE_COMMENT
    nvox = int(np.prod(cube.shape))
    stride = 1 if nvox <= _EXACT_MEDIAN_VOXELS else nvox // _EXACT_MEDIAN_VOXELS + 1
    zstep = max(1, int(block_bytes(cube.shape, 0.125) // max(1, 4 * cube.shape[1]
                                                              * cube.shape[2])))
    sample = []
    total, count = 0.0, 0
    final = Path(out_fits)
    tmp = tx.path(final) if tx is not None else final.with_name(f".{final.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        shdu = fits.StreamingHDU(tmp, _streaming_header(hdr, cube.shape))
        for z0 in range(0, nchan, zstep):
            blk = noise.channels(z0, min(nchan, z0 + zstep))
            fin = blk[np.isfinite(blk)]
            total += float(fin.sum(dtype=np.float64))
            count += fin.size
            sample.append(fin[::stride].copy())
            del fin
            shdu.write(blk.astype(">f4"))
        shdu.close()
        if tx is None:
            tmp.replace(final)
    finally:
        if tx is None:
            tmp.unlink(missing_ok=True)
    allv = np.concatenate(sample) if sample else np.array([np.nan])
    return float(np.median(allv)), (total / count if count else float("nan"))


def _streaming_header(hdr: fits.Header, shape: tuple[int, int, int]) -> fits.Header:
    out = fits.Header()
    out["SIMPLE"] = True
    out["BITPIX"] = -32
    out["NAXIS"] = 3
    out["NAXIS1"] = shape[2]
    out["NAXIS2"] = shape[1]
    out["NAXIS3"] = shape[0]
    for card in hdr.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3",
                            "EXTEND", "END"):
            continue
        out.append(card)
    return out


def make_noise_cube(in_fits: str | Path, out_fits: str | Path, *,
                    signal_mask_fits: str | Path | None = None,
                    tx: OutputTransaction | None = None,
                    **noise_kw: object) -> NoiseResult:
    """Estimate and write the noise cube of ``in_fits`` (PHANGS ``recipe_phangs_noise``).

    Parameters
    ----------
    in_fits : str or Path
        Input cube (K, velocity axis, beam).
    out_fits : str or Path
        Output noise cube (same grid, same unit, float32).
    signal_mask_fits : str or Path, optional
        0/1 cube on the same grid marking signal to exclude.
    tx : OutputTransaction, optional
        Stage the file in a transaction instead of writing it atomically at once.
    **noise_kw
        ``box`` [pixels], ``spec_box`` [channels], ``substride`` [pixels], ``iterations``,
        ``bandpass_smooth_window`` [channels], ``bandpass_smooth_order``, ``nThresh``,
        ``do_map``, ``do_spec`` (PHANGS defaults, see :func:`resolve_noise_params`).

    Returns
    -------
    NoiseResult
    """
    cube = read_cube(in_fits)
    noise, params = noise_model(cube, signal_mask_fits=signal_mask_fits, **noise_kw)
    med, mean = write_noise(noise, cube, out_fits, tx=tx)
    return NoiseResult(noise_fits=str(out_fits), params=vars(params), median_noise=med,
                       mean_noise=mean,
                       noise_map_median=float(np.nanmedian(noise.rows(0, cube.shape[1])[0])))


def noise_model(cube: CubeInfo, *, signal_mask_fits: str | Path | None = None,
                **noise_kw: object) -> tuple[SeparableNoise, NoiseParams]:
    """The noise model of an already-read cube (no file written)."""
    params = resolve_noise_params(cube.shape, cube.pixels_per_beam, **noise_kw)
    signal = read_mask_cube(signal_mask_fits, cube) if signal_mask_fits else None
    return estimate_noise(cube.data, params, signal_mask=signal), params


def read_noise(path: str | Path, cube: CubeInfo) -> ArrayNoise:
    """Open a noise cube and check that it is on the grid of ``cube`` (CubeError if not)."""
    info = read_cube(path, require_beam=False, require_finite=True)
    if not same_grid(info.header, cube.header, info.shape, cube.shape):
        raise CubeError(f"{path}: noise grid {info.shape} does not match the cube "
                        f"{cube.path} {cube.shape}")
    return ArrayNoise(info.data)
