"""Staging of calibrated visibilities into the PHANGS line and continuum products.

Re-implements the PHANGS ``VisHandler`` / ``casaVisRoutines`` chain (PHANGS_REFERENCE §2.1)
for casatasks 6.7, as routines that know nothing of key files or Airflow:

* :func:`stage_line_product`: per input measurement set, ``split`` the target fields and
  the spectral windows covering the line (``CORRECTED`` column, else ``DATA``;
  ``keepflags=False``) -> ``uvcontsub`` (6.5.2+ API, ``fitspec`` = the line-free channels
  computed in LSRK, ``fitorder``) -> ``mstransform`` regrid (LSRK, radio, cubic) to
  ``common_res / binfactor`` -> ``mstransform`` channel averaging by ``binfactor``; then
  ``concat`` of all pieces (12m and 7m of an interferometric configuration) and ``statwt``
  with the line channels excluded, so the arrays get their relative weights.
* :func:`stage_continuum_product`: split -> flag the line channels (LSRK) -> average every
  spectral window to one channel -> ``concat``.

The pure helpers (:func:`suggest_extraction_scheme`, :func:`velocity_grid`,
:func:`channel_selection_string`, :func:`statwt_exclusion_range`, ...) hold the arithmetic
and are unit tested with the exact PHANGS values (PHANGS_REFERENCE §11.C).

Conventions: velocities are LSRK, radio convention ``nu = nu0 (1 - v/c)`` with
``c = 2.9979246e5 km/s``; the regridded spectral window is written in ascending frequency,
so channel 0 is the *highest* velocity.

Deviations from the original code (deliberate, see the docstrings): line channels for the
continuum fit are those *overlapping* a line range (PHANGS: fully inside); the regrid channel
count is rounded up to a multiple of ``binfactor`` (PHANGS adds ``nchan % binfactor``, which is
not always a multiple); the ``statwt`` edges use the radio convention and exclude exactly
``edge`` channels per side (PHANGS: high-z convention and an off-by-one).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.casa import casa_session, casatasks, casatools
from phangs_operators.errors import StagingError
from phangs_operators.jsonable import jsonable
from phangs_operators.keys.lines import (
    C_KMS,
    get_ghz_range_for_line,
    get_ghz_ranges_for_lines,
    get_line_frequency_ghz,
    merge_ranges,
)

log = logging.getLogger(__name__)

#: relative inflation of the common channel width (PHANGS ``choose_common_res`` epsilon)
COMMON_RES_EPSILON = 3e-4
#: concat frequency tolerance as a fraction of the final channel width (PHANGS)
FREQTOL_CHANFRAC = 0.2
VALID_METHODS = ("regrid_then_rebin", "rebin_then_regrid", "just_regrid", "just_rebin")


# ---------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------


def chan_width_kms(chan_width_hz: float, restfreq_ghz: float) -> float:
    """Channel width in km/s (radio convention): ``|dnu| / nu0 * c``."""
    return abs(chan_width_hz) / (restfreq_ghz * 1e9) * C_KMS


def freq_to_vel_kms(freq_hz: np.ndarray | float, restfreq_ghz: float) -> np.ndarray:
    """Radio velocity (km/s) of frequencies (Hz) for a rest frequency (GHz)."""
    return C_KMS * (1.0 - np.asarray(freq_hz, dtype=float) / (restfreq_ghz * 1e9))


def vel_to_freq_hz(vel_kms: np.ndarray | float, restfreq_ghz: float) -> np.ndarray:
    """Frequency (Hz) of radio velocities (km/s) for a rest frequency (GHz)."""
    return restfreq_ghz * 1e9 * (1.0 - np.asarray(vel_kms, dtype=float) / C_KMS)


@dataclass(frozen=True)
class ExtractionScheme:
    """How one spectral window is brought onto the common velocity grid.

    Attributes
    ----------
    native_kms : float
        Native channel width (km/s, radio convention).
    binfactor : int
        Channels averaged after regridding (``floor(target / native)``).
    regrid_kms : float
        Channel width of the regrid step (km/s); ``None`` for ``just_rebin``.
    final_kms : float
        Final channel width after averaging (km/s).
    """

    native_kms: float
    binfactor: int
    regrid_kms: float | None
    final_kms: float


def suggest_extraction_scheme(
    native_widths_kms: Sequence[float],
    target_chan_kms: float,
    method: str = "regrid_then_rebin",
    exact: bool = False,
) -> list[ExtractionScheme]:
    """The PHANGS extraction scheme for a set of spectral windows (one entry each).

    ``binfactor = floor(target / native)`` per window; ``common_res = max(native *
    binfactor) * (1 + 3e-4)``; for ``regrid_then_rebin`` each window is regridded to
    ``common_res / binfactor`` and averaged by ``binfactor``, so every window ends on the
    same channel width ``common_res`` (not exactly ``target_chan_kms`` unless ``exact``).
    Example: 488.281 kHz at 230.538 GHz = 0.634962 km/s, target 2.6 -> binfactor 4,
    regrid 0.635153, final 2.54061 km/s.

    Parameters
    ----------
    native_widths_kms : sequence of float
        Native channel widths (km/s) of the windows that cover the line.
    target_chan_kms : float
        Requested channel width (km/s), the product's ``channel_kms``.
    method : str
        ``regrid_then_rebin`` (PHANGS default), ``rebin_then_regrid``, ``just_regrid``,
        ``just_rebin``.
    exact : bool
        Force the final width to ``target_chan_kms``.

    Returns
    -------
    list of ExtractionScheme

    Raises
    ------
    StagingError
        Unknown method, no windows, or a window coarser than the target channel.
    """
    if method not in VALID_METHODS:
        raise StagingError(f"extraction method {method!r} is not one of {VALID_METHODS}")
    widths = [abs(float(w)) for w in native_widths_kms]
    if not widths:
        raise StagingError("no spectral window to extract the line from")
    too_coarse = [w for w in widths if w > target_chan_kms * (1 + 1e-9)]
    if too_coarse:
        raise StagingError(
            f"native channels of {too_coarse} km/s are wider than the target channel {target_chan_kms} km/s"
        )
    binfactors = [max(1, math.floor(target_chan_kms / w + 1e-9)) for w in widths]
    common = max(w * b for w, b in zip(widths, binfactors, strict=True)) * (1.0 + COMMON_RES_EPSILON)
    out: list[ExtractionScheme] = []
    for w, b in zip(widths, binfactors, strict=True):
        if method == "just_rebin":
            out.append(ExtractionScheme(w, b, None, w * b))
        elif method == "just_regrid":
            out.append(ExtractionScheme(w, 1, target_chan_kms, target_chan_kms))
        elif method == "rebin_then_regrid":
            final = target_chan_kms if exact else common
            out.append(ExtractionScheme(w, b, final, final))
        else:
            final = target_chan_kms if exact else common
            out.append(ExtractionScheme(w, b, final / b, final))
    return out


def regrid_nchan(vwidth_kms: float, regrid_kms: float, binfactor: int) -> int:
    """Channels of the regrid step: ``ceil(vwidth / width)`` rounded up to a multiple of ``binfactor``.

    PHANGS adds ``nchan % binfactor`` instead, which is a multiple only by luck (9 channels,
    binfactor 4 -> 10); rounding up keeps every averaged channel complete.
    """
    n = math.ceil(vwidth_kms / regrid_kms - 1e-9)
    return int(math.ceil(n / binfactor) * binfactor)


def velocity_grid(vsys_kms: float, vwidth_kms: float, scheme: ExtractionScheme) -> np.ndarray:
    """Channel-centre velocities (km/s) of the staged line product, in MS channel order.

    The regrid starts at ``vsys - vwidth/2`` (the centre of the first regridded channel, as
    ``mstransform`` takes it) with ``regrid_kms`` steps; averaging ``binfactor`` channels
    moves each centre by ``(binfactor-1)/2`` regrid channels. The output spectral window is in
    ascending frequency, so the returned velocities *decrease*.
    """
    if scheme.regrid_kms is None:
        raise StagingError("velocity_grid needs a regridding scheme")
    n_regrid = regrid_nchan(vwidth_kms, scheme.regrid_kms, scheme.binfactor)
    v0 = vsys_kms - vwidth_kms / 2.0
    regrid_centres = v0 + scheme.regrid_kms * np.arange(n_regrid)
    final = regrid_centres.reshape(-1, scheme.binfactor).mean(axis=1)
    return final[::-1].copy()


def line_channel_mask(
    chan_freqs_hz: np.ndarray, chan_widths_hz: np.ndarray, ranges_ghz: Iterable[tuple[float, float]]
) -> np.ndarray:
    """True for channels that *overlap* any of the frequency ranges (GHz).

    PHANGS (``spw_string_for_freq_ranges``) marks only channels fully inside a range, so a
    channel straddling the line edge is used in the continuum fit; overlapping is the safer
    choice for ``uvcontsub`` and for flagging before continuum averaging.
    """
    f = np.asarray(chan_freqs_hz, dtype=float)
    half = np.abs(np.asarray(chan_widths_hz, dtype=float)) / 2.0
    lo_edge, hi_edge = f - half, f + half
    mask = np.zeros(f.shape, dtype=bool)
    for lo, hi in ranges_ghz:
        mask |= (hi_edge > lo * 1e9) & (lo_edge < hi * 1e9)
    return mask


def channel_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` index pairs of the True runs of a 1-D boolean mask."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    if m.size == 0:
        return []
    d = np.diff(np.concatenate([[0], m, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def channel_selection_string(spw: int, mask: np.ndarray) -> str:
    """CASA selection of the True channels of one window, e.g. ``'0:0~7;32~39'`` ('' if none)."""
    runs = channel_runs(mask)
    if not runs:
        return ""
    return f"{spw}:" + ";".join(f"{a}~{b}" for a, b in runs)


def statwt_exclusion_range(nchan: int, chan_kms: float, edge_kms: float) -> tuple[int, int] | None:
    """Central channels ``(first, last)`` that ``statwt`` excludes (the line); edges are used.

    ``edge = ceil(edge_kms / chan_kms)`` channels on each side are kept for the weights.
    Returns ``None`` when the edges would leave nothing to exclude or nothing to use
    (PHANGS then excludes nothing and warns).
    """
    edge = math.ceil(edge_kms / chan_kms - 1e-9)
    if edge < 1 or 2 * edge >= nchan:
        return None
    return (edge, nchan - edge - 1)


def format_angle_hms(ra_rad: float) -> str:
    """Right ascension (rad) as ``'12h00m00.000000s'``."""
    h, m, s = _sexagesimal((math.degrees(ra_rad) / 15.0) % 24.0, 59.9999995)
    return f"{h % 24:02d}h{m:02d}m{s:09.6f}s"


def format_angle_dms(dec_rad: float) -> str:
    """Declination (rad) as ``'-30d00m00.00000s'``."""
    deg = math.degrees(dec_rad)
    sign = "-" if deg < 0 else "+"
    d, m, s = _sexagesimal(abs(deg), 59.999995)
    return f"{sign}{d:02d}d{m:02d}m{s:08.5f}s"


def _sexagesimal(value: float, round_up_at: float) -> tuple[int, int, float]:
    """Split a non-negative ``value`` into (units, minutes, seconds) of 60ths.

    Seconds of ``round_up_at`` or more (those that would print as 60 at the caller's
    precision) are carried into the minutes, and 60 minutes into the units.
    """
    units = int(value)
    m = int((value - units) * 60)
    s = (value - units - m / 60.0) * 3600.0
    if s >= round_up_at:
        s, m = 0.0, m + 1
    if m >= 60:
        m, units = m - 60, units + 1
    return units, m, s


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class StagingResult:
    """Outcome of a staging step (JSON-serialisable through :meth:`to_dict`).

    Attributes
    ----------
    out_ms : str
        The staged measurement set.
    product : str
        ``'line'`` or ``'continuum'``.
    skipped : bool
        True when the output already existed and nothing was done.
    nchan : int
        Channels of the (first) spectral window of ``out_ms``.
    chan_width_kms : float or None
        Channel width of the line product (km/s).
    vel_first_kms, vel_last_kms : float or None
        LSRK radio velocity of channel 0 and of the last channel (km/s).
    restfreq_ghz : float or None
        Rest frequency of the line (GHz).
    inputs : list of dict
        Per input MS: array tag, path, spws used, continuum fit channels, scheme.
    statwt_fitspw : str
        The channels ``statwt`` excluded ('' when none).
    warnings : list of str
    seconds : float
        Wall time of the step.
    """

    out_ms: str
    product: str
    skipped: bool = False
    nchan: int = 0
    nspw: int = 0
    chan_width_kms: float | None = None
    vel_first_kms: float | None = None
    vel_last_kms: float | None = None
    restfreq_ghz: float | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    statwt_fitspw: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain floats, ints, strings, lists); ``ms`` repeats ``out_ms``."""
        d = jsonable(asdict(self))
        d["ms"] = self.out_ms
        return d


