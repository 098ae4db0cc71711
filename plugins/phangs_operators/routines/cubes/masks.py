"""Signal masks with the PHANGS-ALMA recipes: strict, broad and flat (velocity-window) masks.

Array functions (:func:`nchan_thresh_mask`, :func:`reject_small_regions`, :func:`grow_mask`,
:func:`cprops_mask`, :func:`join_masks_nearest`) reproduce the PHANGS numerics; file routines
(:func:`make_strict_mask`, :func:`make_broad_mask`, :func:`make_flat_mask`) read FITS, check
grids and write uint8 0/1 cubes atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
import scipy.ndimage as ndi
from astropy.io import fits
from astropy.wcs import WCS

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.io import (
    PIPELINE_COMMENT,
    CubeInfo,
    OutputTransaction,
    ResultBase,
    block_bytes,
    cube_header,
    read_cube,
    read_map,
    read_mask_cube,
    same_grid,
    write_fits,
)
from phangs_operators.routines.cubes.noise import NoiseSource, read_noise

logger = logging.getLogger(__name__)

#: PHANGS strict-mask defaults (``recipe_phangs_strict_mask``)
STRICT_DEFAULTS: dict[str, object] = {
    "hi_thresh": 4.0, "hi_nchan": 2, "lo_thresh": 2.0, "lo_nchan": 2,
    "min_pix": None, "min_area": None, "min_beams": None, "grow_xy": 0, "grow_v": 0,
}
STRICT_KW = set(STRICT_DEFAULTS) | {"invert", "coverage_thresh"}
BROAD_KW = {"grow_xy", "grow_v", "recipe", "fraction_of_scales"}
FLAT_KW = {"window", "v_window"}



def nchan_thresh_mask(snr: np.ndarray, thresh: float = 5.0, nchan: int = 2) -> np.ndarray:
    """Voxels at or above ``thresh`` in at least ``nchan`` consecutive channels.

    ``snr >= thresh`` (NaN never passes) followed by a binary opening with a
    (nchan, 1, 1) line.
    """
    above = np.greater_equal(snr, thresh, where=~np.isnan(snr),
                             out=np.zeros(snr.shape, dtype=bool))
    struct = np.ones(int(nchan), dtype=bool)[:, None, None]
    return ndi.binary_opening(above, struct)


def reject_small_regions(mask: np.ndarray, min_volume: float = 0, min_area: float = 0
                         ) -> np.ndarray:
    """Remove connected regions smaller than ``min_volume`` voxels or ``min_area`` pixels.

    Regions are labelled with the default (face) connectivity; the area is that of the
    region's projection on the sky. Returns a new mask.
    """
    labels, nreg = ndi.label(mask)
    if nreg == 0:
        return mask.copy()
    drop = np.zeros(nreg + 1, dtype=bool)
    if min_volume and min_volume > 0:
        vol = np.bincount(labels.ravel(), minlength=nreg + 1)
        drop |= vol < min_volume
    if min_area and min_area > 0:
        if mask.ndim == 3:
            flat = labels.reshape(labels.shape[0], -1)
            z, pix = np.nonzero(flat)
            pairs = np.unique(flat[z, pix].astype(np.int64) * flat.shape[1] + pix)
            area = np.bincount(pairs // flat.shape[1], minlength=nreg + 1)
        else:
            area = np.bincount(labels.ravel(), minlength=nreg + 1)
        drop |= area < min_area
    drop[0] = True
    return ~drop[labels] & (labels > 0)


def grow_mask(mask: np.ndarray, iters_xy: int = 0, iters_v: int = 0,
              constraint: np.ndarray | None = None) -> np.ndarray:
    """Grow a mask (PHANGS ``grow_mask`` semantics, including its quirks).

    * ``iters_xy`` > 0: dilation by a 2-D cross iterated ``iters_xy`` times;
    * ``iters_v`` > 0: dilation by a line of ``iters_v`` channels (so 1 grows nothing and 2
      grows one channel on one side, as in PHANGS);
    * both: the union of the two dilations of the original mask;
    * then AND with ``constraint``; with no growth and a ``constraint``, keep every connected
      region of the constraint that contains a mask voxel.
    """
    mask = np.asarray(mask, dtype=bool)
    grown_xy = grown_v = None
    if iters_xy > 0:
        struct = ndi.iterate_structure(ndi.generate_binary_structure(2, 1), int(iters_xy))
        if mask.ndim == 3:
            struct = struct[None, :, :]
        grown_xy = ndi.binary_dilation(mask, struct)
    if iters_v > 0:
        struct = np.ones(int(iters_v), dtype=bool)[:, None, None]
        grown_v = ndi.binary_dilation(mask, struct)
    if grown_xy is not None and grown_v is not None:
        mask = grown_xy | grown_v
    elif grown_xy is not None:
        mask = grown_xy
    elif grown_v is not None:
        mask = grown_v
    if constraint is not None:
        if iters_xy > 0 or iters_v > 0:
            mask = mask & constraint
        else:
            # the connected regions of the constraint (face connectivity, as ndi.label) that
            # hold a mask voxel: a morphological reconstruction, without an int32 label cube
            constraint = np.asarray(constraint, dtype=bool)
            struct = ndi.generate_binary_structure(mask.ndim, 1)
            mask = ndi.binary_propagation(mask & constraint, structure=struct, mask=constraint)
    return mask


def _rows_step(shape: tuple[int, ...]) -> int:
    return max(1, int(block_bytes(shape, 0.125) // max(1, 4 * shape[0] * shape[2])))


def cprops_mask(data: np.ndarray, noise: np.ndarray | NoiseSource | float | None = None, *,
                hi_thresh: float = 5.0, hi_nchan: int = 2,
                lo_thresh: float | None = None, lo_nchan: int | None = None,
                min_pix: float | None = None, min_area: float | None = None,
                min_beams: float | None = None, ppbeam: float | None = None,
                grow_xy: int | None = None, grow_v: int | None = None,
                prior_hi: np.ndarray | None = None, prior_lo: np.ndarray | None = None,
                invert: bool = False) -> np.ndarray:
    """CPROPS-style two-threshold mask of a cube (PHANGS ``cprops_mask``).

    Parameters
    ----------
    data : numpy.ndarray (nchan, ny, nx)
        Cube [K] (may be a memory map).
    noise : array, NoiseSource or float
        Noise [K]; ``None`` means 1.
    hi_thresh, hi_nchan : float, int
        Core: S/N >= hi_thresh in >= hi_nchan consecutive channels.
    lo_thresh, lo_nchan : float, int, optional
        Wings: the core is grown into connected regions of this lower mask.
    min_pix, min_area, min_beams : float, optional
        Reject core regions below this volume [voxels], area [pixels] or volume [beams,
        needs ``ppbeam``].
    grow_xy, grow_v : int, optional
        Final growth (sequential: xy then v; see :func:`grow_mask`).
    prior_hi, prior_lo : numpy.ndarray of bool, optional
        Masks ANDed with the core / wing masks (e.g. coverage > 0.95).
    invert : bool
        Use -data (false-positive tests).
    """
    shape = data.shape
    hi = np.zeros(shape, dtype=bool)
    lo = None
    want_lo = lo_thresh is not None and lo_nchan is not None
    if want_lo:
        lo = np.zeros(shape, dtype=bool)
    step = _rows_step(shape)
    # the line opening acts along v only, so y blocks are independent
    for y0 in range(0, shape[1], step):
        y1 = min(shape[1], y0 + step)
        blk = np.asarray(data[:, y0:y1, :], dtype=np.float32)
        if noise is None:
            snr = blk
        elif isinstance(noise, (int, float)):
            snr = blk / np.float32(noise)
        elif isinstance(noise, np.ndarray):
            snr = blk / np.asarray(noise[:, y0:y1, :], dtype=np.float32)
        else:
            snr = blk / noise.rows(y0, y1)
        if invert:
            snr = -snr
        hi[:, y0:y1] = nchan_thresh_mask(snr, hi_thresh, hi_nchan)
        if want_lo:
            lo[:, y0:y1] = nchan_thresh_mask(snr, lo_thresh, lo_nchan)
    if min_beams is not None or min_pix is not None or min_area is not None:
        min_vol = 0.0 if min_pix is None else float(min_pix)
        if min_beams is not None:
            if ppbeam is None:
                raise CubeError("cprops_mask: min_beams needs ppbeam (pixels per beam)")
            min_vol = float(min_beams) * float(ppbeam)
        hi = reject_small_regions(hi, min_volume=min_vol,
                                  min_area=0 if min_area is None else float(min_area))
    if prior_hi is not None:
        hi &= prior_hi
    if want_lo:
        if prior_lo is not None:
            lo &= prior_lo
        mask = grow_mask(hi, constraint=lo)
    else:
        mask = hi
    return _grow_xy_then_v(mask, grow_xy, grow_v)


def _grow_xy_then_v(mask: np.ndarray, grow_xy: int | None, grow_v: int | None) -> np.ndarray:
    """Dilate ``mask`` by ``grow_xy`` iterations in the sky plane, then ``grow_v`` along velocity."""
    if grow_xy:
        mask = grow_mask(mask, iters_xy=int(grow_xy))
    if grow_v:
        mask = grow_mask(mask, iters_v=int(grow_v))
    return mask


@dataclass
class MaskResult(ResultBase):
    """Result of a mask routine."""

    mask_fits: str
    n_voxels: int
    fraction: float
    params: dict
    inputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def mask_header(cube: CubeInfo | fits.Header, comments: list[str] | None = None) -> fits.Header:
    hdr = cube_header(cube) if isinstance(cube, CubeInfo) else cube.copy()
    for key in ("BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX"):
        hdr.remove(key, ignore_missing=True)
    hdr["BUNIT"] = " "
    hdr["BTYPE"] = "Mask"
    hdr["DATAMAX"] = 1
    hdr["DATAMIN"] = 0
    hdr["COMMENT"] = PIPELINE_COMMENT
    for c in comments or []:
        hdr["COMMENT"] = c
    return hdr


def write_mask(mask: np.ndarray, header: fits.Header, out_fits: str | Path,
               tx: OutputTransaction | None = None) -> Path:
    hdr = header.copy()
    hdr["BITPIX"] = 8
    return write_fits(mask.astype(np.uint8), hdr, out_fits, tx=tx)


def resolve_strict_kw(strictmask_kw: dict | None) -> dict:
    kw = dict(STRICT_DEFAULTS)
    for key, val in (strictmask_kw or {}).items():
        if key not in STRICT_KW:
            raise CubeError(f"strictmask_kw: unknown keyword {key!r}; known: {sorted(STRICT_KW)}")
        kw[key] = val
    return kw


def strict_mask_array(cube: CubeInfo, noise: NoiseSource | np.ndarray,
                      coverage: np.ndarray | None = None, **strictmask_kw: object) -> np.ndarray:
    """Strict mask of an in-memory cube (PHANGS ``recipe_phangs_strict_mask``)."""
    kw = resolve_strict_kw(strictmask_kw)
    coverage_thresh = float(kw.pop("coverage_thresh", 0.95))
    prior_hi = None
    if coverage is not None:
        prior_hi = np.asarray(coverage) > coverage_thresh
    ppbeam = cube.pixels_per_beam if kw.get("min_beams") is not None else None
    return cprops_mask(cube.data, noise, ppbeam=ppbeam, prior_hi=prior_hi, **kw)


def make_strict_mask(cube_fits: str | Path, noise_fits: str | Path, out_fits: str | Path, *,
                     coverage_fits: str | Path | None = None,
                     tx: OutputTransaction | None = None,
                     **strictmask_kw: object) -> MaskResult:
    """Build and write the strict mask of a cube.

    Parameters
    ----------
    cube_fits, noise_fits : str or Path
        Cube [K] and its noise cube (same grid).
    out_fits : str or Path
        Output uint8 0/1 cube.
    coverage_fits : str or Path, optional
        Coverage cube of a convolved cube; the core mask is restricted to coverage >
        ``coverage_thresh`` (0.95).
    **strictmask_kw
        ``hi_thresh`` (4), ``hi_nchan`` (2), ``lo_thresh`` (2), ``lo_nchan`` (2), ``min_pix``,
        ``min_area``, ``min_beams``, ``grow_xy`` (0), ``grow_v`` (0) [S/N, channels, pixels].
    """
    cube = read_cube(cube_fits)
    noise = read_noise(noise_fits, cube)
    coverage = None
    if coverage_fits is not None:
        cov = read_cube(coverage_fits, require_beam=False, require_finite=False)
        if not same_grid(cov.header, cube.header, cov.shape, cube.shape):
            raise CubeError(f"{coverage_fits}: coverage grid does not match {cube_fits}")
        coverage = cov.data
    mask = strict_mask_array(cube, noise, coverage=coverage, **strictmask_kw)
    write_mask(mask, mask_header(cube), out_fits, tx=tx)
    return MaskResult(mask_fits=str(out_fits), n_voxels=int(mask.sum()),
                      fraction=float(mask.mean()), params=resolve_strict_kw(strictmask_kw),
                      inputs=[str(cube_fits), str(noise_fits)]
                      + ([str(coverage_fits)] if coverage_fits else []))


def _spectral_world(wcs: WCS, nchan: int) -> np.ndarray:
    return wcs.sub([3]).all_pix2world(np.arange(nchan, dtype=float), 0)[0]


def join_masks_nearest(template_header: fits.Header, template_shape: tuple[int, int, int],
                       other: np.ndarray, other_header: fits.Header) -> np.ndarray:
    """Values of ``other`` (bool cube) at the nearest pixel of each template voxel.

    Pixels of the template outside the other cube are False. Same grid -> returned as is.
    """
    if same_grid(template_header, other_header, template_shape, other.shape):
        return other
    tw = WCS(template_header, naxis=3)
    ow = WCS(other_header, naxis=3)
    ny, nx = template_shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    lon, lat = tw.celestial.all_pix2world(xx, yy, 0)
    ox, oy = ow.celestial.all_world2pix(lon, lat, 0)
    spec = _spectral_world(tw, template_shape[0])
    oz = ow.sub([3]).all_world2pix(spec, 0)[0]
    ox = np.rint(ox).astype(np.int64)
    oy = np.rint(oy).astype(np.int64)
    oz = np.rint(oz).astype(np.int64)
    ok_xy = (ox >= 0) & (ox < other.shape[2]) & (oy >= 0) & (oy < other.shape[1])
    ok_z = (oz >= 0) & (oz < other.shape[0])
    out = np.zeros(template_shape, dtype=bool)
    oxc, oyc = np.where(ok_xy, ox, 0), np.where(ok_xy, oy, 0)
    for k in np.nonzero(ok_z)[0]:  # one plane at a time: bounded memory
        out[k] = other[oz[k]][oyc, oxc] & ok_xy
    return out


def broad_mask_array(template: np.ndarray, template_header: fits.Header,
                     others: list[tuple[np.ndarray, fits.Header]], *,
                     recipe: str = "anyscale", fraction_of_scales: float = 0.25,
                     grow_xy: int | None = None, grow_v: int | None = None) -> np.ndarray:
    """Broad mask: count over the template and every other mask, then threshold and grow.

    ``recipe='anyscale'``: count > 0; ``'somescales'``: count > fraction * len(others).
    """
    count = template.astype(np.int16)
    for data, hdr in others:
        count += join_masks_nearest(template_header, template.shape, data, hdr)
    if recipe == "anyscale":
        mask = count > 0
    elif recipe == "somescales":
        mask = count > fraction_of_scales * len(others)
    else:
        raise CubeError(f"broadmask_kw: unknown recipe {recipe!r} (anyscale, somescales)")
    return _grow_xy_then_v(mask, grow_xy, grow_v)


def make_broad_mask(template_fits: str | Path, mask_fits_list: list[str | Path],
                    out_fits: str | Path, *, tx: OutputTransaction | None = None,
                    **broadmask_kw: object) -> MaskResult:
    """Union of strict masks (several resolutions and linked configs) on the template grid.

    Parameters
    ----------
    template_fits : str or Path
        Native-resolution strict mask of this config (defines the grid).
    mask_fits_list : list of str or Path
        Other masks (any grid; reprojected by nearest pixel). Missing files are skipped
        with a warning, as in PHANGS.
    out_fits : str or Path
        Output uint8 0/1 cube.
    **broadmask_kw
        ``grow_xy``, ``grow_v`` (applied; PHANGS ignores them), ``recipe``
        ('anyscale'|'somescales'), ``fraction_of_scales`` (0.25).
    """
    unknown = set(broadmask_kw) - BROAD_KW
    if unknown:
        raise CubeError(f"broadmask_kw: unknown keyword(s) {sorted(unknown)}")
    tmpl = read_cube(template_fits, require_beam=False, require_finite=False)
    template = read_mask_cube(template_fits, tmpl)
    others, used, warns = [], [], []
    for path in mask_fits_list:
        staged = tx.pending(path) if tx is not None else None
        src = staged if staged is not None and staged.exists() else Path(path)
        if not src.exists():
            warns.append(f"{path}: missing, not included in the broad mask")
            logger.warning("%s", warns[-1])
            continue
        info = read_cube(src, require_beam=False, require_finite=False)
        data = read_mask_cube(src, info)
        others.append((data, info.header))
        used.append(str(path))
    mask = broad_mask_array(template, tmpl.header, others, **broadmask_kw)
    write_mask(mask, mask_header(tmpl.header), out_fits, tx=tx)
    return MaskResult(mask_fits=str(out_fits), n_voxels=int(mask.sum()),
                      fraction=float(mask.mean()), params=dict(broadmask_kw),
                      inputs=[str(template_fits)] + used, warnings=warns)


def velocity_map_kms(data: np.ndarray, header: fits.Header, path: str | Path) -> np.ndarray:
    """A 2-D velocity map in km/s (BUNIT km/s or m/s; missing BUNIT means km/s)."""
    bunit = str(header.get("BUNIT", "km/s")).strip() or "km/s"
    try:
        return u.Quantity(data, bunit).to_value(u.km / u.s)
    except Exception as exc:  # noqa: BLE001
        raise CubeError(f"{path}: velocity field unit {bunit!r} is not a velocity") from exc


def reproject_map(data: np.ndarray, header: fits.Header, target_header: fits.Header,
                  shape: tuple[int, int], order: str = "bilinear") -> np.ndarray:
    """Reproject a 2-D map onto a celestial grid (no-op on the same grid)."""
    if same_grid(header, target_header, data.shape, shape, naxis=2):
        return data
    from reproject import reproject_interp

    out, _ = reproject_interp((data, WCS(header).celestial), WCS(target_header).celestial,
                              shape_out=shape, order=order)
    return out


def flat_mask_array(cube: CubeInfo, vfield_kms: np.ndarray, window_kms: float,
                    signal: np.ndarray | None = None) -> np.ndarray:
    """|v - vfield| <= window / 2, OR the signal mask (PHANGS ``recipe_phangs_flat_mask``)."""
    v = cube.velocity_kms[:, None, None]
    with np.errstate(invalid="ignore"):
        mask = np.abs(v - vfield_kms[None, :, :]) <= window_kms / 2.0
    if signal is not None:
        mask |= signal
    return mask


def parse_window_kms(window: object) -> float:
    """'50km/s' / '12.5 km/s' / Quantity / number (km/s) -> float km/s."""
    try:
        if isinstance(window, (int, float)):
            return float(window)
        return u.Quantity(window).to_value(u.km / u.s)
    except Exception as exc:  # noqa: BLE001
        raise CubeError(f"window {window!r} is not a velocity (e.g. '50km/s')") from exc


def make_flat_mask(cube_fits: str | Path, vfield_fits: str | Path, out_fits: str | Path, *,
                   mask_fits: str | Path | None = None, tx: OutputTransaction | None = None,
                   **flatmask_kw: object) -> MaskResult:
    """Flat (velocity-window) mask around a velocity field, OR-ed with a signal mask.

    Parameters
    ----------
    cube_fits : str or Path
        Cube defining the grid.
    vfield_fits : str or Path
        2-D velocity field (km/s or m/s), bilinearly reprojected onto the cube.
    out_fits : str or Path
        Output uint8 0/1 cube.
    mask_fits : str or Path, optional
        Strict or broad mask to OR in (nearest-pixel join).
    **flatmask_kw
        ``window`` (default '50km/s'); ``v_window`` is accepted as a synonym (PHANGS passes
        that name for flat strict masks and then ignores it; we honour it).
    """
    unknown = set(flatmask_kw) - FLAT_KW
    if unknown:
        raise CubeError(f"flatmask_kw: unknown keyword(s) {sorted(unknown)}")
    window = flatmask_kw.get("window", flatmask_kw.get("v_window", "50km/s"))
    window_kms = parse_window_kms(window)
    cube = read_cube(cube_fits)
    vdata, vhdr = read_map(vfield_fits)
    vfield = velocity_map_kms(vdata, vhdr, vfield_fits)
    vfield = reproject_map(vfield, vhdr, cube.header, cube.shape[1:])
    signal = None
    if mask_fits is not None:
        minfo = read_cube(mask_fits, require_beam=False, require_finite=False)
        signal = join_masks_nearest(cube.header, cube.shape, read_mask_cube(mask_fits, minfo),
                                    minfo.header)
    mask = flat_mask_array(cube, vfield, window_kms, signal)
    write_mask(mask, mask_header(cube), out_fits, tx=tx)
    return MaskResult(mask_fits=str(out_fits), n_voxels=int(mask.sum()),
                      fraction=float(mask.mean()), params={"window_kms": window_kms},
                      inputs=[str(cube_fits), str(vfield_fits)]
                      + ([str(mask_fits)] if mask_fits else []))
