"""ALMA total-power measurement sets -> one single-dish cube (PHANGS' SingleDishHandler).

The chain, with the tasks casatasks 6.7 has (the ASAP tasks and ``scaleautocorr`` are gone):

1. **inspect** every measurement set before anything is written: autocorrelations of TP
   antennas (``PM##`` / ``T7##``), the spectral window covering the product's velocity grid
   (LSRK, radio) with enough line-free channels, ON / OFF integrations (STATE intents), a
   ``SYSCAL`` table, DATA or FLOAT_DATA, the pointing extent; a ``jyperk.csv`` must hold every
   TP antenna of the MS; a grid finer than the native channels is refused;
2. **calibrate** (in a copy of the autocorrelations, spw ids kept): ``sdcal`` ``ps`` (OFF integrations) or ``otfraster`` (no OFF
   integrations) together with ``tsys`` when a SYSCAL table exists, plus the Jy/K table of
   ``gencal(caltype='jyperk')`` when a ``jyperk.csv`` is given, applied at once with
   ``sdcal(calmode='apply')``; data already on the K scale (no SYSCAL, no OFF) pass through
   (the Jy/K table alone is then applied with ``sdcal(calmode='apply')`` too);
3. **select** the ON-source autocorrelations of the line spw (``split``, intent
   ``OBSERVE_TARGET#ON_SOURCE``);
4. **baseline**: ``sdbaseline`` poly of order ``bl_order``, ``maskmode='list'`` over the
   line-free channels (outside ``vsys +- (vwidth/2 + line_wing_kms)``); the baseline tables
   are kept next to the cube; rms of the line-free residuals per antenna;
5. **grid** all antennas and MSes with ``tsdimaging`` (GJINC, cell lambda/(3D)) onto the
   product's LSRK radio velocity grid; the map covers every ON pointing plus a beam;
6. **K -> Jy/beam**: data already in Jy (jyperk path) or the factor ``2 k nu^2 Omega / c^2``
   of the beam the image has (beam-factor path); BUNIT says Jy/beam either way;
7. **export** FITS (RA, Dec, VRAD; ``exportfits(velocity=True, dropstokes=True)``) under a
   temporary name, **validate** it (spectral-cube reads it, a beam, the velocity axis equals
   the product grid), then rename: nothing half-written.

casatools / casatasks only through :mod:`phangs_operators.casa`; no Airflow, no key files.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.errors import StagingError

log = logging.getLogger(__name__)

C_KMS = 299792.458
K_BOLTZMANN = 1.380649e-23
#: ALMA TP antenna names (real: PM01-PM04; casadata aca.tp.cfg / simulator: T701-T704)
TP_ANTENNA_PATTERN = re.compile(r"^(PM\d\d|T7\d\d)$")
#: science intents of the ON and OFF integrations (ALMA STATE.OBS_MODE; calibration scans such as
#: ``CALIBRATE_ATMOSPHERE#OFF_SOURCE`` are neither)
ON_SOURCE = "OBSERVE_TARGET#ON_SOURCE"
OFF_SOURCE = "OBSERVE_TARGET#OFF_SOURCE"
#: minimum number of line-free channels (beyond the fitted parameters) for the baseline fit
MIN_FREE_CHANNELS = 8
#: relative tolerance of "same velocity grid"
GRID_RTOL = 1e-3


class SingleDishError(StagingError):
    """A total-power measurement set or key value cannot give the single-dish cube asked for."""


@dataclass
class SingleDishResult:
    """Outcome of :func:`make_singledish_cube` (JSON-ready through :meth:`to_dict`).

    Attributes
    ----------
    out_fits : str
        The validated cube (RA, Dec, VRAD; Jy/beam).
    bunit : str
        Brightness unit of the FITS.
    conversion : str
        ``'jyperk'`` (per antenna, ``gencal``) or ``'beam_factor'`` (from the image beam).
    jy_per_k : dict
        Factor used: per antenna (jyperk) or ``{'beam': f}`` [Jy/K].
    beam_arcsec : dict
        ``bmaj``, ``bmin`` [arcsec], ``bpa`` [deg].
    cell_arcsec, imsize : float, list
        Pixel size and map size.
    velocity_grid_kms : dict
        ``start`` (first channel centre), ``width``, ``nchan`` (LSRK radio, ascending).
    baseline_rms : dict
        Median rms of the baseline-subtracted line-free channels per antenna (``<ms>:<ant>``)
        in ``baseline_unit``.
    cube_noise_jy_beam : float
        Robust rms of the cube in its emission-free edge channels [Jy/beam].
    total_flux_jykms : float
        Sum of the cube times the channel width over the beam area [Jy km/s].
    calibration : dict
        Per MS: sdcal mode used (``'ps,tsys'``, ``'otfraster,tsys'``, ``'none'``), spw,
        line-free channel selection, number of ON rows.
    baseline_tables : list of str
        Baseline tables kept next to the cube.
    timings_s : dict
        Wall time of every step [s].
    warnings : list of str
    """

    out_fits: str
    bunit: str
    conversion: str
    jy_per_k: dict[str, float]
    beam_arcsec: dict[str, float]
    cell_arcsec: float
    imsize: list[int]
    velocity_grid_kms: dict[str, float]
    baseline_rms: dict[str, float]
    baseline_unit: str
    cube_noise_jy_beam: float
    total_flux_jykms: float
    calibration: dict[str, dict[str, Any]]
    baseline_tables: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------------------------


def jy_per_k(bmaj_arcsec: float, bmin_arcsec: float | None = None, freq_hz: float = 230.538e9) -> float:
    """Rayleigh-Jeans Jy/K of a Gaussian beam: ``2 k nu^2 Omega / c^2``, Omega = pi/(4 ln2) bmaj bmin."""
    bmin = bmaj_arcsec if bmin_arcsec is None else bmin_arcsec
    omega = math.pi / (4.0 * math.log(2.0)) * bmaj_arcsec * bmin * (math.pi / 180.0 / 3600.0) ** 2
    return 2.0 * K_BOLTZMANN * freq_hz**2 * omega / (C_KMS * 1e3) ** 2 / 1e-26


def product_velocity_grid(vsys_kms: float, vwidth_kms: float, chan_dv_kms: float,
                          interf_native_kms: Sequence[float] | None = None) -> np.ndarray:
    """Channel centres [km/s, LSRK radio, ascending] of a line product's velocity grid.

    With ``interf_native_kms`` (native channel widths of the interferometric spws) the grid is
    exactly the one staging gives the interferometric product (PHANGS extraction scheme,
    :func:`phangs_operators.routines.vis.velocity_grid`); without, it starts at
    ``vsys - vwidth/2`` with ``chan_dv_kms`` steps over ``ceil(vwidth / chan_dv_kms)`` channels.
    """
    if chan_dv_kms <= 0 or vwidth_kms <= 0:
        raise SingleDishError(f"channel width ({chan_dv_kms}) and vwidth ({vwidth_kms}) must be > 0 km/s")
    if interf_native_kms:
        from phangs_operators.routines import vis  # noqa: PLC0415

        scheme = vis.suggest_extraction_scheme(list(interf_native_kms), chan_dv_kms)[0]
        return np.sort(vis.velocity_grid(vsys_kms, vwidth_kms, scheme))
    n = int(math.ceil(vwidth_kms / chan_dv_kms - 1e-9))
    return vsys_kms - vwidth_kms / 2.0 + chan_dv_kms * np.arange(n)


def _uniform_grid(grid: Sequence[float]) -> tuple[float, float, int]:
    v = np.sort(np.asarray(grid, dtype=float))
    if v.size < 2:
        raise SingleDishError(f"velocity grid needs >= 2 channels, got {v.size}")
    d = np.diff(v)
    if np.ptp(d) > 1e-6 * abs(d.mean()) + 1e-9:
        raise SingleDishError("velocity grid is not uniform")
    return float(v[0]), float(d.mean()), int(v.size)


def channel_ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index runs of the True values of a 1-D mask."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def read_jyperk_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of an ALMA ``jyperk.csv`` (``MS,Antenna,Spwid,Polarization,Factor``)."""
    p = Path(path)
    if not p.is_file():
        raise SingleDishError(f"jyperk file {p} not found")
    rows = []
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"MS", "Antenna", "Spwid", "Polarization", "Factor"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise SingleDishError(f"{p}: header must hold {sorted(need)}, got {reader.fieldnames}")
        for k, row in enumerate(reader, start=2):
            try:
                rows.append({"ms": row["MS"].strip(), "antenna": row["Antenna"].strip(),
                             "spw": int(row["Spwid"]), "pol": row["Polarization"].strip(),
                             "factor": float(row["Factor"])})
            except (TypeError, ValueError) as exc:
                raise SingleDishError(f"{p} line {k}: cannot parse {row} ({exc})") from exc
    return rows