# ---------------------------------------------------------------------------------------
# Measurement-set inspection (casatools)
# ---------------------------------------------------------------------------------------


@dataclass
class SpwInfo:
    """One spectral window: native-frame and LSRK channel frequencies (Hz)."""

    spw: int
    freqs_hz: np.ndarray
    widths_hz: np.ndarray
    lsrk_hz: np.ndarray


def _require_ms(ms: str | os.PathLike[str]) -> Path:
    p = Path(ms)
    if not (p.is_dir() and (p / "table.dat").exists()):
        raise StagingError(f"measurement set {str(p)!r} not found (or not a CASA table)")
    return p.resolve()


def ms_field_names(ms: str | os.PathLike[str]) -> list[str]:
    """Field names of a measurement set (FIELD table order)."""
    p = _require_ms(ms)
    tb = casatools().table()
    try:
        tb.open(str(p / "FIELD"))
        return [str(n) for n in tb.getcol("NAME")]
    finally:
        tb.close()


def ms_has_column(ms: str | os.PathLike[str], column: str) -> bool:
    """True when the main table of ``ms`` has ``column``."""
    tb = casatools().table()
    try:
        tb.open(str(_require_ms(ms)))
        return column in tb.colnames()
    finally:
        tb.close()


def ms_spw_info(ms: str | os.PathLike[str], field_ids: Sequence[int] | None = None) -> list[SpwInfo]:
    """Spectral windows with data, with their native and LSRK channel frequencies.

    LSRK frequencies come from ``ms.cvelfreqs(outframe='LSRK')`` (first selected field).
    """
    p = _require_ms(ms)
    ct = casatools()
    md = ct.msmetadata()
    msx = ct.ms()
    out: list[SpwInfo] = []
    try:
        md.open(str(p))
        fid = int(field_ids[0]) if field_ids else 0
        spws = sorted({int(s) for s in md.spwsforfield(fid)}) if field_ids else list(range(md.nspw()))
        freqs = {s: np.asarray(md.chanfreqs(s), dtype=float) for s in spws}
        widths = {s: np.asarray(md.chanwidths(s), dtype=float) for s in spws}
    finally:
        md.close()
    try:
        msx.open(str(p))
        for s in spws:
            lsrk = np.asarray(msx.cvelfreqs(spwids=[s], fieldids=[fid], mode="channel", outframe="LSRK"))
            out.append(SpwInfo(s, freqs[s], widths[s], lsrk))
    finally:
        msx.close()
    return out


