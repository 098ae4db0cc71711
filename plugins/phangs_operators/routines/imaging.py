"""Imaging of staged measurement sets: PHANGS recipe, clean loops and channel chunks.

Re-implements PHANGS ``ImagingHandler`` / ``casaImagingRoutines`` / ``ImagingChunkedHandler``
(PHANGS_REFERENCE §2.2, §4) for casatasks 6.7:

* :func:`image_geometry`: cell from the synthesized beam (``oversamp`` pixels per beam,
  PHANGS rounding), FFT-friendly image size covering every pointing down to ``pblevel``,
  phase centre (given, or the centre of the pointings); overrides honoured.
* :func:`make_dirty_cube` (``niter=0``), :func:`clean_cube` (dirty -> noise -> optional
  clean mask -> multiscale loop to 4 sigma -> signal mask -> single-scale loop to 1 sigma;
  per-loop record written as JSON), :func:`clean_continuum` (the same in ``mfs``/``mtmfs``).
* :func:`plan_chunks`, :func:`image_chunk` (integer ``start``/``nchan``, ``width=1``,
  ``interpolation='nearest'``, per-plane restoring beam, thresholds from the whole cube's
  noise), :func:`gather_chunks` (``ia.imageconcat`` of every product).

Every routine writes into a private temporary directory next to the output and moves the
products to ``<root><ext>`` at the end, ``.image`` last, so a half-written run is never taken
for a finished one; a rerun whose ``<root>.image`` exists does nothing unless
``overwrite=True``.

Cube conventions: cubes are imaged in channel mode on the staged (already LSRK-regridded)
measurement set with ``interpolation='nearest'`` (exact on such an MS; ``'linear'`` empties
the last channel of the last chunk, CASA_NOTES §7), so chunked and monolithic runs share one
channel grid.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import erfc

from phangs_operators.casa import casa_session, casatasks, casatools
from phangs_operators.errors import ImagingError
from phangs_operators.routines.recipes import (
    CONTINUUM_SCHEDULE,
    CleanSchedule,
    sanitize_tclean_kwargs,
    with_defaults,
)

log = logging.getLogger(__name__)

ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
C_M_S = 299792458.0
#: image products tclean writes for a cube (``.weight`` only for mosaic/awproject gridders)
CUBE_EXTS = (".image", ".residual", ".psf", ".pb", ".model", ".mask", ".weight", ".sumwt")
#: products gathered from chunks (``.weight`` too when every chunk has it)
GATHER_EXTS = (".image", ".residual", ".psf", ".pb", ".model", ".mask", ".weight")
MTMFS_EXTS = tuple(f"{b}.tt{i}" for b in (".image", ".residual", ".psf", ".model", ".pb", ".weight", ".sumwt")
                   for i in range(3)) + (".mask", ".alpha", ".alpha.error", ".beta", ".beta.error")


# ---------------------------------------------------------------------------------------
# Pure helpers: geometry, scales, chunks, noise, signal mask
# ---------------------------------------------------------------------------------------


def fft_friendly_sizes() -> np.ndarray:
    """Sorted image sizes ``2^(i+1) 5^j 3^k`` (i < 10, j < 3, k < 3) that FFT fast."""
    sizes = {2 ** (i + 1) * 5**j * 3**k for i in range(10) for j in range(3) for k in range(3)}
    return np.array(sorted(sizes))


def fft_size_above(ncells: float) -> int:
    """Smallest FFT-friendly size strictly greater than ``ncells``."""
    sizes = fft_friendly_sizes()
    bigger = sizes[sizes > ncells]
    if bigger.size == 0:
        raise ImagingError(f"image of {ncells:.0f} pixels is larger than the largest supported size {sizes[-1]}")
    return int(bigger[0])


def round_cell_arcsec(cell: float) -> float:
    """Round a cell size (arcsec) *down* to a PHANGS "nice" value.

    < 0.01 unchanged; [0.01, 0.05) to 0.005; [0.05, 0.1) to 0.01; [0.1, 0.5) to 0.05;
    [0.5, 1) to 0.1; [1, 2) to 0.25; [2, 5) to 0.5; >= 5 to ``floor(x) * 0.5`` (the original
    halves large cells; kept, it only oversamples). A 1e-9 relative tolerance keeps exact
    multiples (0.3 -> 0.3, not 0.25 from 0.3/0.05 = 5.999...).
    """
    steps = ((0.05, 0.005), (0.1, 0.01), (0.5, 0.05), (1.0, 0.1), (2.0, 0.25), (5.0, 0.5))
    if cell < 0.01:
        return float(cell)
    for upper, step in steps:
        if cell < upper:
            return round(math.floor(cell / step * (1 + 1e-9)) * step, 9)
    return round(math.floor(cell * (1 + 1e-9)) * 0.5, 9)


def cell_and_imsize(
    beam_cell_arcsec: float, beam_imsize: Sequence[int], force_square: bool = False
) -> tuple[float, list[int]]:
    """PHANGS ``estimate_cell_and_imsize`` given a raw cell and image size (analysisUtils style).

    extent = raw cell * raw size * 1.2 per axis; cell = :func:`round_cell_arcsec`; size =
    smallest FFT-friendly size strictly greater than extent / cell.
    """
    cell = round_cell_arcsec(beam_cell_arcsec)
    sizes = [fft_size_above(beam_cell_arcsec * n * 1.2 / cell) for n in beam_imsize[:2]]
    if force_square:
        sizes = [max(sizes)] * 2
    return cell, sizes


def multiscale_pixels(scales_arcsec: Sequence[float], cell_arcsec: float) -> list[int]:
    """Multiscale scales in pixels: ``int(scale / cell)`` (truncation as PHANGS; 1e-9 tolerance).

    ``[0, 1, 2.5, 5, 10]`` arcsec at 0.25 arcsec -> ``[0, 4, 10, 20, 40]``.
    """
    return [int(s / cell_arcsec * (1 + 1e-9)) for s in scales_arcsec]


def plan_chunks(nchan: int, chunk_size: int) -> list[dict[str, int]]:
    """Split ``nchan`` channels into consecutive chunks of ``chunk_size`` (last one shorter).

    Returns ``[{'index', 'start', 'end', 'nchan'}, ...]`` with inclusive ``end``; e.g.
    (25, 10) -> starts 0, 10, 20 / ends 9, 19, 24. ``nchan == chunk_size`` gives one chunk
    (the original returned None and failed).
    """
    if int(nchan) != nchan or nchan < 1:
        raise ImagingError(f"plan_chunks: nchan must be a positive integer, got {nchan!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ImagingError(f"plan_chunks: chunk_size must be a positive integer, got {chunk_size!r}")
    starts = range(0, int(nchan), int(chunk_size))
    return [
        {"index": i, "start": s, "end": min(s + int(chunk_size), int(nchan)) - 1,
         "nchan": min(s + int(chunk_size), int(nchan)) - s}
        for i, s in enumerate(starts)
    ]


def chunk_root(root: str | os.PathLike[str], start: int, nchan: int) -> str:
    """PHANGS chunk image root ``{root}_chan{start}_{end}`` (inclusive end)."""
    return f"{os.fspath(root)}_chan{int(start)}_{int(start) + int(nchan) - 1}"


def mad_sigma(data: np.ndarray) -> float:
    """Median absolute deviation about the median, scaled to a Gaussian sigma (/0.6745)."""
    med = np.median(data)
    return float(np.median(np.abs(data - med)) / 0.6745)


def chauvenet_mad_noise(data: np.ndarray, mask: np.ndarray | None = None, niter: int = 5) -> float:
    """PHANGS ``chauvmad`` noise: Chauvenet rejection with a MAD sigma, then the std.

    Each of ``niter`` passes keeps values with ``erfc(|x - mean| / (sigma sqrt 2)) >
    1 / (2 N)``. Non-finite values and ``mask == False`` are ignored.

    Raises
    ------
    ImagingError
        Fewer than two valid values, or everything rejected.
    """
    values = np.asarray(data, dtype=np.float64)
    ok = np.isfinite(values)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    use = values[ok]
    if use.size < 2:
        raise ImagingError("noise estimate: fewer than two valid pixels")
    for _ in range(int(niter)):
        sigma = mad_sigma(use)
        if sigma == 0.0:
            raise ImagingError("noise estimate: zero MAD (constant data)")
        keep = erfc(np.abs(use - use.mean()) / sigma / math.sqrt(2.0)) > 1.0 / (2.0 * use.size)
        if not keep.any():
            raise ImagingError("noise estimate: outlier rejection removed every pixel")
        use = use[keep]
    return float(np.std(use))


def _shift_or(mask: np.ndarray, axis: int) -> np.ndarray:
    """``mask`` OR-ed with its +-1 shifts along ``axis`` (no wrap-around at the edges)."""
    out = mask.copy()
    n = mask.shape[axis]
    if n < 2:
        return out
    lo = [slice(None)] * mask.ndim
    hi = [slice(None)] * mask.ndim
    lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
    out[tuple(lo)] |= mask[tuple(hi)]
    out[tuple(hi)] |= mask[tuple(lo)]
    return out


def signal_mask_array(
    cube: np.ndarray, rms: float, high_snr: float = 4.0, low_snr: float = 2.0, spec_axis: int | None = None,
    absolute: bool = False,
) -> np.ndarray:
    """PHANGS single-scale signal mask of a cube (boolean, same shape).

    ``high = cube > high_snr rms``; ``low = cube > low_snr rms``, OR-ed with its +-1 channel
    neighbours when ``spec_axis`` is given; the mask is ``high`` dilated inside ``low``
    (``binary_dilation(high, mask=low, iterations=-1)``). Neighbours do not wrap around the
    band edges (the original's ``np.roll`` did; a chunk must not see the other end).
    """
    c = np.abs(cube) if absolute else np.asarray(cube)
    with np.errstate(invalid="ignore"):
        high = np.nan_to_num(c, nan=-np.inf) > high_snr * rms
        if high_snr <= low_snr:
            return _shift_or(high, spec_axis) if spec_axis is not None else high
        low = np.nan_to_num(c, nan=-np.inf) > low_snr * rms
    if spec_axis is not None:
        low = _shift_or(low, spec_axis)
    if not high.any():
        return high
    return ndimage.binary_dilation(high, mask=low, iterations=-1)


def pb_radius_arcsec(freq_hz: float, dish_m: float, pblevel: float) -> float:
    """Radius (arcsec) where a Gaussian primary beam of FWHM ``1.13 lambda / D`` drops to ``pblevel``."""
    fwhm = 1.13 * C_M_S / freq_hz / dish_m * ARCSEC_PER_RAD
    return fwhm / 2.0 * math.sqrt(math.log(1.0 / pblevel) / math.log(2.0))


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class ImagingResult:
    """Outcome of an imaging step (JSON-serialisable through :meth:`to_dict`).

    Attributes
    ----------
    root : str
        Image root; products are ``root + ext``.
    products : dict
        Extension -> path of every product written (and backups ``_dirty`` etc.).
    skipped : bool
        The output existed and nothing was done.
    nchan : int
        Channels of the image.
    beam_major_arcsec, beam_minor_arcsec, beam_pa_deg : float
        Median per-plane (or the single) restoring beam.
    noise_jy : float or None
        Noise (Jy/beam) of the dirty residual (chauvmad) or the one passed in.
    stages : dict
        Per stage (``multiscale``, ``singlescale``, ``clean``): list of loop records.
    record_json : str or None
        The loop record file.
    """

    root: str
    products: dict[str, str] = field(default_factory=dict)
    skipped: bool = False
    nchan: int = 0
    start: int | None = None
    imsize: list[int] = field(default_factory=list)
    cell_arcsec: float | None = None
    beam_major_arcsec: float | None = None
    beam_minor_arcsec: float | None = None
    beam_pa_deg: float | None = None
    noise_jy: float | None = None
    model_flux_jy: float | None = None
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    singlescale_mask_pixels: int | None = None
    record_json: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return json.loads(json.dumps(asdict(self), default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return str(obj)


def _finite(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


# ---------------------------------------------------------------------------------------
# CASA helpers
# ---------------------------------------------------------------------------------------


def _require_ms(ms: str | os.PathLike[str]) -> Path:
    p = Path(ms)
    if not (p.is_dir() and (p / "table.dat").exists()):
        raise ImagingError(f"measurement set {str(p)!r} not found (or not a CASA table)")
    return p.resolve()


def _require_image(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not (p.is_dir() and (p / "table.dat").exists()):
        raise ImagingError(f"CASA image {str(p)!r} not found")
    return p.resolve()


def image_geometry(
    ms: str | os.PathLike[str],
    *,
    oversamp: float = 5.0,
    pblevel: float = 0.2,
    phasecenter: str | None = None,
    cell_arcsec: float | None = None,
    imsize: Sequence[int] | int | None = None,
    force_square: bool = False,
    baseline_percentile: float = 80.0,
    max_rows: int = 2_000_000,
) -> dict[str, Any]:
    """Cell, image size and phase centre for imaging ``ms``.

    The synthesized beam is estimated as ``0.574 lambda / L80`` (L80 = 80th percentile of
    the projected baselines, ALMA Technical Handbook; analysisUtils is not available), the raw
    cell is beam / ``oversamp``; the raw extent covers every pointing (offsets from the phase
    centre) plus the primary-beam radius at ``pblevel`` of the smallest dish
    (``1.13 lambda / D``); then :func:`cell_and_imsize` applies the PHANGS rounding and the
    1.2 margin.

    Parameters
    ----------
    ms : path
        Staged measurement set.
    oversamp : float
        Pixels per beam.
    pblevel : float
        Primary-beam level the image must reach around the outer pointings.
    phasecenter : str, optional
        ``'J2000 12h00m00.0s -30d00m00.0s'``; default: centre of the pointings.
    cell_arcsec, imsize : optional
        Overrides (imsize forced even).
    force_square : bool
        Same size on both axes.

    Returns
    -------
    dict
        ``cell`` (``'0.5arcsec'``), ``cell_arcsec``, ``imsize`` ``[nx, ny]``, ``phasecenter``,
        ``beam_estimate_arcsec``, ``extent_arcsec`` ``[x, y]``, ``freq_ghz``, ``dish_m``,
        ``nfields``.
    """
    from phangs_operators.routines.vis import format_angle_dms, format_angle_hms

    p = _require_ms(ms)
    ct = casatools()
    tb = ct.table()
    md = ct.msmetadata()
    try:
        tb.open(str(p))
        nrow = tb.nrows()
        if nrow == 0:
            raise ImagingError(f"measurement set {str(p)!r} has no rows")
        incr = max(1, nrow // max_rows)
        uvw = tb.getcol("UVW", 0, -1, incr)
        flag_row = tb.getcol("FLAG_ROW", 0, -1, incr)
    finally:
        tb.close()
    try:
        md.open(str(p))
        freq_hz = float(np.mean([md.meanfreq(s) for s in range(md.nspw())]))
        nfield = md.nfields()
        dirs = [md.phasecenter(i) for i in range(nfield)]
        tb.open(str(p / "ANTENNA"))
        dish_m = float(np.min(tb.getcol("DISH_DIAMETER")))
        tb.close()
    finally:
        md.close()
    uvdist = np.hypot(uvw[0], uvw[1])[~flag_row.astype(bool)]
    uvdist = uvdist[uvdist > 0]
    if uvdist.size == 0:
        raise ImagingError(f"measurement set {str(p)!r}: no unflagged baselines")
    lam = C_M_S / freq_hz
    beam_arcsec = 0.574 * lam / float(np.percentile(uvdist, baseline_percentile)) * ARCSEC_PER_RAD
    ra = np.array([d["m0"]["value"] for d in dirs])
    dec = np.array([d["m1"]["value"] for d in dirs])
    if phasecenter:
        me = ct.measures()
        qa = ct.quanta()
        parts = phasecenter.split()
        if len(parts) != 3:
            raise ImagingError(f"phasecenter {phasecenter!r} is not 'FRAME RA DEC'")
        d = me.direction(parts[0], parts[1], parts[2])
        ra0 = qa.convert(d["m0"], "rad")["value"]
        dec0 = qa.convert(d["m1"], "rad")["value"]
        pc = phasecenter
    else:
        # centre of the pointings (RA offsets unwrapped around the first field)
        dra = np.angle(np.exp(1j * (ra - ra[0])))
        ra0 = float(ra[0] + (dra.max() + dra.min()) / 2.0)
        dec0 = float((dec.max() + dec.min()) / 2.0)
        pc = f"J2000 {format_angle_hms(ra0)} {format_angle_dms(dec0)}"
    dx = np.angle(np.exp(1j * (ra - ra0))) * math.cos(dec0) * ARCSEC_PER_RAD
    dy = (dec - dec0) * ARCSEC_PER_RAD
    r_pb = pb_radius_arcsec(freq_hz, dish_m, pblevel)
    extent = [2.0 * (float(np.abs(dx).max()) + r_pb), 2.0 * (float(np.abs(dy).max()) + r_pb)]
    raw_cell = beam_arcsec / oversamp
    cell, size = cell_and_imsize(raw_cell, [math.ceil(e / raw_cell) for e in extent], force_square)
    if cell_arcsec is not None:
        cell = float(cell_arcsec)
        size = [fft_size_above(e * 1.2 / cell) for e in extent]
        if force_square:
            size = [max(size)] * 2
    if imsize is not None:
        sz = [int(imsize)] * 2 if np.isscalar(imsize) else [int(v) for v in imsize]
        if len(sz) == 1:
            sz = sz * 2
        size = [v + (v % 2) for v in sz[:2]]
    geom = {
        "cell": f"{cell}arcsec", "cell_arcsec": cell, "imsize": size, "phasecenter": pc,
        "beam_estimate_arcsec": beam_arcsec, "extent_arcsec": extent, "freq_ghz": freq_hz / 1e9,
        "dish_m": dish_m, "nfields": int(nfield), "pblevel": pblevel, "oversamp": oversamp,
    }
    log.info("image geometry of %s: %s", p.name, geom)
    return geom


def _read_pixels(ia: Any, image: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixel values and pixel mask (True = good) of a CASA image, degenerate axes dropped.

    ``ia`` is a casatools image tool; it is opened on ``image`` and closed again.
    """
    try:
        ia.open(str(image))
        data = ia.getchunk(dropdeg=True)
        pmask = ia.getchunk(getmask=True, dropdeg=True)
    finally:
        ia.close()
    return data, pmask


def measure_noise(image: str | os.PathLike[str], niter: int = 5) -> float:
    """PHANGS ``chauvmad`` noise (Jy/beam) of a CASA image (its pixel mask respected)."""
    p = _require_image(image)
    data, pmask = _read_pixels(casatools().image(), p)
    try:
        return chauvenet_mad_noise(data, pmask, niter=niter)
    except ImagingError as exc:
        raise ImagingError(f"noise of {str(p)!r}: {exc}") from None


def _image_sum(image: Path) -> float:
    ia = casatools().image()
    try:
        ia.open(str(image))
        data = ia.getchunk(dropdeg=True)
    finally:
        ia.close()
    return float(np.nansum(data))


def read_beam(image: str | os.PathLike[str]) -> dict[str, Any]:
    """Restoring beam(s) of an image: median major/minor (arcsec), PA (deg), per-plane majors."""
    ia = casatools().image()
    qa = casatools().quanta()
    try:
        ia.open(str(_require_image(image)))
        rb = ia.restoringbeam()
    finally:
        ia.close()

    def _one(b: Mapping[str, Any]) -> tuple[float, float, float]:
        return (
            qa.convert(b["major"], "arcsec")["value"], qa.convert(b["minor"], "arcsec")["value"],
            qa.convert(b["positionangle"], "deg")["value"],
        )

    if not rb:
        return {"major": None, "minor": None, "pa": None, "per_plane_major": []}
    if "beams" in rb:
        beams = [_one(rb["beams"][f"*{i}"]["*0"]) for i in range(rb["nChannels"])]
        arr = np.array(beams)
        return {"major": float(np.median(arr[:, 0])), "minor": float(np.median(arr[:, 1])),
                "pa": float(np.median(arr[:, 2])), "per_plane_major": arr[:, 0].tolist()}
    b = _one(rb)
    return {"major": b[0], "minor": b[1], "pa": b[2], "per_plane_major": [b[0]]}


def _image_nchan(image: Path) -> int:
    axis, shape = _spectral_axis_and_shape(image)
    return 1 if axis is None else int(shape[axis])


def _spectral_axis(image: Path) -> int | None:
    return _spectral_axis_and_shape(image)[0]


def _spectral_axis_and_shape(image: Path) -> tuple[int | None, list[int]]:
    """Pixel axis of the spectral coordinate (None if the image has none) and the image shape."""
    ia = casatools().image()
    try:
        ia.open(str(image))
        cs = ia.coordsys()
        spec = cs.findcoordinate("spectral")
        shape = [int(x) for x in ia.shape()]
        cs.done()
    finally:
        ia.close()
    return (int(spec["pixel"][0]) if spec["return"] else None), shape


def align_clean_mask(
    in_mask: str | os.PathLike[str], template: str | os.PathLike[str], out_mask: str | os.PathLike[str],
    *, workdir: str | os.PathLike[str] | None = None, overwrite: bool = False,
) -> str:
    """Align a clean mask (FITS or CASA image) onto the grid of ``template`` (PHANGS ``import_and_align_mask``).

    A 3-D mask is collapsed with ``max`` over frequency when the template is 2-D; the mask is
    regridded with ``imregrid(interpolation='nearest', asvelocity=True)``, written into an
    exact copy of the template grid as 0/1, and blanked (0) where the template is masked.

    Returns
    -------
    str
        ``out_mask`` path.
    """
    src = Path(in_mask).resolve()
    tpl = _require_image(template)
    out = Path(out_mask).resolve()
    if not src.exists():
        raise ImagingError(f"clean mask {str(src)!r} not found")
    if out.exists() and not overwrite:
        return str(out)
    work = Path(workdir or out.parent).resolve() / f".align_{out.name}_{uuid.uuid4().hex[:8]}"
    ct = casatools()
    cta = casatasks()
    with casa_session(work, work / "casa.log"):
        if src.is_file():
            imported = work / "mask_in.image"
            cta.importfits(fitsimage=str(src), imagename=str(imported), overwrite=True)
        else:
            imported = src
        ia = ct.image()
        ia.open(str(tpl))
        tshape = list(ia.shape())
        tmask = ia.getchunk(getmask=True)
        ia.close()
        ia.open(str(imported))
        mshape = list(ia.shape())
        ia.close()
        t2d = int(np.prod(tshape)) == int(np.prod(tshape[:2]))
        m2d = int(np.prod(mshape)) == int(np.prod(mshape[:2]))
        source = imported
        if t2d and not m2d:
            collapsed = work / "mask_collapsed.image"
            ia.open(str(imported))
            ia.collapse(outfile=str(collapsed), function="max", axes=list(range(2, len(mshape)))).done()
            ia.close()
            source = collapsed
        aligned = work / "mask_aligned.image"
        cta.imregrid(imagename=str(source), template=str(tpl), output=str(aligned), asvelocity=True,
                     interpolation="nearest", replicate=False, overwrite=True)
        ia.open(str(aligned))
        vals = ia.getchunk()
        ia.close()
        if list(vals.shape) != tshape:
            if vals.size == int(np.prod(tshape)):
                vals = vals.reshape(tshape, order="F")
            elif t2d or m2d:
                vals = np.broadcast_to(vals.reshape(vals.shape[:2] + (1,) * (len(tshape) - 2)), tshape)
            else:
                raise ImagingError(f"aligned mask shape {vals.shape} does not match template {tshape}")
        maskvals = ((np.nan_to_num(vals) > 0.5) & tmask).astype(np.float32)
        tmp = work / "mask_out.image"
        ia.open(str(tpl))
        ia.newimagefromimage(infile=str(tpl), outfile=str(tmp), overwrite=True).done()
        ia.close()
        ia.open(str(tmp))
        ia.putchunk(maskvals)
        ia.done()
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    return str(out)


def write_signal_mask(
    root: str | os.PathLike[str], rms: float, *, high_snr: float, low_snr: float, roll: bool,
    operation: str = "AND", suffix: str = "",
) -> int:
    """Build the PHANGS signal mask of ``root.image{suffix}`` into ``root.mask`` (AND/OR with it).

    Returns the number of masked pixels.
    """
    image = _require_image(f"{os.fspath(root)}.image{suffix}")
    mask_path = Path(f"{os.fspath(root)}.mask")
    ia = casatools().image()
    spec_axis = _spectral_axis(image) if roll else None
    try:
        ia.open(str(image))
        cube = ia.getchunk()
    finally:
        ia.close()
    new = signal_mask_array(cube, rms, high_snr, low_snr, spec_axis=spec_axis)
    del cube
    if mask_path.exists():
        ia.open(str(mask_path))
        try:
            old = ia.getchunk() > 0.5
            if operation == "AND":
                new &= old
            elif operation == "OR":
                new |= old
            ia.putchunk(new.astype(np.float32))
        finally:
            ia.close()
    else:
        ia.open(str(image))
        ia.newimagefromimage(infile=str(image), outfile=str(mask_path), overwrite=True).done()
        ia.close()
        ia.open(str(mask_path))
        try:
            ia.putchunk(new.astype(np.float32))
        finally:
            ia.close()
    return int(new.sum())


def _copy_products(src_root: str, dst_root: str, exts: Sequence[str]) -> None:
    for ext in exts:
        s = Path(src_root + ext)
        d = Path(dst_root + ext)
        if d.exists():
            shutil.rmtree(d)
        if s.exists():
            shutil.copytree(s, d, symlinks=True)


def _run_tclean(kw: Mapping[str, Any]) -> dict[str, Any]:
    tclean = casatasks().tclean
    clean_kw, _ = sanitize_tclean_kwargs(kw, tclean)
    log.debug("tclean(%s)", clean_kw)
    try:
        summary = tclean(**clean_kw)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ImagingError(f"tclean on {clean_kw.get('vis')!r} -> {clean_kw.get('imagename')!r} failed: {exc}") from exc
    return summary if isinstance(summary, dict) else {}


#: tclean stop codes of a diverging deconvolution: the peak residual grew by more than 3x since
#: the previous major cycle (5) or since the minimum reached (6)
DIVERGED_STOPCODES = (5, 6)


def _model_images(root: str) -> list[Path]:
    """The model image(s) of an imaging root (``.model``, or ``.model.tt0``/``.tt1`` for mtmfs)."""
    base = Path(root + ".model")
    return [p for p in sorted(base.parent.glob(base.name + "*")) if p.is_dir() and not p.name.endswith(".prev")]


def _snapshot_models(root: str) -> list[tuple[Path, Path]]:
    pairs = []
    for model in _model_images(root):
        prev = model.with_name(model.name + ".prev")
        shutil.rmtree(prev, ignore_errors=True)
        shutil.copytree(model, prev)
        pairs.append((model, prev))
    return pairs


def _stopcode(summary: Mapping[str, Any]) -> int | None:
    code = summary.get("stopcode")
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# The imaging engine shared by dirty / clean / chunk routines
# ---------------------------------------------------------------------------------------


@dataclass
class _Job:
    ms: Path
    final_root: str
    tmp_root: str
    kw: dict[str, Any]
    suffix: str
    mfs: bool
    nchan: int


def _prepare(
    ms: str | os.PathLike[str], imagename_root: str | os.PathLike[str], geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None, restfreq_ghz: float | None, start: int | None, nchan: int | None,
    per_plane_beam: bool,
) -> tuple[Path, str, dict[str, Any], bool, int]:
    p = _require_ms(ms)
    final_root = str(Path(imagename_root).resolve())
    kw = with_defaults(tclean_kw)
    if geometry is None:
        geometry = image_geometry(p)
    for key in ("imsize", "cell", "phasecenter"):
        if key not in geometry:
            raise ImagingError(f"geometry for {final_root!r} lacks {key!r}")
    from phangs_operators.routines.vis import ms_has_column, read_nchan

    kw.update(vis=str(p), imsize=list(geometry["imsize"]), cell=geometry["cell"], phasecenter=geometry["phasecenter"],
              datacolumn="corrected" if ms_has_column(p, "CORRECTED_DATA") else "data", parallel=False,
              interactive=False)
    specmode = str(kw.get("specmode", "cube"))
    kw["specmode"] = specmode
    mfs = specmode == "mfs"
    if mfs:
        kw.setdefault("deconvolver", "mtmfs")
        n = 1
    else:
        total = read_nchan(p)
        s0 = 0 if start is None else int(start)
        n = total - s0 if nchan is None else int(nchan)
        if s0 < 0 or n < 1 or s0 + n > total:
            raise ImagingError(
                f"channel range start={s0} nchan={n} is outside the {total} channels of {str(p)!r}"
            )
        kw.update(start=s0, nchan=n, width=1, interpolation="nearest")
        if restfreq_ghz is not None:
            kw["restfreq"] = f"{float(restfreq_ghz):.9f}GHz"
        kw.setdefault("outframe", "LSRK")
        kw.setdefault("veltype", "radio")
        if per_plane_beam:
            kw["restoringbeam"] = ""
    kw["_geometry"] = dict(geometry)
    return p, final_root, kw, mfs, n


def _publish(tmp_root: str, final_root: str, overwrite: bool) -> dict[str, str]:
    """Move every ``tmp_root*`` product to ``final_root*``; ``.image`` (or ``.image.tt0``) last."""
    tmp_dir = Path(tmp_root).parent
    base = Path(tmp_root).name
    names = sorted(p.name for p in tmp_dir.iterdir() if p.name.startswith(base))
    last = [n for n in names if n in (f"{base}.image", f"{base}.image.tt0")]
    ordered = [n for n in names if n not in last] + last
    products: dict[str, str] = {}
    for n in ordered:
        tail = n[len(base):]
        dst = Path(final_root + tail)
        if dst.exists():
            if not overwrite:
                raise ImagingError(f"{str(dst)!r} appeared while imaging; refusing to replace it")
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(tmp_dir / n, dst)
        products[tail] = str(dst)
    return products


def _finished(final_root: str, mfs: bool) -> bool:
    return Path(final_root + (".image.tt0" if mfs else ".image")).is_dir()


def _remove_existing(final_root: str) -> None:
    parent = Path(final_root).parent
    base = Path(final_root).name
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        tail = p.name[len(base):]
        if p.name.startswith(base) and (tail.startswith(".") or tail.startswith("_dirty.")
                                        or tail.startswith("_multiscale.") or tail.startswith("_singlescale.")
                                        or tail == "_record.json"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _existing_result(final_root: str, mfs: bool) -> ImagingResult:
    res = ImagingResult(root=final_root, skipped=True)
    parent = Path(final_root).parent
    base = Path(final_root).name
    for p in sorted(parent.iterdir()):
        if p.name.startswith(base + "."):
            res.products[p.name[len(base):]] = str(p)
    img = Path(final_root + (".image.tt0" if mfs else ".image"))
    res.nchan = _image_nchan(img)
    b = read_beam(img)
    res.beam_major_arcsec, res.beam_minor_arcsec, res.beam_pa_deg = b["major"], b["minor"], b["pa"]
    rec = Path(final_root + "_record.json")
    if rec.exists():
        data = json.loads(rec.read_text())
        res.stages = data.get("stages", {})
        res.noise_jy = data.get("noise_jy")
        res.model_flux_jy = data.get("model_flux_jy")
        res.record_json = str(rec)
    return res


def _clean_loop(
    job: _Job, stage: str, *, deconvolver: str, scales: Sequence[int] | None, snr: float, schedule: CleanSchedule,
    fixed_noise: float | None, stop_at_negative: bool, usemask: str, pbmask: float | None,
) -> list[dict[str, Any]]:
    """PHANGS ``clean_loop``: release growing niter until the model flux converges."""
    records: list[dict[str, Any]] = []
    residual = Path(job.tmp_root + ".residual" + job.suffix)
    model = Path(job.tmp_root + ".model" + job.suffix)
    prev_flux = _image_sum(model) if model.exists() else 0.0
    for loop in range(schedule.max_loops):
        noise = fixed_noise if fixed_noise is not None else measure_noise(residual)
        threshold = snr * noise
        kw = dict(job.kw)
        kw.update(
            imagename=job.tmp_root, deconvolver=deconvolver, niter=schedule.niter(job.nchan, loop),
            cycleniter=schedule.cycleniter(loop), threshold=f"{threshold:.10g}Jy", restart=True,
            calcres=False, calcpsf=False, usemask=usemask, mask="",
        )
        if scales is not None:
            kw["scales"] = list(scales)
        if pbmask is not None:
            kw["pbmask"] = pbmask
        t0 = time.perf_counter()
        snapshots = _snapshot_models(job.tmp_root)
        try:
            summary = _run_tclean(kw)
            diverged = _stopcode(summary) in DIVERGED_STOPCODES
            if diverged:
                # tclean stopped a diverging minor cycle: go back to the model before this loop,
                # rebuild residual and restored image from it (one major cycle), stop the loop
                log.warning("%s loop %d of %s diverged (tclean stopcode %s): model of the previous loop "
                            "restored, loop stopped", stage, loop, job.tmp_root, _stopcode(summary))
                for current, prev in snapshots:
                    shutil.rmtree(current, ignore_errors=True)
                    prev.rename(current)
                redo = dict(kw, niter=0, calcres=True, calcpsf=False)
                _run_tclean(redo)
        finally:
            for _, prev in snapshots:
                shutil.rmtree(prev, ignore_errors=True)
        flux = _image_sum(model) if model.exists() else 0.0
        stop, reason, frac = schedule.decide(loop, prev_flux, flux, stop_at_negative)
        if diverged:
            stop, reason = True, "diverged"
        rec = {
            "stage": stage, "loop": loop, "deconvolver": deconvolver, "niter": kw["niter"],
            "cycleniter": kw["cycleniter"], "threshold_jy": threshold, "noise_jy": noise, "model_flux": flux,
            "frac_delta_flux": _finite(frac), "iterdone": summary.get("iterdone"),
            "nmajordone": summary.get("nmajordone"), "stopcode": _stopcode(summary),
            "residual_rms_jy": None, "stop": stop, "reason": reason, "seconds": time.perf_counter() - t0,
        }
        records.append(rec)
        log.info("%s loop %d: niter %d cycleniter %d threshold %.4g Jy model %.6g Jy frac %s %s",
                 stage, loop, kw["niter"], kw["cycleniter"], threshold, flux, frac, reason)
        prev_flux = flux
        if stop:
            break
    # residual rms after the last loop (the QA number)
    if records:
        try:
            records[-1]["residual_rms_jy"] = measure_noise(residual)
        except ImagingError as exc:
            records[-1]["residual_rms_jy"] = None
            log.warning("%s: %s", stage, exc)
    return records


def _image(
    ms: str | os.PathLike[str],
    imagename_root: str | os.PathLike[str],
    *,
    geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None,
    workdir: str | os.PathLike[str],
    mode: str,
    restfreq_ghz: float | None = None,
    start: int | None = None,
    nchan: int | None = None,
    per_plane_beam: bool = False,
    mask: str | os.PathLike[str] | None = None,
    mask_on_grid: bool = False,
    scales_arcsec: Sequence[float] | None = None,
    schedule: CleanSchedule | None = None,
    noise_jy: float | None = None,
    threshold_jy: float | None = None,
    keep_backups: bool = True,
    overwrite: bool = False,
) -> ImagingResult:
    """Shared engine: ``mode`` is ``'dirty'``, ``'threshold'`` (one clean) or ``'recipe'`` (PHANGS)."""
    t_start = time.perf_counter()
    p, final_root, kw, mfs, n = _prepare(ms, imagename_root, geometry, tclean_kw, restfreq_ghz, start, nchan,
                                         per_plane_beam)
    geometry = kw.pop("_geometry")
    if _finished(final_root, mfs) and not overwrite:
        log.info("%s exists; skipping (overwrite=False)", final_root)
        return _existing_result(final_root, mfs)
    if schedule is None:
        schedule = CONTINUUM_SCHEDULE if mfs else CleanSchedule()
    suffix = ".tt0" if (mfs and kw.get("deconvolver") == "mtmfs") else ""
    Path(final_root).parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(final_root).parent / f".tmp_{Path(final_root).name}_{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    tmp_root = str(tmp_dir / Path(final_root).name)
    job = _Job(p, final_root, tmp_root, kw, suffix, mfs, n)
    res = ImagingResult(root=final_root, nchan=n, start=None if mfs else int(kw["start"]),
                        imsize=list(geometry["imsize"]), cell_arcsec=geometry.get("cell_arcsec"))
    work = Path(workdir).resolve() / f"image_{Path(final_root).name}_{uuid.uuid4().hex[:8]}"
    try:
        with casa_session(work, work / "casa.log"):
            # 1. dirty image (psf, pb, residual); a clean mask already on the cube grid goes in here
            dirty_kw = dict(kw)
            dirty_kw.update(imagename=tmp_root, niter=0, calcres=True, calcpsf=True, restart=True)
            if not mfs:
                dirty_kw["deconvolver"] = "hogbom"
            t0 = time.perf_counter()
            _run_tclean(dirty_kw)
            res.timings["dirty"] = time.perf_counter() - t0
            if mode != "dirty" and keep_backups:
                _copy_products(tmp_root, tmp_root + "_dirty", CUBE_EXTS + MTMFS_EXTS)
            if noise_jy is None:
                res.noise_jy = measure_noise(Path(tmp_root + ".residual" + suffix))
            else:
                res.noise_jy = float(noise_jy)
            if mask is not None:
                # the key's clean mask (FITS or CASA image, any grid) or a whole-cube mask for a
                # chunk: aligned onto this run's grid (nearest, in velocity) as <root>.mask
                align_clean_mask(mask, tmp_root + ".image" + suffix, tmp_root + ".mask",
                                 workdir=work, overwrite=True)
            if mode == "threshold":
                if threshold_jy is None:
                    raise ImagingError(f"{final_root}: mode 'threshold' needs threshold_jy")
                ckw = dict(kw)
                ckw.update(imagename=tmp_root, threshold=f"{float(threshold_jy):.10g}Jy", restart=True,
                           calcres=False, calcpsf=False, mask="")
                ckw["niter"] = max(int(ckw.get("niter") or 0), int(schedule.niter_saturation_perchan * n))
                if mask is not None:
                    ckw["usemask"] = "user"
                if scales_arcsec is not None and ckw.get("deconvolver") in ("multiscale", "mtmfs"):
                    ckw["scales"] = multiscale_pixels(scales_arcsec, float(geometry["cell_arcsec"]))
                t0 = time.perf_counter()
                summary = _run_tclean(ckw)
                res.timings["clean"] = time.perf_counter() - t0
                res.stages["clean"] = [{
                    "stage": "clean", "loop": 0, "deconvolver": ckw.get("deconvolver"), "niter": ckw["niter"],
                    "threshold_jy": float(threshold_jy), "iterdone": summary.get("iterdone"),
                    "stopcode": _stopcode(summary),
                    "model_flux": _image_sum(Path(tmp_root + ".model" + suffix)),
                }]
            elif mode == "recipe":
                self_noise = None if noise_jy is None else float(noise_jy)
                # 2. clean mask from the key (aligned onto the dirty grid), else the pb mask
                usemask, pbmask = "pb", float(kw.get("pblimit", 0.2))
                if mask is not None:
                    usemask, pbmask = "user", None
                # 3. multiscale to 4 sigma
                ms_decon = "mtmfs" if mfs else "multiscale"
                scales = (multiscale_pixels(scales_arcsec, float(geometry["cell_arcsec"]))
                          if scales_arcsec is not None else kw.get("scales") or [0])
                t0 = time.perf_counter()
                res.stages["multiscale"] = _clean_loop(
                    job, "multiscale", deconvolver=ms_decon, scales=scales, snr=schedule.multiscale_snr,
                    schedule=schedule, fixed_noise=self_noise, stop_at_negative=True, usemask=usemask,
                    pbmask=pbmask,
                )
                res.timings["multiscale"] = time.perf_counter() - t0
                if keep_backups:
                    _copy_products(tmp_root, tmp_root + "_multiscale", CUBE_EXTS + MTMFS_EXTS)
                # 4. signal mask (AND with the current mask), single-scale clean to 1 sigma
                ss_noise = self_noise if self_noise is not None else measure_noise(Path(tmp_root + ".residual" + suffix))
                npix = write_signal_mask(tmp_root, ss_noise, high_snr=schedule.mask_high_snr,
                                         low_snr=schedule.mask_low_snr, roll=not mfs, suffix=suffix)
                t0 = time.perf_counter()
                if npix == 0:
                    res.warnings.append("single-scale mask is empty; single-scale clean skipped")
                    res.stages["singlescale"] = []
                else:
                    res.stages["singlescale"] = _clean_loop(
                        job, "singlescale", deconvolver="mtmfs" if mfs else "hogbom", scales=[0] if mfs else None,
                        snr=schedule.singlescale_snr, schedule=schedule, fixed_noise=self_noise,
                        stop_at_negative=False, usemask="user", pbmask=None,
                    )
                res.timings["singlescale"] = time.perf_counter() - t0
                res.singlescale_mask_pixels = npix
                if keep_backups:
                    _copy_products(tmp_root, tmp_root + "_singlescale", CUBE_EXTS + MTMFS_EXTS)
            elif mode != "dirty":
                raise ImagingError(f"unknown imaging mode {mode!r}")
            model = Path(tmp_root + ".model" + suffix)
            res.model_flux_jy = _image_sum(model) if model.exists() else 0.0
            b = read_beam(Path(tmp_root + ".image" + suffix))
            res.beam_major_arcsec, res.beam_minor_arcsec, res.beam_pa_deg = b["major"], b["minor"], b["pa"]
            if mode != "dirty":
                rec = Path(tmp_root + "_record.json")
                rec.write_text(json.dumps(
                    {"root": final_root, "ms": str(p), "noise_jy": res.noise_jy, "model_flux_jy": res.model_flux_jy,
                     "schedule": schedule.to_dict(), "stages": res.stages, "timings": res.timings},
                    indent=1, default=_json_default))
            if overwrite:
                _remove_existing(final_root)
            res.products = _publish(tmp_root, final_root, overwrite)
            if "_record.json" in res.products:
                res.record_json = res.products["_record.json"]
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    res.seconds = time.perf_counter() - t_start
    return res


# ---------------------------------------------------------------------------------------
# Public imaging routines
# ---------------------------------------------------------------------------------------


def make_dirty_cube(
    ms: str | os.PathLike[str],
    imagename_root: str | os.PathLike[str],
    *,
    geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None,
    workdir: str | os.PathLike[str],
    start: int | None = None,
    nchan: int | None = None,
    restfreq_ghz: float | None = None,
    per_plane_beam: bool = True,
    mask: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ImagingResult:
    """Dirty image (``niter=0``) of ``ms`` (the whole cube or a channel range); noise measured.

    ``mask``: a clean mask (FITS or CASA image) aligned onto the cube grid as ``root.mask``.
    """
    return _image(ms, imagename_root, geometry=geometry, tclean_kw=tclean_kw, workdir=workdir, mode="dirty",
                  restfreq_ghz=restfreq_ghz, start=start, nchan=nchan, per_plane_beam=per_plane_beam,
                  mask=mask, mask_on_grid=True, overwrite=overwrite)


def clean_cube(
    ms: str | os.PathLike[str],
    imagename_root: str | os.PathLike[str],
    *,
    geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None,
    workdir: str | os.PathLike[str],
    restfreq_ghz: float | None = None,
    scales_arcsec: Sequence[float] | None = (0, 1, 2.5, 5.0, 10.0),
    mask: str | os.PathLike[str] | None = None,
    schedule: CleanSchedule | None = None,
    noise_jy: float | None = None,
    threshold_jy: float | None = None,
    start: int | None = None,
    nchan: int | None = None,
    per_plane_beam: bool = False,
    keep_backups: bool = True,
    overwrite: bool = False,
) -> ImagingResult:
    """Monolithic PHANGS imaging of a cube (or, with ``specmode='mfs'`` in ``tclean_kw``, continuum).

    dirty (backup ``_dirty``) -> noise (chauvmad of the dirty residual) -> clean mask (the
    key's mask aligned onto the grid, else ``usemask='pb'``) -> multiscale loop to
    ``schedule.multiscale_snr`` sigma (backup ``_multiscale``) -> signal mask (4/2 sigma, AND
    the current mask) -> single-scale (hogbom) loop to ``schedule.singlescale_snr`` sigma
    (backup ``_singlescale``). The loop record goes to ``{root}_record.json``.

    Parameters
    ----------
    ms : path
        Staged measurement set.
    imagename_root : path
        Output root, e.g. ``.../ngc0628_12m+7m_co21``.
    geometry : dict
        From :func:`image_geometry` (``imsize``, ``cell``, ``cell_arcsec``, ``phasecenter``).
    tclean_kw : dict
        Recipe keywords (``cube_mosaic.clean``), values typed; ``chanchunks`` is dropped.
    restfreq_ghz : float, optional
        Rest frequency of the velocity axis.
    scales_arcsec : sequence of float, optional
        Multiscale scales (converted with :func:`multiscale_pixels`).
    mask : path, optional
        Clean mask (FITS or CASA image) to align.
    noise_jy : float, optional
        Use this noise for every threshold instead of re-measuring the residual each loop
        (the chunked mode uses the whole cube's noise).
    threshold_jy : float, optional
        Instead of the recipe: one clean run (``tclean_kw``'s deconvolver) to this threshold.
    start, nchan : int, optional
        Channel range (default: all channels).
    per_plane_beam : bool
        Force ``restoringbeam=''`` (else the recipe's value, ``'common'`` for PHANGS).
    keep_backups : bool
        Keep the ``_dirty``/``_multiscale``/``_singlescale`` copies.
    overwrite : bool
        Redo even when ``{root}.image`` exists.

    Returns
    -------
    ImagingResult

    Raises
    ------
    ImagingError
        Missing MS, bad channel range, tclean failure, empty noise estimate.
    """
    mode = "threshold" if threshold_jy is not None else "recipe"
    return _image(ms, imagename_root, geometry=geometry, tclean_kw=tclean_kw, workdir=workdir, mode=mode,
                  restfreq_ghz=restfreq_ghz, start=start, nchan=nchan, per_plane_beam=per_plane_beam,
                  mask=mask, mask_on_grid=False, scales_arcsec=scales_arcsec, schedule=schedule,
                  noise_jy=noise_jy, threshold_jy=threshold_jy, keep_backups=keep_backups, overwrite=overwrite)


def clean_continuum(
    ms: str | os.PathLike[str],
    imagename_root: str | os.PathLike[str],
    *,
    geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None,
    workdir: str | os.PathLike[str],
    scales_arcsec: Sequence[float] | None = (0, 1, 2.5, 5.0, 10.0),
    mask: str | os.PathLike[str] | None = None,
    schedule: CleanSchedule | None = None,
    overwrite: bool = False,
) -> ImagingResult:
    """PHANGS continuum imaging: :func:`clean_cube` with ``specmode='mfs'`` and ``mtmfs`` throughout.

    Products carry ``.tt0``/``.tt1`` suffixes (``nterms`` from the recipe, 2 for PHANGS);
    the single-scale mask uses 2.5/1 sigma without channel neighbours.
    """
    kw = dict(tclean_kw)
    kw["specmode"] = "mfs"
    kw["deconvolver"] = "mtmfs"
    kw.setdefault("nterms", 2)
    kw["reffreq"] = kw.get("reffreq") or ""
    return _image(ms, imagename_root, geometry=geometry, tclean_kw=kw, workdir=workdir, mode="recipe",
                  scales_arcsec=scales_arcsec, mask=mask, schedule=schedule or CONTINUUM_SCHEDULE,
                  overwrite=overwrite)


def image_chunk(
    ms: str | os.PathLike[str],
    imagename_root: str | os.PathLike[str],
    *,
    start: int,
    nchan: int,
    geometry: Mapping[str, Any] | None,
    tclean_kw: Mapping[str, Any] | None,
    threshold_jy: float | None = None,
    noise_jy: float | None = None,
    mask: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str],
    restfreq_ghz: float | None = None,
    scales_arcsec: Sequence[float] | None = (0, 1, 2.5, 5.0, 10.0),
    schedule: CleanSchedule | None = None,
    keep_backups: bool = False,
    overwrite: bool = False,
) -> ImagingResult:
    """Image one channel chunk of a staged cube (the mapped task of chunked imaging).

    Always ``start``/``nchan`` integers, ``width=1``, ``interpolation='nearest'`` and
    ``restoringbeam=''`` (per plane; convolve to a common beam after gathering).

    * ``noise_jy`` given: the PHANGS recipe (multiscale loop, signal mask, single-scale loop)
      with every threshold = snr x ``noise_jy``, the **whole cube's** noise;
    * else ``threshold_jy`` given: one clean with ``tclean_kw``'s deconvolver to that
      absolute threshold (Jy/beam);
    * neither: dirty chunk only.

    ``mask``: a clean mask (CASA image or FITS), e.g. the whole cube's aligned mask; it is
    regridded (nearest, in velocity) onto the chunk's grid, which cuts out its channels.
    Output root: ``imagename_root`` (use :func:`chunk_root` for the PHANGS name).
    """
    if noise_jy is not None:
        mode = "recipe"
    elif threshold_jy is not None:
        mode = "threshold"
    else:
        mode = "dirty"
    return _image(ms, imagename_root, geometry=geometry, tclean_kw=tclean_kw, workdir=workdir, mode=mode,
                  restfreq_ghz=restfreq_ghz, start=int(start), nchan=int(nchan), per_plane_beam=True,
                  mask=mask, mask_on_grid=True, scales_arcsec=scales_arcsec, schedule=schedule,
                  noise_jy=noise_jy, threshold_jy=threshold_jy, keep_backups=keep_backups, overwrite=overwrite)


def gather_chunks(
    chunk_roots: Sequence[str | os.PathLike[str]],
    out_root: str | os.PathLike[str],
    *,
    exts: Sequence[str] = GATHER_EXTS,
    overwrite: bool = False,
) -> ImagingResult:
    """Concatenate chunk products along the spectral axis (``ia.imageconcat``) into ``out_root``.

    Each extension present in *every* chunk is gathered (``.image`` ``.residual`` ``.psf``
    ``.pb`` are required; ``.model`` ``.mask`` ``.weight`` when present everywhere), in the
    given chunk order (``relax=False``: CASA checks that the spectral coordinates join up).
    Per-plane beams are kept; convolve to a common beam afterwards.

    Raises
    ------
    ImagingError
        No chunks, a chunk without a required product, a product present in only some chunks,
        or a failed concatenation.
    """
    t0 = time.perf_counter()
    roots = [str(Path(r).resolve()) for r in chunk_roots]
    final_root = str(Path(out_root).resolve())
    if not roots:
        raise ImagingError(f"gather into {final_root!r}: no chunks given")
    if Path(final_root + ".image").is_dir() and not overwrite:
        return _existing_result(final_root, False)
    required = (".image", ".residual", ".psf", ".pb")
    use: list[str] = []
    for ext in exts:
        have = [Path(r + ext).is_dir() for r in roots]
        if all(have):
            use.append(ext)
        elif ext in required or any(have):
            missing = [r + ext for r, h in zip(roots, have, strict=True) if not h]
            raise ImagingError(f"gather into {final_root!r}: missing chunk products {missing}")
    tmp_dir = Path(final_root).parent / f".tmp_{Path(final_root).name}_{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir(parents=True)
    tmp_root = str(tmp_dir / Path(final_root).name)
    ct = casatools()
    res = ImagingResult(root=final_root)
    try:
        with casa_session(tmp_dir / "work", tmp_dir / "work" / "casa.log"):
            for ext in use:
                infiles = [r + ext for r in roots]
                if len(infiles) == 1:
                    shutil.copytree(infiles[0], tmp_root + ext, symlinks=True)
                    continue
                ia = ct.image()
                try:
                    out = ia.imageconcat(outfile=tmp_root + ext, infiles=infiles, axis=-1, relax=False,
                                         tempclose=True, overwrite=True)
                    out.done()
                except RuntimeError as exc:
                    raise ImagingError(f"imageconcat of {infiles} failed: {exc}") from exc
                finally:
                    ia.done()
        shutil.rmtree(tmp_dir / "work", ignore_errors=True)
        if overwrite:
            for ext in use:
                p = Path(final_root + ext)
                if p.exists():
                    shutil.rmtree(p)
        res.products = _publish(tmp_root, final_root, overwrite)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    img = Path(final_root + ".image")
    res.nchan = _image_nchan(img)
    b = read_beam(img)
    res.beam_major_arcsec, res.beam_minor_arcsec, res.beam_pa_deg = b["major"], b["minor"], b["pa"]
    res.seconds = time.perf_counter() - t0
    return res


def chunks_threshold(
    chunk_roots: Sequence[str | os.PathLike[str]], nsigma: float = 2.0, ext: str = ".residual", niter: int = 5
) -> dict[str, Any]:
    """Noise of the whole cube from its (dirty) chunks, and ``nsigma`` times it.

    The residuals of all chunks are pooled and measured with :func:`chauvenet_mad_noise`, so
    every chunk is cleaned to the same, cube-wide threshold.

    Returns
    -------
    dict
        ``noise_jy`` (Jy/beam), ``threshold_jy`` (= nsigma x noise), ``nsigma``, ``n_chunks``,
        ``n_pixels``.
    """
    roots = [os.fspath(r) for r in chunk_roots]
    if not roots:
        raise ImagingError("chunks_threshold: no chunks given")
    ia = casatools().image()
    values = []
    for r in roots:
        data, pmask = _read_pixels(ia, _require_image(r + ext))
        values.append(np.asarray(data, dtype=np.float64)[pmask & np.isfinite(data)])
    pooled = np.concatenate(values)
    try:
        noise = chauvenet_mad_noise(pooled, niter=niter)
    except ImagingError as exc:
        raise ImagingError(f"noise of the chunks {roots[0]}... ({len(roots)} chunks): {exc}") from None
    return {"noise_jy": noise, "threshold_jy": float(nsigma) * noise, "nsigma": float(nsigma),
            "n_chunks": len(roots), "n_pixels": int(pooled.size)}


def with_overrides(geometry: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Copy of a geometry dict with ``cell_arcsec`` / ``imsize`` / ``phasecenter`` replaced."""
    g = dict(geometry)
    if overrides.get("cell_arcsec") is not None:
        g["cell_arcsec"] = float(overrides["cell_arcsec"])
        g["cell"] = f"{g['cell_arcsec']}arcsec"
    if overrides.get("imsize") is not None:
        v = overrides["imsize"]
        sz = [int(v)] * 2 if np.isscalar(v) else [int(x) for x in v][:2]
        g["imsize"] = [x + (x % 2) for x in sz]
    if overrides.get("phasecenter"):
        g["phasecenter"] = str(overrides["phasecenter"])
    return g


__all__ = [
    "CleanSchedule", "ImagingResult", "align_clean_mask", "cell_and_imsize", "chauvenet_mad_noise", "chunk_root",
    "chunks_threshold",
    "clean_continuum", "clean_cube", "fft_friendly_sizes", "fft_size_above", "gather_chunks", "image_chunk",
    "image_geometry", "make_dirty_cube", "measure_noise", "multiscale_pixels", "plan_chunks", "read_beam",
    "round_cell_arcsec", "signal_mask_array", "with_overrides",
]