# ---------------------------------------------------------------------------------------------
# inspection (nothing written)
# ---------------------------------------------------------------------------------------------


@dataclass
class _MsPlan:
    path: Path
    spw: int
    column: str  # 'data' or 'float_data'
    tp_antennas: list[str]
    on_states: list[int]
    has_off: bool
    has_syscal: bool
    free_chans: list[tuple[int, int]]
    native_kms: float
    n_on_rows: int
    max_offset_arcsec: float
    ref_freq_hz: float
    sdcal_mode: str


def _phasecenter_rad(phasecenter: str) -> tuple[float, float]:
    from astropy.coordinates import SkyCoord  # noqa: PLC0415

    parts = phasecenter.split()
    if len(parts) == 3:
        parts = parts[1:]
    try:
        c = SkyCoord(parts[0], parts[1], frame="fk5")
    except Exception as exc:
        raise SingleDishError(f"cannot parse phase centre {phasecenter!r}: {exc}") from exc
    return float(c.ra.rad), float(c.dec.rad)


def _inspect_ms(ct: Any, ms: Path, *, restfreq_ghz: float, vsys_kms: float, vwidth_kms: float,
                line_wing_kms: float, grid: tuple[float, float, int], bl_order: int,
                centre_rad: tuple[float, float]) -> _MsPlan:
    if not (ms / "table.dat").exists():
        raise SingleDishError(f"{ms}: not a measurement set")
    tb = ct.table()
    try:
        tb.open(str(ms))
        cols = tb.colnames()
        kw = tb.getkeywords()
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        state = tb.getcol("STATE_ID")
        times = tb.getcol("TIME")
        ddid = tb.getcol("DATA_DESC_ID")
        tb.close()
        tb.open(str(ms / "ANTENNA"))
        ant_names = list(tb.getcol("NAME"))
        tb.close()
        tb.open(str(ms / "STATE"))
        obs_modes = list(tb.getcol("OBS_MODE")) if tb.nrows() else []
        tb.close()
        tb.open(str(ms / "DATA_DESCRIPTION"))
        dd_spw = tb.getcol("SPECTRAL_WINDOW_ID")
        tb.close()
        has_syscal = False
        syscal_spws: list[int] = []
        if "SYSCAL" in kw:
            tb.open(str(ms / "SYSCAL"))
            has_syscal = tb.nrows() > 0
            syscal_spws = sorted(set(int(x) for x in tb.getcol("SPECTRAL_WINDOW_ID"))) if has_syscal else []
            tb.close()
        tb.open(str(ms / "POINTING"))
        pdir = tb.getcol("DIRECTION")[:, 0, :] if tb.nrows() else np.zeros((2, 0))
        ptime = tb.getcol("TIME") if tb.nrows() else np.zeros(0)
        tb.close()
    finally:
        tb.close()
        tb.done()
    auto = a1 == a2
    if not auto.any():
        raise SingleDishError(f"{ms}: no autocorrelations (single-dish data wanted, found only cross-correlations)")
    auto_ants = sorted({ant_names[i] for i in np.unique(a1[auto])})
    tp_ants = [str(a) for a in auto_ants if TP_ANTENNA_PATTERN.match(a)]
    if not tp_ants:
        raise SingleDishError(f"{ms}: no ALMA TP antenna (PM##/T7##) has autocorrelations; antennas: {auto_ants}")
    column = "float_data" if "FLOAT_DATA" in cols else "data"
    if obs_modes:
        on_states = [k for k, m in enumerate(obs_modes) if ON_SOURCE in m]
        off_states = [k for k, m in enumerate(obs_modes) if OFF_SOURCE in m]
    else:
        on_states, off_states = [], []
    on_rows = auto & (np.isin(state, on_states) if on_states else True)
    if not np.any(on_rows):
        raise SingleDishError(f"{ms}: no ON-source ({ON_SOURCE}) autocorrelation rows")
    has_off = bool(off_states) and bool(np.any(np.isin(state[auto], off_states)))
    # spectral window covering the grid (LSRK)
    v0, dv, n = grid
    grid_lo, grid_hi = v0 - dv / 2.0, v0 + (n - 0.5) * dv
    want = (vsys_kms - vwidth_kms / 2.0 - line_wing_kms, vsys_kms + vwidth_kms / 2.0 + line_wing_kms)
    spws = sorted({int(dd_spw[d]) for d in np.unique(ddid[on_rows])})
    m = ct.ms()
    best: tuple[int, np.ndarray] | None = None
    found = []
    try:
        m.open(str(ms))
        for spw in spws:
            f = np.asarray(m.cvelfreqs(spwids=[spw], mode="channel", outframe="LSRK"), dtype=float)
            vel = C_KMS * (1.0 - f / (restfreq_ghz * 1e9))
            found.append((spw, float(vel.min()), float(vel.max())))
            if vel.size > 1 and vel.min() <= grid_lo and vel.max() >= grid_hi:
                best = (spw, vel)
                break
    finally:
        m.close()
        m.done()
    if best is None:
        raise SingleDishError(
            f"{ms}: no spectral window covers the line grid {grid_lo:.1f}~{grid_hi:.1f} km/s (LSRK radio, "
            f"rest {restfreq_ghz} GHz); windows cover " + ", ".join(f"spw {s}: {a:.1f}~{b:.1f}" for s, a, b in found))
    spw, vel = best
    native = float(np.max(np.abs(np.diff(vel))))
    if dv < native * (1.0 - 1e-6):
        raise SingleDishError(
            f"{ms}: velocity grid of {dv:.4f} km/s is finer than the native channels of spw {spw} "
            f"({native:.4f} km/s); grid at >= the native width")
    free = (vel < want[0]) | (vel > want[1])
    if int(free.sum()) < MIN_FREE_CHANNELS + bl_order + 1:
        raise SingleDishError(
            f"{ms}: spw {spw} has {int(free.sum())} line-free channels outside {want[0]:.1f}~{want[1]:.1f} km/s; "
            f"at least {MIN_FREE_CHANNELS + bl_order + 1} are needed for a baseline of order {bl_order}")
    if has_syscal and spw not in syscal_spws:
        raise SingleDishError(
            f"{ms}: the SYSCAL table holds Tsys for spw {syscal_spws}, not for the line spw {spw}; "
            "Tsys spw mapping is not implemented")
    if has_syscal:
        mode = "ps,tsys" if has_off else "otfraster,tsys"
    elif has_off:
        raise SingleDishError(
            f"{ms}: OFF integrations but no SYSCAL table: the data cannot be put on the K scale (Tsys wanted)")
    else:
        mode = "none"
    # pointing extent of the ON integrations (pointing rows nearest in time to ON rows)
    max_off = 0.0
    if pdir.shape[1]:
        on_times = np.unique(times[on_rows])
        step = float(np.median(np.diff(on_times))) if on_times.size > 1 else 1.0
        k = np.clip(np.searchsorted(on_times, ptime), 1, max(on_times.size - 1, 1))
        near = np.minimum(np.abs(ptime - on_times[k - 1]), np.abs(ptime - on_times[np.minimum(k, on_times.size - 1)]))
        sel = near <= 0.5 * step
        ra0, dec0 = centre_rad
        dra = (pdir[0, sel] - ra0 + np.pi) % (2.0 * np.pi) - np.pi
        r = np.degrees(np.hypot(dra * np.cos(dec0), pdir[1, sel] - dec0)) * 3600.0
        max_off = float(r.max()) if r.size else 0.0
    return _MsPlan(path=ms, spw=spw, column=column, tp_antennas=tp_ants, on_states=on_states,
                   has_off=has_off, has_syscal=has_syscal, free_chans=channel_ranges(free), native_kms=native,
                   n_on_rows=int(np.sum(on_rows & np.isin(ddid, np.flatnonzero(dd_spw == spw)))),
                   max_offset_arcsec=max_off,
                   ref_freq_hz=float(restfreq_ghz * 1e9 * (1.0 - vsys_kms / C_KMS)), sdcal_mode=mode)