def read_nchan(ms: str | os.PathLike[str], spw: int = 0) -> int:
    """Number of channels of spectral window ``spw`` of a (staged) measurement set."""
    p = _require_ms(ms)
    md = casatools().msmetadata()
    try:
        md.open(str(p))
        if spw >= md.nspw():
            raise StagingError(f"{str(p)!r} has no spectral window {spw} ({md.nspw()} windows)")
        return int(md.nchan(spw))
    finally:
        md.close()


def read_velocity_axis(ms: str | os.PathLike[str], restfreq_ghz: float, spw: int = 0) -> np.ndarray:
    """Radio velocities (km/s) of the channels of ``spw`` in the MS's own frame (LSRK after staging)."""
    p = _require_ms(ms)
    md = casatools().msmetadata()
    try:
        md.open(str(p))
        freqs = np.asarray(md.chanfreqs(spw), dtype=float)
    finally:
        md.close()
    return freq_to_vel_kms(freqs, restfreq_ghz)


def _select_fields(ms: Path, target_field: str | Sequence[str] | None) -> tuple[list[int], list[str]]:
    names = ms_field_names(ms)
    if target_field in (None, "", "*"):
        return list(range(len(names))), names
    patterns = [target_field] if isinstance(target_field, str) else list(target_field)
    patterns = [q.strip() for p in patterns for q in str(p).split(",") if q.strip()]
    # case-insensitive: PHANGS target names are lower case, ALMA field names usually not
    ids = [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n.lower(), pat.lower()) for pat in patterns)]
    if not ids:
        raise StagingError(
            f"measurement set {str(ms)!r} has no field matching {patterns} (fields: {sorted(set(names))})"
        )
    return ids, [names[i] for i in ids]


