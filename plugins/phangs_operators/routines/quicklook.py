"""Quick-look PNGs of products: peak-intensity map + mean spectrum of a cube, map of a 2-D image.

Pure routine (FITS in, PNGs out; no Airflow, no store). Figures are drawn with
matplotlib's object API on an Agg canvas (no pyplot global state, safe in threads) with
astropy's WCSAxes for sky coordinates. PNGs are written under a temporary name and renamed,
and are byte-identical for identical input (so re-publishing them is a no-op).
"""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.errors import CubeError

__all__ = ["QuicklookResult", "cube_quicklooks", "map_quicklook", "quicklooks_for"]

log = logging.getLogger(__name__)


@dataclass
class QuicklookResult:
    """Outputs of a quick-look routine.

    Attributes
    ----------
    outputs : dict
        View name (``peak``, ``spectrum``, ``map``) -> PNG path.
    peak_value : float or None
        Brightest finite pixel [BUNIT].
    finite_fraction : float
        Fraction of finite pixels in the drawn map.
    warnings : list of str
        E.g. "all pixels are NaN".
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    peak_value: float | None = None
    finite_fraction: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "peak_value": self.peak_value,
            "finite_fraction": self.finite_fraction,
            "warnings": list(self.warnings),
        }


def _read(path: Path) -> tuple[np.ndarray, Any, Any]:
    """Data with degenerate axes dropped, header, WCS with the same axes dropped."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with fits.open(path, memmap=True) as hdul:
            hdr = hdul[0].header
            data = hdul[0].data
            if data is None:
                raise CubeError(f"{path}: primary HDU has no data")
            data = np.asarray(data, dtype=np.float32)
    except OSError as exc:
        raise CubeError(f"cannot read FITS file {path}: {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr)
    # drop degenerate (length-1) axes, e.g. Stokes; numpy axis i <-> WCS axis ndim-1-i
    keep_np = [i for i, n in enumerate(data.shape) if n > 1]
    data = data.reshape([data.shape[i] for i in keep_np])
    wcs = wcs.sub([wcs.naxis - i for i in reversed(keep_np)])
    return data, hdr, wcs


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part-{uuid.uuid4().hex[:8]}.png")
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _draw_map(image: np.ndarray, wcs: Any, title: str, unit: str, out: Path) -> Path:
    fig = _figure((6.0, 5.0))
    ax = fig.add_subplot(1, 1, 1, projection=wcs)
    finite = np.isfinite(image)
    if finite.any():
        lo, hi = np.nanpercentile(image[finite], [1.0, 99.5])
        if hi <= lo:
            hi = lo + 1.0
    else:
        lo, hi = 0.0, 1.0
    im = ax.imshow(image, origin="lower", cmap="inferno", vmin=lo, vmax=hi, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, pad=0.02)
    cbar.set_label(unit or "value")
    try:
        ax.coords[0].set_axislabel("Right ascension")
        ax.coords[1].set_axislabel("Declination")
    except (AttributeError, IndexError, KeyError):  # pragma: no cover - non-celestial WCS
        pass
    ax.set_title(title, fontsize=9)
    return _save(fig, out)


def cube_quicklooks(cube_path: str | Path, out_dir: str | Path, *, stem: str | None = None) -> QuicklookResult:
    """Peak-intensity map and mean spectrum of a spectral cube.

    Parameters
    ----------
    cube_path : str or Path
        FITS cube (spectral axis + two sky axes; degenerate axes such as Stokes ignored).
    out_dir : str or Path
        Folder for the PNGs.
    stem : str, optional
        Output name stem (default: the cube's name without ``.fits``); writes
        ``{stem}_peak.png`` and ``{stem}_spectrum.png``.

    Returns
    -------
    QuicklookResult
        ``outputs`` has ``peak`` and ``spectrum``; ``peak_value`` [BUNIT].

    Raises
    ------
    CubeError
        Not a 3-D cube after dropping degenerate axes.
    """
    cube_path, out_dir = Path(cube_path), Path(out_dir)
    stem = stem or cube_path.name.removesuffix(".gz").removesuffix(".fits")
    data, hdr, wcs = _read(cube_path)
    if data.ndim != 3 or not wcs.has_spectral or not wcs.has_celestial:
        raise CubeError(f"{cube_path}: expected a cube with a spectral and two sky axes, got shape {data.shape}")
    result = QuicklookResult()
    unit = str(hdr.get("BUNIT", "")).strip()
    finite = np.isfinite(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, intended
        peak = np.nanmax(data, axis=0)
        spectrum = np.nanmean(data, axis=(1, 2))
    result.finite_fraction = float(finite.mean())
    if not finite.any():
        result.warnings.append(f"{cube_path.name}: all pixels are NaN")
    else:
        result.peak_value = float(np.nanmax(peak))
    result.outputs["peak"] = _draw_map(
        peak, wcs.celestial, f"{stem}: peak intensity", unit, out_dir / f"{stem}_peak.png"
    )
    # spectrum against the spectral world coordinate (km/s for velocity axes)
    from astropy import units as u

    spec_wcs = wcs.spectral
    x = np.asarray(spec_wcs.pixel_to_world_values(np.arange(data.shape[0])), dtype=float)
    xunit = u.Unit(spec_wcs.world_axis_units[0] or "")
    xlabel = spec_wcs.wcs.ctype[0].split("-")[0]
    if xunit.is_equivalent(u.km / u.s):
        x, xlabel = (x * xunit).to_value(u.km / u.s), f"{xlabel} velocity [km/s]"
    elif xunit.is_equivalent(u.GHz):
        x, xlabel = (x * xunit).to_value(u.GHz), f"{xlabel} [GHz]"
    fig = _figure((6.0, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.step(x, spectrum, where="mid", color="k", lw=1.0)
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"mean intensity [{unit}]" if unit else "mean intensity")
    ax.set_title(f"{stem}: mean spectrum", fontsize=9)
    fig.tight_layout()
    result.outputs["spectrum"] = _save(fig, out_dir / f"{stem}_spectrum.png")
    log.info("quick-looks of %s: %s", cube_path, ", ".join(str(p) for p in result.outputs.values()))
    return result


def map_quicklook(map_path: str | Path, out_dir: str | Path, *, stem: str | None = None) -> QuicklookResult:
    """PNG of a 2-D map (moment, error map, noise, mask) with WCS axes and a colour bar.

    Writes ``{stem}_map.png`` (default stem: file name without ``.fits``).

    Raises
    ------
    CubeError
        Not 2-D after dropping degenerate axes.
    """
    map_path, out_dir = Path(map_path), Path(out_dir)
    stem = stem or map_path.name.removesuffix(".gz").removesuffix(".fits")
    data, hdr, wcs = _read(map_path)
    if data.ndim != 2:
        raise CubeError(f"{map_path}: expected a 2-D map, got shape {data.shape}")
    result = QuicklookResult()
    finite = np.isfinite(data)
    result.finite_fraction = float(finite.mean())
    if finite.any():
        result.peak_value = float(np.nanmax(data))
    else:
        result.warnings.append(f"{map_path.name}: all pixels are NaN")
    cel = wcs.celestial if wcs.has_celestial else wcs
    result.outputs["map"] = _draw_map(
        data, cel, stem, str(hdr.get("BUNIT", "")).strip(), out_dir / f"{stem}_map.png"
    )
    return result


def quicklooks_for(path: str | Path, out_dir: str | Path) -> QuicklookResult:
    """Cube views for 3-D data, a map for 2-D data (dimension read from the header)."""
    from astropy.io import fits

    hdr = fits.getheader(path)
    ndim = sum(1 for i in range(1, int(hdr.get("NAXIS", 0)) + 1) if int(hdr.get(f"NAXIS{i}", 1)) > 1)
    if ndim >= 3:
        return cube_quicklooks(path, out_dir)
    return map_quicklook(path, out_dir)