def _check_jyperk(rows: list[dict[str, Any]], plan: _MsPlan, csv_path: Path) -> dict[str, float]:
    name = plan.path.name
    mine = [r for r in rows if r["ms"] == name and r["spw"] == plan.spw]
    factors = {r["antenna"]: r["factor"] for r in mine}
    missing = [a for a in plan.tp_antennas if a not in factors]
    if missing:
        raise SingleDishError(
            f"{csv_path}: no Jy/K factor for MS {name} spw {plan.spw} antenna(s) {missing} "
            f"(has {sorted(factors) or 'none for this MS'})")
    return {f"{name}:{a}": factors[a] for a in plan.tp_antennas}


# ---------------------------------------------------------------------------------------------
# reduction steps
# ---------------------------------------------------------------------------------------------


def _require(path: Path, step: str, ms: Path) -> Path:
    """CASA tasks often log an error and return: check that the step wrote its output."""
    if not path.exists():
        raise SingleDishError(f"{ms}: {step} wrote no {path.name} (see the CASA log)")
    return path


def _calibrate(cta: Any, plan: _MsPlan, work: Path, jyperk_csv: Path | None, index: int) -> tuple[Path, str]:
    """Copy (autocorrelations of the line spw), sdcal / jyperk in the copy; returns (MS, column)."""
    sub = work / f"cal{index}"
    sub.mkdir(parents=True, exist_ok=True)
    copy = sub / plan.path.name  # same basename: the jyperk.csv MS column refers to it
    # every spw is kept (ids unchanged: jyperk.csv and SYSCAL refer to them); sdcal works on the line spw
    cta.split(vis=str(plan.path), outputvis=str(copy), antenna="*&&&",
              datacolumn=plan.column, keepflags=True)
    _require(copy, "split (autocorrelations of the line spw)", plan.path)
    tables: list[str] = []
    if plan.sdcal_mode != "none":
        sky_mode = plan.sdcal_mode.split(",")[0]
        sky = sub / "sky.tbl"
        tsys = sub / "tsys.tbl"
        cta.sdcal(infile=str(copy), calmode=sky_mode, spw=str(plan.spw), outfile=str(sky), overwrite=True)
        # calmode='tsys' accepts only spw='' (all): SYSCAL rows of every spw
        cta.sdcal(infile=str(copy), calmode="tsys", outfile=str(tsys), overwrite=True)
        tables += [str(_require(sky, f"sdcal {sky_mode}", plan.path)), str(_require(tsys, "sdcal tsys", plan.path))]
    if jyperk_csv is not None:
        jk = sub / "jyperk.tbl"
        cta.gencal(vis=str(copy), caltable=str(jk), caltype="jyperk", infile=str(jyperk_csv))
        tables.append(str(_require(jk, f"gencal jyperk ({jyperk_csv})", plan.path)))
    if not tables:
        return copy, "data"
    # sdcal apply handles DATA and FLOAT_DATA alike (sky, Tsys and Jy/K tables at once)
    cta.sdcal(infile=str(copy), calmode="apply", spw=str(plan.spw), applytable=tables, outfile="")
    return copy, "corrected"