def _has_target_intent(ms: Path) -> bool:
    md = casatools().msmetadata()
    try:
        md.open(str(ms))
        return any("OBSERVE_TARGET" in i for i in md.intents())
    except RuntimeError:
        return False
    finally:
        md.close()


# ---------------------------------------------------------------------------------------
# Staging routines
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _scratch(work: Path) -> Iterator[Path]:
    """A private scratch directory, removed afterwards (also on error: no stale intermediates)."""
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _split(cta: Any, source: Path, outputvis: Path, what: str, **kw: Any) -> None:
    """``split`` with the empty-selection cases turned into a :class:`StagingError`."""
    try:
        cta.split(vis=str(source), outputvis=str(outputvis), **kw)
    except RuntimeError as exc:
        raise StagingError(f"measurement set {str(source)!r}: split of {what} failed: {exc}") from exc
    nrows = 0
    if outputvis.is_dir():
        tb = casatools().table()
        try:
            tb.open(str(outputvis))
            nrows = tb.nrows()
        finally:
            tb.close()
    if nrows == 0:
        raise StagingError(f"measurement set {str(source)!r}: the selection of {what} is empty (no unflagged data)")


def _rm(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _publish(built: Path, final: Path, overwrite: bool) -> None:
    """Move ``built`` next to ``final`` under a temporary name, then rename it to ``final``.

    An existing ``final`` is replaced only if ``overwrite``.
    """
    tmp = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(tmp))
    if final.exists():
        if not overwrite:
            raise StagingError(f"{str(final)!r} appeared while staging; refusing to replace it")
        _rm(final)
    os.replace(tmp, final)
    flagversions = Path(str(tmp) + ".flagversions")
    if flagversions.exists():
        _rm(flagversions)


def _describe_existing(out: Path, product: str, restfreq_ghz: float | None) -> StagingResult:
    res = StagingResult(out_ms=str(out), product=product, skipped=True, restfreq_ghz=restfreq_ghz)
    md = casatools().msmetadata()
    try:
        md.open(str(out))
        res.nspw = int(md.nspw())
        res.nchan = int(md.nchan(0))
        freqs = np.asarray(md.chanfreqs(0), dtype=float)
    finally:
        md.close()
    if restfreq_ghz and product == "line":
        v = freq_to_vel_kms(freqs, restfreq_ghz)
        res.vel_first_kms, res.vel_last_kms = float(v[0]), float(v[-1])
        res.chan_width_kms = float(abs(v[1] - v[0])) if v.size > 1 else None
    return res


