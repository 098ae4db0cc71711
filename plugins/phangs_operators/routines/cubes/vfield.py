"""Combined velocity field for the flat masks (PHANGS ``recipe_phangs_vfield``, reference §3.6).

The velocity field of a (target, config, product) is built hierarchically from the round-2
``mom1wprior`` maps: the first map (this config, native resolution) is the template whose grid
the result has; every further map (this config's other resolutions, then the linked
``mask_configs``) is reprojected (bilinear) onto that grid and only fills pixels that are still
empty. PHANGS marks "empty" with the value 0 (so a genuine 0 km/s would be overwritten and
turned into NaN at the end); here empty means not finite, and a 0 km/s velocity is kept (listed in
``docs/DEVIATIONS.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.io import (
    PIPELINE_COMMENT,
    OutputTransaction,
    ResultBase,
    read_map,
    write_fits,
)
from phangs_operators.routines.cubes.masks import reproject_map, velocity_map_kms

logger = logging.getLogger(__name__)

__all__ = ["VfieldResult", "combine_vfields", "make_vfield"]


def combine_vfields(template: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical fill of velocity maps already on one grid.

    Parameters
    ----------
    template : ndarray
        2-D velocity map [km/s] defining the grid; its finite pixels are kept.
    others : list of ndarray
        Maps on the same grid, in priority order; each fills pixels still not finite.

    Returns
    -------
    vfield, source : ndarray
        The combined map (NaN where no map has a value) and, per pixel, the index of the map
        it came from (0 = template, i = ``others[i-1]``; -1 = none).
    """
    out = np.array(template, dtype=np.float64)
    if out.ndim != 2:
        raise CubeError(f"velocity field template must be 2-D, got shape {out.shape}")
    source = np.where(np.isfinite(out), 0, -1)
    for i, other in enumerate(others, 1):
        other = np.asarray(other, dtype=np.float64)
        if other.shape != out.shape:
            raise CubeError(f"velocity field {i} has shape {other.shape}, expected {out.shape}")
        fill = ~np.isfinite(out) & np.isfinite(other)
        out[fill] = other[fill]
        source[fill] = i
    return out, source


@dataclass
class VfieldResult(ResultBase):
    """Result of :func:`make_vfield`."""

    vfield_fits: str
    inputs: list[str] = field(default_factory=list)
    n_finite: int = 0
    filled_from: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def make_vfield(template_fits: str | Path, vfield_fits_list: list[str | Path], out_fits: str | Path,
                *, tx: OutputTransaction | None = None) -> VfieldResult:
    """Write the combined velocity field of ``template_fits`` and ``vfield_fits_list``.

    Parameters
    ----------
    template_fits : str or Path
        2-D velocity map (km/s or m/s) whose grid and header the output gets.
    vfield_fits_list : list
        Further velocity maps in priority order (the template may appear again: ignored).
    out_fits : str or Path
        Output map [km/s], BTYPE ``Velocity field``.
    """
    template_fits = Path(template_fits)
    tdata, thdr = read_map(template_fits)
    vt = velocity_map_kms(tdata, thdr, template_fits)
    others, names = [], []
    for path in vfield_fits_list:
        path = Path(path)
        if path == template_fits or str(path) in names:
            continue
        data, hdr = read_map(path)
        others.append(reproject_map(velocity_map_kms(data, hdr, path), hdr, thdr, vt.shape))
        names.append(str(path))
    combined, source = combine_vfields(vt, others)
    result = VfieldResult(vfield_fits=str(out_fits), inputs=[str(template_fits), *names],
                          n_finite=int(np.isfinite(combined).sum()))
    for i, name in enumerate([str(template_fits), *names]):
        result.filled_from[Path(name).name] = int((source == i).sum())
    if not np.isfinite(combined).any():
        result.warnings.append(f"{out_fits}: the velocity field is empty (no finite pixel in "
                               f"{result.inputs})")
        logger.warning(result.warnings[-1])
    hdr = thdr.copy()
    for key in ("DATAMIN", "DATAMAX", "BTYPE", "BUNIT"):
        hdr.remove(key, ignore_missing=True)
    hdr["BUNIT"] = "km / s"
    hdr["BTYPE"] = "Velocity field"
    fin = np.isfinite(combined)
    if fin.any():
        hdr["DATAMIN"] = float(combined[fin].min())
        hdr["DATAMAX"] = float(combined[fin].max())
    hdr["COMMENT"] = PIPELINE_COMMENT
    hdr["COMMENT"] = "Hierarchical combination of " + ", ".join(Path(n).name for n in result.inputs)
    write_fits(combined.astype(np.float32), hdr, out_fits, tx=tx)
    return result