def _select_on(cta: Any, plan: _MsPlan, ms: Path, column: str, out: Path) -> Path:
    intent = f"{ON_SOURCE}*" if plan.on_states else ""
    cta.split(vis=str(ms), outputvis=str(out), spw=str(plan.spw), intent=intent, datacolumn=column,
              keepflags=True)
    return _require(out, "split (ON-source rows)", plan.path)


def _baseline(cta: Any, ct: Any, plan: _MsPlan, ms: Path, out: Path, bl_order: int,
              bltable: Path) -> dict[str, float]:
    """sdbaseline over the line-free channels; returns median line-free rms per antenna."""
    sel = ";".join(f"{a}~{b}" for a, b in plan.free_chans)
    column = "float_data" if plan.column == "float_data" and _has_column(ct, ms, "FLOAT_DATA") else "data"
    cta.sdbaseline(infile=str(ms), datacolumn=column, spw=f"0:{sel}", maskmode="list", blfunc="poly",
                   order=int(bl_order), outfile=str(out), overwrite=True, blformat="table",
                   bloutput=str(bltable), dosubtract=True)
    _require(out, "sdbaseline", plan.path)
    tb = ct.table()
    try:
        tb.open(str(out))
        colname = "FLOAT_DATA" if "FLOAT_DATA" in tb.colnames() else "DATA"
        data = tb.getcol(colname)
        data = data.real if np.iscomplexobj(data) else data
        flags = tb.getcol("FLAG")
        ant = tb.getcol("ANTENNA1")
        tb.close()
        tb.open(str(out / "ANTENNA"))
        names = list(tb.getcol("NAME"))
    finally:
        tb.close()
        tb.done()
    free = np.zeros(data.shape[1], dtype=bool)
    for a, b in plan.free_chans:
        free[a:b + 1] = True
    resid = np.where(flags[:, free, :], np.nan, data[:, free, :])
    rms = np.sqrt(np.nanmean(resid**2, axis=1))  # (npol, nrow)
    out_rms = {}
    for a in np.unique(ant):
        out_rms[f"{plan.path.name}:{names[a]}"] = float(np.nanmedian(rms[:, ant == a]))
    return out_rms