def _flatten_inputs(ms_by_array: Mapping[str, Sequence[str | os.PathLike[str]]]) -> list[tuple[str, Path]]:
    pairs: list[tuple[str, Path]] = []
    for tag, paths in ms_by_array.items():
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        for p in paths:
            pairs.append((str(tag), _require_ms(p)))
    if not pairs:
        raise StagingError("no input measurement set given")
    return pairs


def stage_line_product(
    ms_by_array: Mapping[str, Sequence[str | os.PathLike[str]]],
    out_ms: str | os.PathLike[str],
    *,
    restfreq_ghz: float | None = None,
    line: str | None = None,
    vsys_kms: float,
    vwidth_kms: float,
    channel_kms: float,
    target_field: str | Sequence[str] | None = None,
    statwt_edge_kms: float | None = 50.0,
    fitorder: int = 0,
    lines_to_exclude: Sequence[str] | None = None,
    lines_to_flag: Sequence[str] | None = None,
    exclude_ranges_ghz: Sequence[tuple[float, float]] | None = None,
    do_contsub: bool = True,
    do_statwt: bool = True,
    method: str = "regrid_then_rebin",
    exact: bool = False,
    timebin: str = "0s",
    workdir: str | os.PathLike[str],
    overwrite: bool = False,
) -> StagingResult:
    """Stage one line product of one target and interferometric configuration.

    Parameters
    ----------
    ms_by_array : mapping of str to list of path
        Input calibrated measurement sets per array tag, e.g. ``{'12m': [...], '7m': [...]}``.
    out_ms : path
        Output measurement set, e.g. ``ngc0628_12m+7m_co21.ms``.
    restfreq_ghz : float, optional
        Rest frequency (GHz); else looked up from ``line``.
    line : str, optional
        Line name (``'co21'``) when ``restfreq_ghz`` is not given.
    vsys_kms, vwidth_kms : float
        Systemic velocity and full width of the extracted window (km/s, LSRK radio).
    channel_kms : float
        Target channel width (km/s); the PHANGS scheme gives the final common width.
    target_field : str or list of str, optional
        Field names or shell patterns (``'ngc0628*'``, case-insensitive); ``None`` selects
        every field.
    statwt_edge_kms : float, optional
        Line-free edge width (km/s) used by ``statwt`` on each side.
    fitorder : int
        Polynomial order of the continuum fit.
    lines_to_exclude : list of str, optional
        Lines/families kept out of the continuum fit (at ``vsys +- vwidth/2``); the
        product's own line is always excluded.
    lines_to_flag : list of str, optional
        Alias of ``lines_to_exclude`` (the PHANGS config key); both lists are used.
    exclude_ranges_ghz : list of (float, float), optional
        Further frequency ranges (GHz, LSRK) kept out of the fit.
    do_contsub, do_statwt : bool
        Switch the continuum subtraction / re-weighting off.
    method, exact : str, bool
        Extraction method (see :func:`suggest_extraction_scheme`).
    timebin : str
        ``split`` time averaging.
    workdir : path
        Scratch directory (CASA cwd, intermediates, log).
    overwrite : bool
        Redo the step even when ``out_ms`` exists.

    Returns
    -------
    StagingResult

    Raises
    ------
    StagingError
        Missing MS, no matching field, no window covering the line, no line-free channels,
        or an empty selection; the message names the MS and what was wanted.
    """
    import time

    t0 = time.perf_counter()
    out = Path(out_ms).resolve()
    if restfreq_ghz is None:
        if line is None:
            raise StagingError(f"staging {out.name}: give restfreq_ghz or line")
        restfreq_ghz = get_line_frequency_ghz(line)
    if out.exists() and not overwrite:
        log.info("staged line product %s exists; skipping (overwrite=False)", out)
        return _describe_existing(out, "line", restfreq_ghz)
    inputs = _flatten_inputs(ms_by_array)
    line_lo, line_hi = get_ghz_range_for_line(restfreq_ghz=restfreq_ghz, vsys_kms=vsys_kms, vwidth_kms=vwidth_kms)
    exclude = [(line_lo, line_hi)]
    other_lines = list(lines_to_exclude or []) + list(lines_to_flag or [])
    if other_lines:
        exclude += get_ghz_ranges_for_lines(other_lines, vsys_kms=vsys_kms, vwidth_kms=vwidth_kms)
    if exclude_ranges_ghz:
        exclude += [(float(a), float(b)) for a, b in exclude_ranges_ghz]
    exclude = merge_ranges(exclude)
    max_width_hz = restfreq_ghz * 1e9 * channel_kms / C_KMS

    work = Path(workdir).resolve() / f"stage_{out.name}_{uuid.uuid4().hex[:8]}"
    result = StagingResult(out_ms=str(out), product="line", restfreq_ghz=restfreq_ghz)
    cta = casatasks()
    with _scratch(work), casa_session(work, work / "casa.log"):
        # 1. inspect every input, choose spws, and build one extraction scheme for all
        plans: list[dict[str, Any]] = []
        for tag, ms in inputs:
            field_ids, field_names = _select_fields(ms, target_field)
            spws = ms_spw_info(ms, field_ids)
            chosen = []
            for s in spws:
                lo = (s.lsrk_hz - np.abs(s.widths_hz) / 2).min() / 1e9
                hi = (s.lsrk_hz + np.abs(s.widths_hz) / 2).max() / 1e9
                if hi < line_lo or lo > line_hi:
                    continue
                if np.abs(s.widths_hz).max() > max_width_hz * (1 + 1e-9):
                    result.warnings.append(
                        f"{ms.name} spw {s.spw}: channels coarser than {channel_kms} km/s, not used"
                    )
                    continue
                if lo > line_lo or hi < line_hi:
                    result.warnings.append(
                        f"{ms.name} spw {s.spw} covers only {lo:.6f}-{hi:.6f} GHz of the line "
                        f"window {line_lo:.6f}-{line_hi:.6f} GHz"
                    )
                chosen.append(s)
            if not chosen:
                have = ", ".join(
                    f"spw {s.spw}: {s.lsrk_hz.min() / 1e9:.6f}-{s.lsrk_hz.max() / 1e9:.6f} GHz LSRK" for s in spws
                )
                raise StagingError(
                    f"measurement set {str(ms)!r}: no spectral window with channels <= {channel_kms} km/s "
                    f"covers the line at {line_lo:.6f}-{line_hi:.6f} GHz (restfreq {restfreq_ghz} GHz, "
                    f"vsys {vsys_kms} +- {vwidth_kms / 2} km/s); windows: {have}"
                )
            plans.append({"tag": tag, "ms": ms, "fields": field_names, "spws": chosen})
        native = [chan_width_kms(float(np.abs(s.widths_hz).max()), restfreq_ghz) for p in plans for s in p["spws"]]
        schemes = iter(suggest_extraction_scheme(native, channel_kms, method=method, exact=exact))

        # 2. per input MS and spw: split -> uvcontsub -> regrid -> average
        pieces: list[Path] = []
        final_kms = None
        for k, plan in enumerate(plans):
            ms: Path = plan["ms"]
            datacolumn = "corrected" if ms_has_column(ms, "CORRECTED_DATA") else "data"
            intent = "OBSERVE_TARGET*" if _has_target_intent(ms) else ""
            for s in plan["spws"]:
                scheme = next(schemes)
                final_kms = scheme.final_kms
                tag = f"{k:02d}_{plan['tag']}_spw{s.spw}"
                split_ms = work / f"{tag}.split.ms"
                _split(
                    cta, ms, split_ms, f"fields {sorted(set(plan['fields']))} spw {s.spw}",
                    field=",".join(sorted(set(plan["fields"]))), spw=str(s.spw), intent=intent,
                    datacolumn=datacolumn, keepflags=False, timebin=timebin,
                )
                info: dict[str, Any] = {
                    "array": plan["tag"], "ms": str(ms), "spw": s.spw, "fields": sorted(set(plan["fields"])),
                    "datacolumn": datacolumn, "native_kms": scheme.native_kms, "binfactor": scheme.binfactor,
                    "regrid_kms": scheme.regrid_kms, "final_kms": scheme.final_kms,
                }
                current = split_ms
                if do_contsub:
                    contsub_ms = work / f"{tag}.contsub.ms"
                    try:
                        fitspec, n_free = subtract_continuum(
                            current, contsub_ms, exclude_ranges_ghz=exclude, fitorder=fitorder
                        )
                    except StagingError as exc:
                        raise StagingError(f"measurement set {str(ms)!r} spw {s.spw}: {exc}") from None
                    info["fitspec"] = fitspec
                    info["n_line_free"] = n_free
                    _rm(current)
                    current = contsub_ms
                current = _extract_line(
                    cta, current, work / tag, restfreq_ghz, vsys_kms, vwidth_kms, scheme
                )
                pieces.append(current)
                result.inputs.append(info)

        # 3. concat all pieces, statwt on the line-free edges
        combined = work / "combined.ms"
        if len(pieces) == 1:
            os.replace(pieces[0], combined)
        else:
            freqtol = f"{FREQTOL_CHANFRAC * final_kms / C_KMS * restfreq_ghz:.9f}GHz"
            cta.concat(vis=[str(p) for p in pieces], concatvis=str(combined), freqtol=freqtol, copypointing=False)
        nchan = read_nchan(combined)
        if do_statwt and statwt_edge_kms is not None:
            rng = statwt_exclusion_range(nchan, final_kms, statwt_edge_kms)
            if rng is None:
                result.warnings.append(
                    f"statwt: {statwt_edge_kms} km/s edges leave no line-free channels in {nchan} channels; "
                    "no channel excluded"
                )
                fitspw, excl = "", False
            else:
                md = casatools().msmetadata()
                md.open(str(combined))
                nspw = md.nspw()
                md.close()
                fitspw = ",".join(f"{s}:{rng[0]}~{rng[1]}" for s in range(nspw))
                excl = True
            cta.statwt(
                vis=str(combined), timebin="0.001s", slidetimebin=False, chanbin="spw", statalg="classic",
                datacolumn="data", fitspw=fitspw, excludechans=excl, flagbackup=False,
            )
            result.statwt_fitspw = fitspw
        _publish(combined, out, overwrite)
    desc = _describe_existing(out, "line", restfreq_ghz)
    result.nchan, result.nspw = desc.nchan, desc.nspw
    result.vel_first_kms, result.vel_last_kms = desc.vel_first_kms, desc.vel_last_kms
    result.chan_width_kms = desc.chan_width_kms
    result.seconds = time.perf_counter() - t0
    log.info("staged %s: %d channels of %.4f km/s in %.1f s", out, result.nchan, result.chan_width_kms or 0.0,
             result.seconds)
    return result


