"""QA report figures: matplotlib (Agg) and astropy WCSAxes, one PNG per figure.

Every function writes one PNG and returns a :class:`Figure` (file, alt text, caption), so the
report can say what each plot shows. Figures are small (web-sized, 90 dpi) to keep report
generation cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DPI = 90


@dataclass
class Figure:
    """A written figure: ``path`` (PNG), ``alt`` (what is drawn), ``caption`` (how to read it)."""

    path: str
    alt: str
    caption: str
    stage: str
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    tmp.replace(path)
    return str(path)


def _beam_ellipse(ax: Any, header: Any, shape: tuple[int, int]) -> bool:
    """Draw the beam (BMAJ/BMIN/BPA) in the lower left corner; False when there is none."""
    from astropy.wcs import WCS  # noqa: PLC0415
    from astropy.wcs.utils import proj_plane_pixel_scales  # noqa: PLC0415
    from matplotlib.patches import Ellipse  # noqa: PLC0415

    if "BMAJ" not in header or "BMIN" not in header:
        return False
    pix = float(np.mean(proj_plane_pixel_scales(WCS(header).celestial)))
    major, minor = float(header["BMAJ"]) / pix, float(header["BMIN"]) / pix
    pad = max(major, 4.0)
    # BPA is east of north; with north up and east left the ellipse angle from +x is 90 + BPA
    ax.add_patch(Ellipse((pad, pad), width=minor, height=major, angle=float(header.get("BPA", 0.0)),
                         facecolor="white", edgecolor="black", linewidth=1.0))
    return True


def map_with_beam(data2d: np.ndarray, header: Any, mask2d: np.ndarray | None, path: Path, *, title: str,
                  unit: str, stage: str, subject: str, what: str) -> Figure:
    """A sky map on WCS axes with the beam ellipse and the mask outline."""
    from astropy.wcs import WCS  # noqa: PLC0415

    plt = _pyplot()
    wcs = WCS(header).celestial
    fig = plt.figure(figsize=(5.0, 4.2))
    ax = fig.add_subplot(1, 1, 1, projection=wcs)
    finite = data2d[np.isfinite(data2d)]
    vmin, vmax = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    im = ax.imshow(data2d, origin="lower", cmap="inferno", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    contour = False
    if mask2d is not None and mask2d.shape == data2d.shape and mask2d.any() and not mask2d.all():
        ax.contour(mask2d.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        contour = True
    beam = _beam_ellipse(ax, header, data2d.shape)
    ax.set_xlabel("RA")
    ax.set_ylabel("Dec")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=unit, shrink=0.85)
    alt = f"{what} map of {subject} in {unit} on sky coordinates"
    caption = f"{what} of {subject}."
    if contour:
        caption += " Cyan contour: outline of the signal mask."
        alt += ", with the signal mask outlined in cyan"
    if beam:
        caption += " White ellipse (lower left): the beam (FWHM)."
        alt += " and the beam drawn in the lower left corner"
    return Figure(_save(fig, path), alt + ".", caption, stage, subject)


def noise_histogram(z: np.ndarray, path: Path, *, stage: str, subject: str) -> Figure:
    """Histogram of cube / noise outside the mask against the unit Gaussian (log y)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    z = z[np.isfinite(z)]
    bins = np.linspace(-8, 8, 81)
    counts, edges = np.histogram(np.clip(z, -8, 8), bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.step(centres, np.maximum(counts, 0.5), where="mid", color="k", label="cube / noise")
    width = edges[1] - edges[0]
    gauss = z.size * width * np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi)
    ax.plot(centres, np.maximum(gauss, 0.5), color="tab:red", label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(0.5, max(counts.max(), 1) * 3)
    ax.set_xlabel("signal-to-noise (cube / noise cube)")
    ax.set_ylabel("voxels")
    ax.legend(fontsize=8)
    ax.set_title(f"noise distribution, {subject}", fontsize=9)
    alt = (f"Histogram of cube divided by noise cube outside the signal mask for {subject}, "
           "with a unit Gaussian overlaid, logarithmic counts.")
    caption = ("Signal-free voxels of the cube divided by the noise cube (black) and the expected unit "
               "Gaussian (red). Wings beyond the red curve mean non-Gaussian noise or emission outside "
               "the mask; a narrower or wider core means a wrong noise estimate.")
    return Figure(_save(fig, path), alt, caption, stage, subject)


def spectra(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, *, stage: str,
            subject: str) -> Figure:
    """Integrated spectra (velocity km/s, flux Jy) of several cubes over the same area."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, v, f in curves:
        ax.step(v, f, where="mid", label=label, linewidth=1.1)
    ax.axhline(0, color="0.6", linewidth=0.6)
    ax.set_xlabel("velocity (km/s)")
    ax.set_ylabel("flux density (Jy)")
    ax.legend(fontsize=8)
    ax.set_title(f"integrated spectra, {subject}", fontsize=9)
    names = ", ".join(c[0] for c in curves)
    alt = f"Integrated spectra of {subject} ({names}) as flux density against velocity."
    caption = ("Spectra summed over the interferometer footprint. The feathered cube should follow the "
               "total-power spectrum; the interferometer-only cube falls below it by the flux in "
               "scales the array does not sample.")
    return Figure(_save(fig, path), alt, caption, stage, subject)


def clean_convergence(records: Sequence[Mapping[str, Any]], labels: Sequence[str], path: Path, *,
                      stage: str, subject: str) -> Figure:
    """Model flux per clean loop, one line per chunk, multiscale then single-scale."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
    n_lines = 0
    for rec, label in zip(records, labels, strict=True):
        result = rec.get("result")
        stages = (result.get("stages") if isinstance(result, Mapping) else None) or {}
        x0 = 0
        for name, style in (("multiscale", "-"), ("singlescale", "--"), ("clean", ":")):
            loops = stages.get(name) or []
            if not loops:
                continue
            flux = [lp.get("model_flux") for lp in loops]
            frac = [lp.get("frac_delta_flux") for lp in loops]
            x = np.arange(x0, x0 + len(loops))
            color = f"C{n_lines % 10}"
            ax1.plot(x, [np.nan if f is None else float(f) for f in flux], style, marker="o", ms=3,
                     color=color, label=f"{label} {name}" if n_lines < 8 else None)
            fr = [float(f) if isinstance(f, (int, float)) and math.isfinite(f) and f > 0 else np.nan for f in frac]
            ax2.plot(x, fr, style, marker="o", ms=3, color=color)
            x0 += len(loops)
        n_lines += 1
    ax1.set_xlabel("clean loop")
    ax1.set_ylabel("model flux (Jy)")
    ax2.set_xlabel("clean loop")
    ax2.set_ylabel("fractional change of model flux")
    if np.isfinite(ax2.get_ylim()).all():
        ax2.set_yscale("log")
    if n_lines:
        ax1.legend(fontsize=6)
    fig.suptitle(f"clean convergence, {subject}", fontsize=9)
    alt = (f"Clean convergence curves of {subject}: model flux and its fractional change per clean loop, "
           f"for {n_lines} image(s).")
    caption = ("Left: model flux after each clean loop (solid multiscale, dashed single-scale). Right: "
               "fractional change of the model flux, which must fall below the convergence limit; a curve "
               "still falling at the last loop means clean stopped at the loop cap.")
    return Figure(_save(fig, path), alt, caption, stage, subject)


def chunk_timeline(bars: Sequence[tuple[str, str, float, float]], path: Path, *, stage: str,
                   subject: str) -> Figure:
    """Horizontal bars (task, label, start s, duration s) of every imaging chunk."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, max(2.0, 0.18 * len(bars) + 1.0)))
    tasks = sorted({b[0] for b in bars})
    colors = {t: f"C{i % 10}" for i, t in enumerate(tasks)}
    for i, (task, _label, start, dur) in enumerate(bars):
        ax.barh(i, dur, left=start, color=colors[task], height=0.8)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([f"{b[0].rsplit('.', 1)[-1]} {b[1]}" for b in bars], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first chunk started")
    from matplotlib.patches import Patch  # noqa: PLC0415

    ax.legend(handles=[Patch(color=colors[t], label=t) for t in tasks], fontsize=6, loc="lower right")
    ax.set_title("imaging chunk timeline", fontsize=9)
    alt = f"Timeline of {len(bars)} imaging chunk tasks as horizontal bars from start to end."
    caption = ("Each bar is one chunk task, from its start to its end (from the QA record's elapsed time and "
               "finish time). Long bars are stragglers; gaps show idle workers.")
    return Figure(_save(fig, path), alt, caption, stage, subject)