def _has_column(ct: Any, ms: Path, name: str) -> bool:
    tb = ct.table()
    try:
        tb.open(str(ms))
        return name in tb.colnames()
    finally:
        tb.close()
        tb.done()


def _validate_fits(path: Path, grid: tuple[float, float, int], restfreq_ghz: float) -> dict[str, Any]:
    """spectral-cube reads it, a beam, velocity axis = grid; returns beam, noise, flux."""
    from astropy import units as u  # noqa: PLC0415
    from spectral_cube import SpectralCube  # noqa: PLC0415

    try:
        cube = SpectralCube.read(str(path))
    except Exception as exc:
        raise SingleDishError(f"{path}: spectral-cube cannot read the exported cube ({exc})") from exc
    try:
        beam = cube.beam
    except Exception as exc:
        raise SingleDishError(f"{path}: no beam in the exported cube ({exc})") from exc
    vcube = cube.with_spectral_unit(u.km / u.s, velocity_convention="radio",
                                    rest_value=restfreq_ghz * u.GHz)
    vel = np.sort(vcube.spectral_axis.to_value(u.km / u.s))
    v0, dv, n = grid
    want = v0 + dv * np.arange(n)
    if vel.size != n or np.max(np.abs(vel - want)) > GRID_RTOL * abs(dv):
        raise SingleDishError(
            f"{path}: velocity axis {vel[:2]}..({vel.size} ch) is not the product grid {want[:2]}..({n} ch)")
    data = np.asarray(cube.unmasked_data[:].value, dtype=np.float64)
    bmaj = float(beam.major.to_value(u.arcsec))
    bmin = float(beam.minor.to_value(u.arcsec))
    pix = abs(float(cube.wcs.wcs.cdelt[0])) * 3600.0
    beam_pix = math.pi / (4.0 * math.log(2.0)) * bmaj * bmin / pix**2
    total = float(np.nansum(data) / beam_pix * abs(dv))
    k = max(1, n // 10)
    edge = np.concatenate([data[:k].ravel(), data[-k:].ravel()])
    edge = edge[np.isfinite(edge)]
    noise = float(1.4826 * np.median(np.abs(edge - np.median(edge)))) if edge.size else float("nan")
    return {"beam": {"bmaj": bmaj, "bmin": bmin, "bpa": float(beam.pa.to_value(u.deg))},
            "noise": noise, "flux": total, "bunit": str(cube.unit)}


def make_singledish_cube(
    tp_ms_list: Sequence[str | os.PathLike[str]],
    out_fits: str | os.PathLike[str],
    *,
    restfreq_ghz: float,
    vsys_kms: float,
    vwidth_kms: float,
    chan_dv_kms: float,
    bl_order: int = 1,
    line_wing_kms: float = 200.0,
    phasecenter: str,
    jyperk_csv: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    velocity_grid_kms: Sequence[float] | None = None,
    cell_arcsec: float | None = None,
    workdir: str | os.PathLike[str],
    overwrite: bool = False,
) -> SingleDishResult:
    """Reduce ALMA TP measurement sets of one target to one single-dish line cube (FITS).

    Parameters
    ----------
    tp_ms_list : sequence of path
        TP measurement sets (autocorrelations of PM##/T7## antennas; DATA or FLOAT_DATA).
    out_fits : path
        Output cube (RA, Dec, VRAD; Jy/beam); written under a temporary name, validated,
        then renamed.  Baseline tables go to ``<out_fits stem>.baseline/``.
    restfreq_ghz : float
        Rest frequency of the line [GHz].
    vsys_kms, vwidth_kms : float
        Systemic velocity and full width of the product window [km/s, LSRK radio].
    chan_dv_kms : float
        Channel width of the product [km/s] (used when ``velocity_grid_kms`` is not given).
    bl_order : int
        Polynomial order of the baseline.
    line_wing_kms : float
        Extra width on each side of the line window kept out of the baseline fit [km/s].
    phasecenter : str
        Map centre, e.g. ``'J2000 12h00m00.0s -30d00m00.0s'``.
    jyperk_csv : path or list of path, optional
        ALMA ``jyperk.csv`` file(s) (one per MOUS; each MS takes the file that names it);
        without it K -> Jy/beam uses the image beam's factor.
    velocity_grid_kms : sequence of float, optional
        The interferometric product's channel centres [km/s] (see
        :func:`product_velocity_grid`); default: from ``vsys``, ``vwidth``, ``chan_dv_kms``.
    cell_arcsec : float, optional
        Map pixel; default lambda/(3D) (about beam/4).
    workdir : path
        Scratch directory (intermediate MSes, caltables, images).
    overwrite : bool
        Re-make the cube when ``out_fits`` exists (else the existing cube is described).

    Returns
    -------
    SingleDishResult

    Raises
    ------
    SingleDishError
        Bad input (no autocorrelations, no TP antennas, spw not covering the line, jyperk.csv
        without the MS's antennas, grid finer than the native channels, ...): the message
        names the MS and what was wanted; nothing is written to ``out_fits``.
    """
    from phangs_operators.casa import casatasks, casatools  # noqa: PLC0415

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    out = Path(out_fits).resolve()
    if not tp_ms_list:
        raise SingleDishError(f"no TP measurement set given for {out.name}")
    grid_v = (velocity_grid_kms if velocity_grid_kms is not None
              else product_velocity_grid(vsys_kms, vwidth_kms, chan_dv_kms))
    grid = _uniform_grid(grid_v)
    if out.exists() and not overwrite:
        info = _validate_fits(out, grid, restfreq_ghz)
        log.info("%s exists; not re-made (overwrite=False)", out)
        return SingleDishResult(out_fits=str(out), bunit=info["bunit"], conversion="existing", jy_per_k={},
                                beam_arcsec=info["beam"], cell_arcsec=float("nan"), imsize=[],
                                velocity_grid_kms={"start": grid[0], "width": grid[1], "nchan": grid[2]},
                                baseline_rms={}, baseline_unit="", cube_noise_jy_beam=info["noise"],
                                total_flux_jykms=info["flux"], calibration={},
                                warnings=["existing cube kept"])
    ct = casatools()
    cta = casatasks()
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    centre = _phasecenter_rad(phasecenter)

    # 1. inspect everything before writing anything
    t0 = time.perf_counter()
    plans = []
    for p in tp_ms_list:
        ms = Path(p).resolve()
        if not ms.is_dir():
            raise SingleDishError(f"TP measurement set {ms} not found")
        plans.append(_inspect_ms(ct, ms, restfreq_ghz=restfreq_ghz, vsys_kms=vsys_kms, vwidth_kms=vwidth_kms,
                                 line_wing_kms=line_wing_kms, grid=grid, bl_order=bl_order, centre_rad=centre))
    names = [pl.path.name for pl in plans]
    if len(set(names)) != len(names):
        raise SingleDishError(f"TP measurement sets must have distinct names (jyperk.csv keys on them): {names}")
    if not jyperk_csv:
        csv_list: list[Path] = []
    elif isinstance(jyperk_csv, (str, os.PathLike)):
        csv_list = [Path(jyperk_csv).resolve()]
    else:
        csv_list = [Path(c).resolve() for c in jyperk_csv]
    factors: dict[str, float] = {}
    csv_of: dict[int, Path | None] = {k: None for k in range(len(plans))}
    if csv_list:
        tables = [(c, read_jyperk_csv(c)) for c in csv_list]
        for k, pl in enumerate(plans):
            # the file holding rows of this MS (ALMA: one jyperk.csv per MOUS)
            c, rows = next(((c, r) for c, r in tables if any(x["ms"] == pl.path.name for x in r)), tables[0])
            factors.update(_check_jyperk(rows, pl, c))
            csv_of[k] = c
    jk_path = csv_list[0] if csv_list else None
    timings["inspect"] = round(time.perf_counter() - t0, 3)

    run = work / f"sd_{out.stem}"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    bl_dir_tmp = run / "baseline"
    bl_dir_tmp.mkdir()
    calibration: dict[str, dict[str, Any]] = {}
    rms: dict[str, float] = {}
    bl_ms: list[str] = []
    t_cal = t_sel = t_bl = 0.0
    for k, pl in enumerate(plans):
        step = "calibration"
        try:
            t0 = time.perf_counter()
            cal_ms, column = _calibrate(cta, pl, run, csv_of[k], k)
            t_cal += time.perf_counter() - t0
            step, t0 = "ON-source selection", time.perf_counter()
            on_ms = _select_on(cta, pl, cal_ms, column, run / f"on{k}.ms")
            shutil.rmtree(cal_ms.parent, ignore_errors=True)
            t_sel += time.perf_counter() - t0
            step, t0 = "baseline subtraction", time.perf_counter()
            out_bl = run / f"bl{k}.ms"
            rms.update(_baseline(cta, ct, pl, on_ms, out_bl, bl_order, bl_dir_tmp / f"{pl.path.stem}.bltable"))
            shutil.rmtree(on_ms, ignore_errors=True)
            bl_ms.append(str(out_bl))
            t_bl += time.perf_counter() - t0
        except SingleDishError:
            raise
        except Exception as exc:  # CASA raises RuntimeError / AssertionError of its own
            raise SingleDishError(f"{pl.path}: {step} failed: {exc}") from exc
        calibration[str(pl.path)] = {
            "sdcal": pl.sdcal_mode, "spw": pl.spw, "column": pl.column, "antennas": pl.tp_antennas,
            "on_rows": pl.n_on_rows, "native_kms": pl.native_kms,
            "line_free_channels": ";".join(f"{a}~{b}" for a, b in pl.free_chans)}
        if pl.sdcal_mode == "none":
            warnings.append(f"{pl.path.name}: no SYSCAL/OFF data, taken as already on the K scale")
    timings.update({"calibrate": round(t_cal, 3), "select_on": round(t_sel, 3), "baseline": round(t_bl, 3)})

    # 5. grid
    t0 = time.perf_counter()
    ref_freq = plans[0].ref_freq_hz
    cell = cell_arcsec or round(math.degrees(C_KMS * 1e3 / ref_freq / (3.0 * 12.0)) * 3600.0, 2)
    extent = max(pl.max_offset_arcsec for pl in plans)
    npix = int(2 * math.ceil((extent + 30.0) / cell)) + 1
    prefix = run / "tp_cube"
    v0, dv, n = grid
    jy_path = jk_path is not None
    try:
        cta.tsdimaging(infiles=bl_ms, outfile=str(prefix), overwrite=True, mode="velocity", nchan=n,
                       start=f"{v0:.8f}km/s", width=f"{dv:.8f}km/s", veltype="radio", outframe="LSRK",
                       restfreq=f"{restfreq_ghz:.8f}GHz", gridfunction="GJINC", cell=f"{cell}arcsec",
                       imsize=[npix, npix], phasecenter=phasecenter, stokes="I",
                       brightnessunit="Jy/beam" if jy_path else "K")
    except Exception as exc:
        raise SingleDishError(f"tsdimaging of {names} onto {n} x {dv:.4f} km/s failed: {exc}") from exc
    image = Path(f"{prefix}.image")
    if not image.is_dir():
        raise SingleDishError(f"tsdimaging wrote no image for {names} (see the CASA log)")
    timings["grid"] = round(time.perf_counter() - t0, 3)

    # 6./7. export, K -> Jy/beam, validate, publish
    t0 = time.perf_counter()
    tmp_fits = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        cta.exportfits(imagename=str(image), fitsimage=str(tmp_fits), velocity=True, dropstokes=True,
                       dropdeg=True, bitpix=-32, overwrite=True)
        conv = _to_jy_per_beam(tmp_fits, jy_path, factors, ref_freq)
        info = _validate_fits(tmp_fits, grid, restfreq_ghz)
        bl_final = out.with_name(out.stem + ".baseline")
        if bl_final.exists():
            shutil.rmtree(bl_final)
        os.replace(bl_dir_tmp, bl_final)
        os.replace(tmp_fits, out)
    finally:
        if tmp_fits.exists():
            tmp_fits.unlink()
    timings["export_validate"] = round(time.perf_counter() - t0, 3)
    shutil.rmtree(run, ignore_errors=True)
    timings["total"] = round(time.perf_counter() - t_all, 3)
    result = SingleDishResult(
        out_fits=str(out), bunit="Jy/beam", conversion="jyperk" if jy_path else "beam_factor",
        jy_per_k=conv, beam_arcsec=info["beam"], cell_arcsec=cell, imsize=[npix, npix],
        velocity_grid_kms={"start": v0, "width": dv, "nchan": n}, baseline_rms=rms,
        baseline_unit="Jy/beam" if jy_path else "K", cube_noise_jy_beam=info["noise"],
        total_flux_jykms=info["flux"], calibration=calibration,
        baseline_tables=sorted(str(p) for p in bl_final.iterdir()), timings_s=timings, warnings=warnings)
    log.info("single-dish cube %s: beam %.1f\", noise %.3g Jy/beam, flux %.2f Jy km/s (%.1f s)", out,
             info["beam"]["bmaj"], info["noise"], info["flux"], timings["total"])
    return result


def _to_jy_per_beam(fits_path: Path, already_jy: bool, factors: dict[str, float],
                    freq_hz: float) -> dict[str, float]:
    """Scale a K cube by the Jy/K of its own beam at ``freq_hz`` (in place); BUNIT = Jy/beam."""
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(fits_path, mode="update") as hdul:
        hdr = hdul[0].header
        if "BMAJ" not in hdr or "BMIN" not in hdr:
            raise SingleDishError(f"{fits_path}: tsdimaging cube has no beam (BMAJ/BMIN)")
        if already_jy:
            hdr["BUNIT"] = "Jy/beam"
            return dict(factors)
        f = jy_per_k(hdr["BMAJ"] * 3600.0, hdr["BMIN"] * 3600.0, freq_hz)
        hdul[0].data = (hdul[0].data * np.float32(f)).astype(np.float32)
        hdr["BUNIT"] = "Jy/beam"
        hdr["HISTORY"] = f"K -> Jy/beam with {f:.5f} Jy/K (beam {hdr['BMAJ'] * 3600:.2f} arcsec)"
    return {"beam": f}