def subtract_continuum(
    vis_ms: str | os.PathLike[str],
    outputvis: str | os.PathLike[str],
    *,
    exclude_ranges_ghz: Sequence[tuple[float, float]],
    fitorder: int = 0,
    datacolumn: str | None = None,
) -> tuple[str, int]:
    """``uvcontsub`` (casatasks >= 6.5.2 API) fitting only the line-free channels.

    The channels overlapping ``exclude_ranges_ghz`` (LSRK, from ``ms.cvelfreqs``) are left
    out; ``fitspec`` lists the remaining ones per spectral window (``'0:0~9;47~55'``).
    Must be called inside a CASA session (scratch cwd).

    Returns
    -------
    (str, int)
        The ``fitspec`` used and the number of line-free channels.

    Raises
    ------
    StagingError
        No line-free channel left in a window, or uvcontsub failed.
    """
    src = _require_ms(vis_ms)
    if datacolumn is None:
        datacolumn = "corrected" if ms_has_column(src, "CORRECTED_DATA") else "data"
    parts, n_free = [], 0
    for sp in ms_spw_info(src):
        line_mask = line_channel_mask(sp.lsrk_hz, sp.widths_hz, exclude_ranges_ghz)
        sel = channel_selection_string(sp.spw, ~line_mask)
        if not sel:
            raise StagingError(
                f"no line-free channel left in spw {sp.spw} of {src.name} for the continuum fit "
                f"(excluded {list(exclude_ranges_ghz)} GHz)"
            )
        parts.append(sel)
        n_free += int((~line_mask).sum())
    fitspec = ",".join(parts)
    try:
        casatasks().uvcontsub(vis=str(src), outputvis=str(outputvis), fitspec=fitspec, fitorder=int(fitorder),
                              fitmethod="gsl", datacolumn=datacolumn)
    except RuntimeError as exc:
        raise StagingError(f"uvcontsub of {str(src)!r} with fitspec {fitspec!r} failed: {exc}") from exc
    return fitspec, n_free


def _extract_line(
    cta: Any, vis: Path, stem: Path, restfreq_ghz: float, vsys_kms: float, vwidth_kms: float,
    scheme: ExtractionScheme,
) -> Path:
    """mstransform regrid (LSRK radio, cubic) then channel averaging; returns the output MS."""
    current = vis
    regrid = Path(f"{stem}.regrid.ms")
    if scheme.regrid_kms is not None:
        nchan = regrid_nchan(vwidth_kms, scheme.regrid_kms, scheme.binfactor)
        cta.mstransform(
            vis=str(current), outputvis=str(regrid), datacolumn="data", spw="", combinespws=False,
            regridms=True, chanaverage=False, mode="velocity", interpolation="cubic", outframe="lsrk",
            veltype="radio", restfreq=f"{restfreq_ghz:.8f}GHz", start=f"{vsys_kms - vwidth_kms / 2.0:.8f}km/s",
            nchan=int(nchan), width=f"{scheme.regrid_kms:.8f}km/s",
        )
        _rm(current)
        current = regrid
    if scheme.binfactor > 1:
        rebin = Path(f"{stem}.rebin.ms")
        cta.mstransform(
            vis=str(current), outputvis=str(rebin), datacolumn="data", combinespws=False, regridms=False,
            chanaverage=True, chanbin=int(scheme.binfactor),
        )
        _rm(current)
        current = rebin
    return current


def stage_continuum_product(
    ms_by_array: Mapping[str, Sequence[str | os.PathLike[str]]],
    out_ms: str | os.PathLike[str],
    *,
    vsys_kms: float,
    vwidth_kms: float,
    lines_to_flag: Sequence[str] | None = ("co",),
    flag_ranges_ghz: Sequence[tuple[float, float]] | None = None,
    freq_ranges_ghz: Sequence[tuple[float, float]] | None = None,
    target_field: str | Sequence[str] | None = None,
    timebin: str = "0s",
    workdir: str | os.PathLike[str],
    overwrite: bool = False,
) -> StagingResult:
    """Stage the continuum product: line channels flagged, one channel per spectral window.

    As PHANGS without explicit ranges (``split(width=<all>)``): every science window is
    split, the channels of ``lines_to_flag`` at ``vsys +- vwidth/2`` (LSRK) are flagged, and
    the remaining channels are averaged to one channel per window; all inputs are
    concatenated. No ``statwt`` (as PHANGS). With ``freq_ranges_ghz`` (the cont product's
    ``freq_ranges_ghz``, LSRK GHz) channels outside every range are flagged too and windows
    without any channel in a range are dropped, so each range inside one window gives one
    channel (PHANGS regrids each range to one channel; equivalent for ranges within a window).

    Raises
    ------
    StagingError
        Missing MS / field, a window whose channels are all line, or an empty selection.
    """
    import time

    t0 = time.perf_counter()
    out = Path(out_ms).resolve()
    if out.exists() and not overwrite:
        log.info("staged continuum product %s exists; skipping (overwrite=False)", out)
        return _describe_existing(out, "continuum", None)
    inputs = _flatten_inputs(ms_by_array)
    ranges = list(get_ghz_ranges_for_lines(lines_to_flag, vsys_kms=vsys_kms, vwidth_kms=vwidth_kms)) if lines_to_flag else []
    if flag_ranges_ghz:
        ranges += [(float(a), float(b)) for a, b in flag_ranges_ghz]
    ranges = merge_ranges(ranges)
    work = Path(workdir).resolve() / f"stage_{out.name}_{uuid.uuid4().hex[:8]}"
    result = StagingResult(out_ms=str(out), product="continuum")
    cta = casatasks()
    with _scratch(work), casa_session(work, work / "casa.log"):
        pieces: list[Path] = []
        for k, (tag, ms) in enumerate(inputs):
            field_ids, field_names = _select_fields(ms, target_field)
            datacolumn = "corrected" if ms_has_column(ms, "CORRECTED_DATA") else "data"
            intent = "OBSERVE_TARGET*" if _has_target_intent(ms) else ""
            split_ms = work / f"{k:02d}_{tag}.split.ms"
            _split(
                cta, ms, split_ms, f"fields {sorted(set(field_names))}", field=",".join(sorted(set(field_names))),
                spw="", intent=intent, datacolumn=datacolumn, keepflags=False, timebin=timebin,
            )
            spws = ms_spw_info(split_ms)
            if freq_ranges_ghz:
                keep = []
                for s in spws:
                    inside = line_channel_mask(s.lsrk_hz, s.widths_hz, freq_ranges_ghz)
                    if inside.any():
                        keep.append(s)
                if not keep:
                    raise StagingError(
                        f"measurement set {str(ms)!r}: no spectral window overlaps the continuum ranges "
                        f"{list(freq_ranges_ghz)} GHz"
                    )
                if len(keep) < len(spws):
                    sel = ",".join(str(s.spw) for s in keep)
                    resplit = work / f"{k:02d}_{tag}.split2.ms"
                    _split(cta, split_ms, resplit, f"spws {sel}", spw=sel, datacolumn="data", keepflags=False)
                    _rm(split_ms)
                    split_ms = resplit
                    spws = ms_spw_info(split_ms)
            flag_sel = []
            for s in spws:
                m = line_channel_mask(s.lsrk_hz, s.widths_hz, ranges)
                if freq_ranges_ghz:
                    # channels only partly inside a range are kept (PHANGS regrid would cut them)
                    m |= ~line_channel_mask(s.lsrk_hz, s.widths_hz, freq_ranges_ghz)
                if m.all():
                    raise StagingError(
                        f"measurement set {str(ms)!r} spw {s.spw}: every channel is within the line ranges "
                        f"{ranges} GHz or outside the continuum ranges {freq_ranges_ghz}; nothing left for "
                        "the continuum"
                    )
                if m.any():
                    flag_sel.append(channel_selection_string(s.spw, m))
            if flag_sel:
                cta.flagdata(vis=str(split_ms), mode="manual", spw=",".join(flag_sel), flagbackup=False)
            avg_ms = work / f"{k:02d}_{tag}.cont.ms"
            _split(cta, split_ms, avg_ms, "continuum channels", datacolumn="data", keepflags=False,
                   width=[int(s.freqs_hz.size) for s in spws])
            _rm(split_ms)
            pieces.append(avg_ms)
            result.inputs.append(
                {"array": tag, "ms": str(ms), "fields": sorted(set(field_names)), "flagged": ",".join(flag_sel),
                 "spws": [s.spw for s in spws], "datacolumn": datacolumn}
            )
        combined = work / "combined.ms"
        if len(pieces) == 1:
            os.replace(pieces[0], combined)
        else:
            cta.concat(vis=[str(p) for p in pieces], concatvis=str(combined), copypointing=False)
        _publish(combined, out, overwrite)
    desc = _describe_existing(out, "continuum", None)
    result.nchan, result.nspw = desc.nchan, desc.nspw
    result.seconds = time.perf_counter() - t0
    return result
