"""QA checks: pure functions from QA records (and FITS products) to scores.

A QA record is the JSON every pipeline operator writes per task attempt,
``{workdir}/qa/{task_id}[.{map_index}].json`` =
``{"task_id", "dag_id", "run_id", "map_index", "try_number", "host", "stage", "elapsed_s",
"inputs", "software", "result"}``, where ``result`` is the routine result's ``to_dict()``.

Every check returns :class:`Score` objects (value 0-1, one-line reason). A check whose
input fields are missing returns a score with ``value=None`` ("not available"), which is
listed but never counts as the worst score. Fields read, per check (``r`` = ``result``):

staging (``StagingResult``)
    flagged_fraction: ``r.flagged_fraction`` or ``r.inputs[i].flagged_fraction``.
    channel_grid: ``r.chan_width_kms``, ``r.requested_chan_kms`` | ``r.channel_kms``,
    ``r.inputs[i].final_kms``, ``r.nchan``, ``r.vel_first_kms``, ``r.vel_last_kms``.
    continuum_residual: ``r.continuum_residual_snr`` or ``r.inputs[i].continuum_residual_snr``.
    weight_ratio: ``r.weight_ratio_12m_7m``, or ``r.median_weight`` ``{array: w}``, or
    ``r.inputs[i].median_weight`` with ``r.inputs[i].array``.
imaging (``ImagingResult``, one group per task id: all chunks of a mapped task together)
    clean_convergence: ``r.stages[stage][-1].reason`` (``converged``, ``negative_flux``,
    ``max_loops``, ``nan_flux``) or ``.stopcode`` (tclean: 1 niter, 2 threshold, 4-6 diverged).
    peak_residual: ``r.peak_residual_jy`` or the last loop's ``peak_residual_jy``; ``r.noise_jy``.
    residual_vs_dirty_noise: last loop ``residual_rms_jy`` / ``r.noise_jy``.
    beam_shape: ``r.beam_major_arcsec``, ``r.beam_minor_arcsec`` (all chunks).
    mask_fraction: ``r.mask_fraction`` or ``r.singlescale_mask_pixels / (r.nchan * imsize)``.
    chunk_durations: record ``elapsed_s`` (or ``r.seconds``) of every chunk.
total_power (single-dish result)
    baseline_rms: ``r.antennas[i] = {antenna, baseline_rms | rms, radiometer_rms | expected_rms}``
    or ``r.baseline_rms = {antenna: rms}`` with ``r.radiometer_rms`` (scalar or per antenna).
postprocess (``PostResult``)
    feather_flux: ``r.numbers.{interf,sd,feathered}_flux_jykms`` (or the same at top level).
    mosaic_overlap: ``r.numbers.overlap_flux_ratio`` or ``r.numbers.overlap_flux_ratios``.
products (FITS, see :func:`product_checks`)
    noise Gaussianity, noise stripes, negative bowls, strict-mask flux fraction, moment maps
    finite where the mask is, TP flux scale in the uv overlap (interferometer vs TP cube).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.jsonable import jsonable
from phangs_operators.qa.config import GREEN, YELLOW, QAConfig

log = logging.getLogger(__name__)

NOT_AVAILABLE = "not available"


@dataclass
class Score:
    """One QA score.

    Attributes
    ----------
    stage : str
        Pipeline stage (``staging``, ``imaging``, ``total_power``, ``postprocess``, ``derived``).
    name : str
        Check name (``clean_convergence``...).
    value : float or None
        0 (bad) ... 1 (good); ``None`` when the inputs were not available.
    reason : str
        One line saying why.
    subject : str
        What was checked (task group, product file stem).
    details : dict
        Numbers behind the score (JSON-serialisable).
    """

    stage: str
    name: str
    value: float | None
    reason: str
    subject: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def level(self) -> str:
        """``good`` / ``warning`` / ``bad`` / ``na``."""
        if self.value is None:
            return "na"
        return "good" if self.value >= GREEN else "warning" if self.value >= YELLOW else "bad"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["level"] = self.level
        d["details"] = jsonable(d["details"])
        return d


def ramp(value: float, good: float, bad: float) -> float:
    """Score of ``value``: 1 at/beyond ``good``, 0.33 at ``bad``, 0 one span beyond ``bad``.

    Works in both directions (``good < bad`` for "smaller is better" and vice versa).
    """
    if not math.isfinite(value):
        return 0.0
    span = bad - good
    if span == 0:
        return 1.0 if value == good else 0.0
    t = (value - good) / span
    if t <= 0:
        return 1.0
    if t <= 1:
        return 1.0 - (1.0 - YELLOW) * t
    return 0.0 if t >= 2.0 - 1e-12 else YELLOW * (2.0 - t)


def _ramp_cfg(value: float, spec: Mapping[str, float]) -> float:
    return round(ramp(float(value), float(spec["good"]), float(spec["bad"])), 4)


def na(stage: str, name: str, subject: str, missing: str) -> Score:
    """A "not available" score naming the missing input."""
    return Score(stage, name, None, f"{NOT_AVAILABLE}: {missing}", subject)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def subject_of(record: Mapping[str, Any]) -> str:
    """Task group of a record: the task id without its last component (``a.b.task`` -> ``a.b``)."""
    tid = str(record.get("task_id") or "")
    return tid.rsplit(".", 1)[0] if "." in tid else tid


def _result(record: Mapping[str, Any]) -> dict[str, Any]:
    r = record.get("result")
    return r if isinstance(r, dict) else {}


# ---------------------------------------------------------------------------------------------
# staging
# ---------------------------------------------------------------------------------------------

def check_flagged_fraction(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Fraction of flagged visibilities of the staged data (worst input)."""
    r, subj = _result(record), subject_of(record)
    vals = [_num(r.get("flagged_fraction"))] + [_num(i.get("flagged_fraction")) for i in r.get("inputs") or []
                                               if isinstance(i, Mapping)]
    vals = [v for v in vals if v is not None]
    if not vals:
        return na("staging", "flagged_fraction", subj, "no flagged_fraction in the staging result")
    worst = max(vals)
    score = _ramp_cfg(worst, cfg.get("staging", "flagged_fraction"))
    return Score("staging", "flagged_fraction", score, f"{worst:.1%} of the visibilities flagged", subj,
                 {"flagged_fraction": vals})


def check_channel_grid(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Channels on the product grid: every input regridded to the requested width, axis consistent."""
    r, subj = _result(record), subject_of(record)
    width = _num(r.get("chan_width_kms"))
    if r.get("product") == "continuum":
        return Score("staging", "channel_grid", 1.0, "continuum product: no channel grid", subj)
    if width is None:
        return na("staging", "channel_grid", subj, "no chan_width_kms in the staging result")
    requested = _num(r.get("requested_chan_kms", r.get("channel_kms")))
    finals = [_num(i.get("final_kms")) for i in r.get("inputs") or [] if isinstance(i, Mapping)]
    finals = [f for f in finals if f is not None]
    refs = ([requested] if requested else []) + finals
    mismatch = max((abs(abs(width) - abs(f)) / abs(f) for f in refs), default=0.0)
    nchan = r.get("nchan")
    v0, v1 = _num(r.get("vel_first_kms")), _num(r.get("vel_last_kms"))
    axis_err = 0.0
    if v0 is not None and v1 is not None and nchan and nchan > 1:
        axis_err = abs(abs(v1 - v0) / abs(width) - (int(nchan) - 1)) / (int(nchan) - 1)
    worst = max(mismatch, axis_err)
    score = _ramp_cfg(worst, cfg.get("staging", "channel_width_mismatch"))
    what = f"channel width {abs(width):.4g} km/s"
    if requested:
        what += f" (requested {requested:.4g})"
    reason = f"{what}, {nchan} channels; grid mismatch {worst:.2%}"
    return Score("staging", "channel_grid", score, reason, subj,
                 {"chan_width_kms": width, "requested_kms": requested, "input_final_kms": finals,
                  "nchan": nchan, "width_mismatch": mismatch, "axis_error": axis_err})


def check_continuum_residual(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Continuum left after subtraction in the line-free channels, in units of their noise."""
    r, subj = _result(record), subject_of(record)
    if r.get("product") == "continuum":
        return Score("staging", "continuum_residual", 1.0, "continuum product: no subtraction", subj)
    vals = [_num(r.get("continuum_residual_snr"))] + [
        _num(i.get("continuum_residual_snr")) for i in r.get("inputs") or [] if isinstance(i, Mapping)]
    vals = [abs(v) for v in vals if v is not None]
    if not vals:
        return na("staging", "continuum_residual", subj, "no continuum_residual_snr in the staging result")
    worst = max(vals)
    score = _ramp_cfg(worst, cfg.get("staging", "continuum_residual_snr"))
    return Score("staging", "continuum_residual", score,
                 f"residual continuum {worst:.2f} sigma in the line-free channels", subj, {"snr": vals})


def _weights_by_array(r: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    mw = r.get("median_weight")
    if isinstance(mw, Mapping):
        out.update({str(k): v for k, v in ((k, _num(v)) for k, v in mw.items()) if v is not None})
    for i in r.get("inputs") or []:
        if isinstance(i, Mapping) and i.get("array") and _num(i.get("median_weight")) is not None:
            out.setdefault(str(i["array"]), float(i["median_weight"]))
    return out


def check_weight_ratio(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Median 12m / 7m visibility weight vs the radiometer expectation ((12/7)^4)."""
    r, subj = _result(record), subject_of(record)
    spec = cfg.get("staging", "weight_ratio_12m_7m")
    ratio = _num(r.get("weight_ratio_12m_7m"))
    w = _weights_by_array(r)
    if ratio is None and "12m" in w and "7m" in w and w["7m"] > 0:
        ratio = w["12m"] / w["7m"]
    if ratio is None:
        arrays = {i.get("array") for i in r.get("inputs") or [] if isinstance(i, Mapping)}
        if arrays and not {"12m", "7m"} <= arrays:
            return Score("staging", "weight_ratio", 1.0, f"single array {sorted(map(str, arrays))}: no ratio",
                         subj)
        return na("staging", "weight_ratio", subj, "no median weights per array in the staging result")
    if ratio <= 0:
        return Score("staging", "weight_ratio", 0.0, f"12m/7m weight ratio {ratio:.3g} is not positive", subj)
    expected = float(spec["expected"])
    factor = math.exp(abs(math.log(ratio / expected)))
    score = round(ramp(factor, float(spec["good_factor"]), float(spec["bad_factor"])), 4)
    return Score("staging", "weight_ratio", score,
                 f"12m/7m weight ratio {ratio:.3g} vs expected {expected:.3g} (off by x{factor:.2f})", subj,
                 {"ratio": ratio, "expected": expected, "weights": w})


STAGING_CHECKS: tuple[Callable[[Mapping[str, Any], QAConfig], Score], ...] = (
    check_flagged_fraction, check_channel_grid, check_continuum_residual, check_weight_ratio)


# ---------------------------------------------------------------------------------------------
# imaging (groups: all records of one task id, e.g. every clean_chunk)
# ---------------------------------------------------------------------------------------------

def _chunk_label(record: Mapping[str, Any]) -> str:
    r = _result(record)
    start, n = r.get("start"), r.get("nchan")
    if start is not None and n:
        return f"ch {int(start)}-{int(start) + int(n) - 1}"
    mi = record.get("map_index")
    return f"#{mi}" if mi is not None and mi != -1 else Path(str(r.get("root") or "image")).name


def _stop_kind(loop: Mapping[str, Any]) -> str | None:
    reason = loop.get("reason")
    if reason:
        return str(reason)
    code = loop.get("stopcode")
    if code is None:
        return None
    return {1: "niter", 2: "threshold", 3: "threshold", 7: "threshold", 8: "threshold",
            4: "diverged", 5: "diverged", 6: "diverged"}.get(int(code), f"stopcode {code}")


def check_clean_convergence(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Did every clean stage of every chunk converge, or did it hit the loop / niter cap?"""
    subj = str(group[0].get("task_id"))
    table = cfg.get("imaging", "clean_stop_scores")
    worst: tuple[float, str] | None = None
    per: dict[str, dict[str, str]] = {}
    for rec in group:
        stages = _result(rec).get("stages") or {}
        for stage, loops in stages.items():
            if not loops:
                continue
            last = loops[-1]
            kind = _stop_kind(last)
            if kind is None:
                continue
            per.setdefault(_chunk_label(rec), {})[stage] = kind
            s = float(table.get(kind, 0.5))
            if kind == "max_loops":
                msg = (f"clean hit the loop cap ({len(loops)} loops) in {stage} of {_chunk_label(rec)}; "
                       f"model flux still changing by {_fmt(last.get('frac_delta_flux'))}")
            elif kind == "niter":
                msg = f"clean hit its niter limit ({last.get('niter')}) in {stage} of {_chunk_label(rec)}"
            else:
                msg = f"clean stopped: {kind} ({stage}, {_chunk_label(rec)})"
            if worst is None or s < worst[0]:
                worst = (s, msg)
    if worst is None:
        return na("imaging", "clean_convergence", subj, "no clean loop records (dirty images only?)")
    if worst[0] >= 1.0:
        worst = (1.0, f"clean converged in all {len(per)} image(s)")
    return Score("imaging", "clean_convergence", worst[0], worst[1], subj, {"stops": per})


def _fmt(x: Any) -> str:
    v = _num(x)
    return "n/a" if v is None else f"{v:.3g}"


def _last_loop(r: Mapping[str, Any]) -> Mapping[str, Any] | None:
    stages = r.get("stages") or {}
    for name in ("singlescale", "clean", "multiscale"):
        loops = stages.get(name) or []
        if loops:
            return loops[-1]
    return None


def check_peak_residual(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Peak |residual| after clean over the noise (worst chunk)."""
    subj = str(group[0].get("task_id"))
    vals: dict[str, float] = {}
    for rec in group:
        r = _result(rec)
        last = _last_loop(r) or {}
        peak = _num(r.get("peak_residual_jy", last.get("peak_residual_jy")))
        noise = _num(r.get("noise_jy", last.get("noise_jy")))
        if peak is not None and noise:
            vals[_chunk_label(rec)] = abs(peak) / noise
    if not vals:
        return na("imaging", "peak_residual", subj, "no peak_residual_jy / noise_jy in the imaging results")
    label, worst = max(vals.items(), key=lambda kv: kv[1])
    score = _ramp_cfg(worst, cfg.get("imaging", "peak_residual_snr"))
    return Score("imaging", "peak_residual", score, f"peak residual {worst:.1f} x noise ({label})", subj,
                 {"peak_over_noise": vals})


def check_residual_vs_dirty(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Residual rms after clean vs the dirty-image noise: clean must not add (or hide) noise."""
    subj = str(group[0].get("task_id"))
    vals: dict[str, float] = {}
    for rec in group:
        r = _result(rec)
        last = _last_loop(r) or {}
        rms, noise = _num(last.get("residual_rms_jy")), _num(r.get("noise_jy"))
        if rms is not None and noise:
            vals[_chunk_label(rec)] = rms / noise
    if not vals:
        return na("imaging", "residual_vs_dirty_noise", subj, "no residual_rms_jy after clean")
    hi_label, hi = max(vals.items(), key=lambda kv: kv[1])
    lo_label, lo = min(vals.items(), key=lambda kv: kv[1])
    s_hi = _ramp_cfg(hi, cfg.get("imaging", "residual_over_dirty_noise"))
    s_lo = _ramp_cfg(lo, cfg.get("imaging", "residual_under_dirty_noise"))
    if s_hi <= s_lo:
        return Score("imaging", "residual_vs_dirty_noise", s_hi,
                     f"residual rms {hi:.2f} x dirty noise ({hi_label})", subj, {"ratio": vals})
    return Score("imaging", "residual_vs_dirty_noise", s_lo,
                 f"residual rms {lo:.2f} x dirty noise ({lo_label})", subj, {"ratio": vals})


def check_beam_shape(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Beam axis ratio and the spread of the beam over chunks."""
    subj = str(group[0].get("task_id"))
    maj = np.array([_num(_result(r).get("beam_major_arcsec")) or np.nan for r in group], dtype=float)
    mnr = np.array([_num(_result(r).get("beam_minor_arcsec")) or np.nan for r in group], dtype=float)
    ok = np.isfinite(maj) & np.isfinite(mnr) & (mnr > 0)
    if not ok.any():
        return na("imaging", "beam_shape", subj, "no beam in the imaging results")
    ratio = float(np.max(maj[ok] / mnr[ok]))
    spread = float((np.max(maj[ok]) - np.min(maj[ok])) / np.median(maj[ok]))
    s1 = _ramp_cfg(ratio, cfg.get("imaging", "beam_axis_ratio"))
    s2 = _ramp_cfg(spread, cfg.get("imaging", "beam_spread"))
    reason = (f"beam {np.median(maj[ok]):.3g}\" x {np.median(mnr[ok]):.3g}\", axis ratio up to {ratio:.2f}, "
              f"major axis spread {spread:.1%}")
    return Score("imaging", "beam_shape", min(s1, s2), reason, subj,
                 {"axis_ratio_max": ratio, "major_spread": spread})


def check_mask_fraction(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Fraction of the image inside the single-scale clean mask (a noise-driven mask is large)."""
    subj = str(group[0].get("task_id"))
    vals: dict[str, float] = {}
    for rec in group:
        r = _result(rec)
        frac = _num(r.get("mask_fraction"))
        npix, imsize, nchan = r.get("singlescale_mask_pixels"), r.get("imsize") or [], r.get("nchan")
        if frac is None and npix is not None and len(imsize) >= 2 and nchan:
            frac = float(npix) / (float(imsize[0]) * float(imsize[1]) * float(nchan))
        if frac is not None:
            vals[_chunk_label(rec)] = frac
    if not vals:
        return na("imaging", "mask_fraction", subj, "no clean-mask size in the imaging results")
    label, worst = max(vals.items(), key=lambda kv: kv[1])
    score = _ramp_cfg(worst, cfg.get("imaging", "mask_fraction"))
    return Score("imaging", "mask_fraction", score, f"clean mask covers {worst:.1%} of the voxels ({label})",
                 subj, {"fraction": vals})


def _duration(rec: Mapping[str, Any]) -> float | None:
    return _num(rec.get("elapsed_s")) or _num(_result(rec).get("seconds"))


def check_chunk_durations(group: Sequence[Mapping[str, Any]], cfg: QAConfig) -> Score:
    """Slowest chunk vs the median chunk (a straggler hints at a divergent clean)."""
    subj = str(group[0].get("task_id"))
    d = {_chunk_label(r): t for r in group if (t := _duration(r)) is not None}
    if len(d) < 2:
        return na("imaging", "chunk_durations", subj, "fewer than two chunks with durations")
    med = float(np.median(list(d.values())))
    label, slow = max(d.items(), key=lambda kv: kv[1])
    ratio = slow / med if med > 0 else math.inf
    score = _ramp_cfg(ratio, cfg.get("imaging", "chunk_duration_ratio"))
    return Score("imaging", "chunk_durations", score,
                 f"slowest chunk {label} took {slow:.1f} s = {ratio:.1f} x the median {med:.1f} s", subj,
                 {"seconds": d, "median_s": med})


IMAGING_CHECKS: tuple[Callable[[Sequence[Mapping[str, Any]], QAConfig], Score], ...] = (
    check_clean_convergence, check_peak_residual, check_residual_vs_dirty, check_beam_shape,
    check_mask_fraction, check_chunk_durations)


def _is_image_record(rec: Mapping[str, Any]) -> bool:
    r = _result(rec)
    return "stages" in r or "beam_major_arcsec" in r


# ---------------------------------------------------------------------------------------------
# total power
# ---------------------------------------------------------------------------------------------

def _antenna_rms(r: Mapping[str, Any]) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    for a in r.get("antennas") or []:
        if not isinstance(a, Mapping):
            continue
        rms = _num(a.get("baseline_rms", a.get("rms", a.get("rms_k"))))
        exp = _num(a.get("radiometer_rms", a.get("expected_rms", a.get("expected_rms_k"))))
        if rms is not None:
            out[str(a.get("antenna", a.get("name", len(out))))] = (rms, exp)
    base = r.get("baseline_rms")
    if isinstance(base, Mapping):
        expected = r.get("radiometer_rms", r.get("expected_rms"))
        for ant, rms in base.items():
            exp = expected.get(ant) if isinstance(expected, Mapping) else expected
            if _num(rms) is not None:
                out.setdefault(str(ant), (float(rms), _num(exp)))
    return out


def check_baseline_rms(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Baseline-subtracted rms per antenna vs the radiometer expectation (worst antenna)."""
    r, subj = _result(record), subject_of(record)
    ants = _antenna_rms(r)
    ratios = {a: rms / exp for a, (rms, exp) in ants.items() if exp}
    if not ratios:
        return na("total_power", "baseline_rms", subj, "no per-antenna baseline rms with a radiometer expectation")
    ant, worst = max(ratios.items(), key=lambda kv: kv[1])
    score = _ramp_cfg(worst, cfg.get("total_power", "baseline_rms_over_radiometer"))
    return Score("total_power", "baseline_rms", score,
                 f"antenna {ant}: baseline rms {worst:.2f} x radiometer expectation ({len(ratios)} antennas)",
                 subj, {"ratio": ratios})


# ---------------------------------------------------------------------------------------------
# post-processing
# ---------------------------------------------------------------------------------------------

def _numbers(r: Mapping[str, Any]) -> dict[str, Any]:
    n = dict(r.get("numbers") or {})
    for k in ("interf_flux_jykms", "sd_flux_jykms", "feathered_flux_jykms"):
        if k in r and k not in n:
            n[k] = r[k]
    return n


def is_feather_record(record: Mapping[str, Any]) -> bool:
    n = _numbers(_result(record))
    return n.get("sd_flux_jykms") is not None and n.get("feathered_flux_jykms") is not None


def check_feather_flux(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Flux recovered by feathering: interferometer-only vs feathered vs TP over the same area."""
    subj = subject_of(record)
    n = _numbers(_result(record))
    fi, fs, ff = (_num(n.get(k)) for k in ("interf_flux_jykms", "sd_flux_jykms", "feathered_flux_jykms"))
    if fs is None or ff is None or fs == 0:
        return na("postprocess", "feather_flux", subj, "no TP / feathered flux in the feather result")
    dev = abs(ff / fs - 1.0)
    s1 = _ramp_cfg(dev, cfg.get("postprocess", "feathered_over_sd"))
    s2, excess = 1.0, None
    if fi is not None:
        excess = fi / fs - 1.0
        s2 = _ramp_cfg(max(excess, 0.0), cfg.get("postprocess", "interf_over_sd_excess"))
    reason = (f"feathered/TP flux {ff / fs:.3f}"
              + (f", interferometer recovers {fi / fs:.1%} of the TP flux" if fi is not None else ""))
    if s2 < s1:
        reason = f"interferometer flux exceeds TP by {excess:.1%} (TP flux scale?); " + reason
    return Score("postprocess", "feather_flux", min(s1, s2), reason, subj,
                 {"interf_jykms": fi, "sd_jykms": fs, "feathered_jykms": ff})


def check_mosaic_overlap(record: Mapping[str, Any], cfg: QAConfig) -> Score:
    """Continuity of the mosaic parts in their overlap (flux ratio between parts there)."""
    subj = subject_of(record)
    n = _numbers(_result(record))
    vals = n.get("overlap_flux_ratios")
    if vals is None and n.get("overlap_flux_ratio") is not None:
        vals = [n["overlap_flux_ratio"]]
    vals = [v for v in (_num(x) for x in vals or []) if v is not None and v > 0]
    if not vals:
        return na("postprocess", "mosaic_overlap", subj, "no overlap flux ratios in the linear mosaic result")
    worst = max(vals, key=lambda v: abs(math.log(v)))
    score = _ramp_cfg(abs(worst - 1.0), cfg.get("postprocess", "mosaic_overlap_mismatch"))
    return Score("postprocess", "mosaic_overlap", score,
                 f"parts differ by {abs(worst - 1):.1%} in their overlap", subj, {"ratios": vals})


def is_mosaic_record(record: Mapping[str, Any]) -> bool:
    r = _result(record)
    return r.get("step") == "linear_mosaic" or "mosaic_flux_jykms" in _numbers(r)


# ---------------------------------------------------------------------------------------------
# records -> scores
# ---------------------------------------------------------------------------------------------

def group_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records by task id (a mapped task's instances together), latest try per map index."""
    latest: dict[tuple[str, Any], Mapping[str, Any]] = {}
    for rec in records:
        key = (str(rec.get("task_id")), rec.get("map_index"))
        old = latest.get(key)
        if old is None or (rec.get("try_number") or 0) >= (old.get("try_number") or 0):
            latest[key] = rec
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for (tid, _), rec in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1] if isinstance(kv[0][1], int)
                                                                 else -1)):
        groups.setdefault(tid, []).append(rec)
    return groups


def score_records(records: Iterable[Mapping[str, Any]], cfg: QAConfig) -> list[Score]:
    """Every record check, dispatched on the record's stage and result content."""
    scores: list[Score] = []
    for _tid, group in group_records(records).items():
        stage = group[0].get("stage")
        try:
            if stage == "staging":
                for rec in group:
                    scores.extend(check(rec, cfg) for check in STAGING_CHECKS)
            elif stage == "imaging":
                imgs = [r for r in group if _is_image_record(r)]
                if imgs and any(_result(r).get("stages") for r in imgs):
                    scores.extend(check(imgs, cfg) for check in IMAGING_CHECKS)
                elif len(imgs) > 1:  # dirty images: only the chunk durations say something
                    scores.append(check_chunk_durations(imgs, cfg))
            elif stage == "total_power":
                scores.extend(check_baseline_rms(rec, cfg) for rec in group)
            elif stage == "postprocess":
                for rec in group:
                    if is_feather_record(rec):
                        scores.append(check_feather_flux(rec, cfg))
                    if is_mosaic_record(rec):
                        scores.append(check_mosaic_overlap(rec, cfg))
        except Exception as exc:  # noqa: BLE001 - a malformed record must not hide the others
            log.warning("QA checks of %s failed: %s", _tid, exc)
            scores.append(Score(str(stage), "record", 0.0, f"QA record could not be checked: {exc}",
                                subject_of(group[0])))
    return scores


# ---------------------------------------------------------------------------------------------
# FITS products
# ---------------------------------------------------------------------------------------------

def read_fits_cube(path: str | Path) -> tuple[np.ndarray, Any]:
    """(data as float32 ``(nv, ny, nx)`` or ``(ny, nx)``, header) with degenerate axes dropped."""
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(path, memmap=True) as hdul:
        hdu = next((h for h in hdul if h.data is not None), None)
        if hdu is None:
            raise ValueError(f"{path}: no data in any HDU")
        data = np.asarray(hdu.data, dtype=np.float32)
        header = hdu.header.copy()
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    return data, header


def _beam_pixels(header: Any) -> float | None:
    from astropy.wcs import WCS  # noqa: PLC0415
    from astropy.wcs.utils import proj_plane_pixel_scales  # noqa: PLC0415

    if "BMAJ" not in header or "BMIN" not in header:
        return None
    scale = float(np.mean(proj_plane_pixel_scales(WCS(header).celestial)))
    return float(np.pi / (4 * np.log(2)) * header["BMAJ"] * header["BMIN"] / scale**2)


def _sample(a: np.ndarray, max_points: int) -> np.ndarray:
    a = a.ravel()
    step = max(1, a.size // max_points)
    return a[::step]


def noise_z(cube: np.ndarray, noise: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """cube / noise at finite voxels outside ``mask`` (1D)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = cube / noise
    ok = np.isfinite(z) & (noise > 0)
    if mask is not None and mask.shape == z.shape:
        ok &= ~mask
    return z[ok]


def check_noise_gaussian(cube: np.ndarray, noise: np.ndarray, mask: np.ndarray | None, cfg: QAConfig,
                         subject: str = "") -> Score:
    """cube / noise outside the signal mask should be N(0, 1): width and negative tail."""
    z = _sample(noise_z(cube, noise, mask), int(cfg.get("report", "max_points_histogram")))
    if z.size < 100:
        return na("derived", "noise_gaussian", subject, "fewer than 100 signal-free voxels")
    core = z[np.abs(z) < 10]
    std = float(np.std(core)) if core.size else math.inf
    neg = float(np.mean(z < -4.0))
    expected = 3.167e-5
    excess = neg / expected
    s1 = _ramp_cfg(abs(std - 1.0), cfg.get("derived", "noise_std_deviation"))
    s2 = _ramp_cfg(excess, cfg.get("derived", "noise_tail_excess")) if z.size >= 1.0 / expected else 1.0
    reason = (f"cube/noise outside the mask: std {std:.2f}, {neg:.2e} of voxels below -4 sigma "
              f"({excess:.1f} x Gaussian)")
    return Score("derived", "noise_gaussian", min(s1, s2), reason, subject,
                 {"std": std, "neg_tail_fraction": neg, "tail_excess": excess, "n": int(z.size)})


def _step_profile(profile: np.ndarray, size: int = 7) -> tuple[float, int]:
    """Largest step of a relative profile (1 = typical) and where, as a fraction of the local level.

    A step is where the profile leaves both its running median (``size``) **and** the straight
    line between its two neighbours: a stripe (one element or a band a few elements wide, seen
    at its edges) does both, a smooth rise does not - e.g. the noise of the bright line channels
    of a dynamic-range-limited cube, which climbs over ten channels and comes down again.
    """
    from scipy.ndimage import median_filter  # noqa: PLC0415

    p = np.asarray(profile, dtype=float)
    ok = np.isfinite(p)
    if ok.sum() < size:
        return 0.0, -1
    filled = np.where(ok, p, np.nanmedian(p[ok]))
    local = median_filter(filled, size=size, mode="nearest")
    dev_median = np.abs(filled - local)
    padded = np.concatenate([filled[:1], filled, filled[-1:]])
    dev_line = np.abs(filled - 0.5 * (padded[:-2] + padded[2:]))
    # relative to the local level where that is above typical (a step on a raised noise is
    # judged against the raised noise)
    dev = np.minimum(dev_median, dev_line) / np.maximum(local, 1.0)
    dev[~ok] = 0.0
    i = int(np.argmax(dev))
    return float(dev[i]), i


def check_noise_stripes(noise: np.ndarray, cfg: QAConfig, subject: str = "") -> Score:
    """Stripes in the noise cube: sharp row / column / channel steps of the noise.

    The channel-median noise map is divided by its own 2D running median (9 px), which
    follows smooth primary-beam variations but not a band a few pixels wide; the row and
    column medians of that ratio (rows/columns with at least 10 % of the valid pixels) and the
    per-channel median noise (relative to its median) are searched for steps.
    """
    from scipy.ndimage import binary_erosion, median_filter  # noqa: PLC0415

    if noise.ndim == 2:
        noise = noise[None]
    valid = np.isfinite(noise) & (noise > 0)
    clean = np.where(valid, noise, np.nan)
    found: dict[str, tuple[float, int]] = {}
    with np.errstate(invalid="ignore", divide="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        nmap = np.nanmedian(clean, axis=0)
        okmap = np.isfinite(nmap)
        if okmap.sum() >= 81:
            fill = np.where(okmap, nmap, np.nanmedian(nmap))
            inner = binary_erosion(okmap, structure=np.ones((9, 9), dtype=bool))
            ratio = np.where(inner, nmap / median_filter(fill, size=9, mode="nearest"), np.nan)
            okmap = inner
            for axis, name in ((1, "row"), (0, "column")):
                count = okmap.sum(axis=axis)
                prof = np.nanmedian(ratio, axis=axis)
                prof[count < 0.1 * count.max()] = np.nan
                found[name] = _step_profile(prof)
        if noise.shape[0] >= 7:
            chans = np.nanmedian(clean.reshape(noise.shape[0], -1), axis=1)
            found["channel"] = _step_profile(chans / np.nanmedian(chans))
    if not found:
        return na("derived", "noise_stripes", subject, "noise cube has too few valid pixels")
    axis, (amp, where) = max(found.items(), key=lambda kv: kv[1][0])
    score = _ramp_cfg(amp, cfg.get("derived", "noise_stripe_amplitude"))
    if score < GREEN:
        reason = f"noise stripe: {axis} {where} deviates by {amp:.0%} of the local noise"
    else:
        reason = f"no noise stripes (largest {axis} step {amp:.1%} of the local noise)"
    return Score("derived", "noise_stripes", score, reason, subject,
                 {k: {"amplitude": v[0], "index": v[1]} for k, v in found.items()})


def check_negative_bowl(cube: np.ndarray, noise: np.ndarray, beam_pixels: float | None, cfg: QAConfig,
                        subject: str = "") -> Score:
    """Negative bowls: the largest connected region significantly below zero, in beams.

    The cube / noise is smoothed over ``negative_bowl_nchan`` channels (and rescaled to unit
    noise); voxels below ``-negative_bowl_snr`` are grouped in 3D and the sky area of the
    largest group is compared with the beam.
    """
    from scipy.ndimage import label, uniform_filter1d  # noqa: PLC0415

    if cube.ndim == 2:
        cube, noise = cube[None], (noise if noise.ndim == 3 else noise[None])
    k = max(1, int(cfg.get("derived", "negative_bowl_nchan")))
    thr = float(cfg.get("derived", "negative_bowl_snr"))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where((noise > 0) & np.isfinite(cube), cube / noise, 0.0).astype(np.float32)
    if k > 1 and z.shape[0] >= k:
        z = uniform_filter1d(z, size=k, axis=0, mode="constant") * np.float32(np.sqrt(k))
    neg = z < -thr
    if not neg.any():
        return Score("derived", "negative_bowl", 1.0, f"no voxel below -{thr:g} sigma", subject)
    labels, n = label(neg)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    big = int(np.argmax(counts))
    zz, yy, xx = np.nonzero(labels == big)
    area = int(np.unique(yy * labels.shape[2] + xx).size)
    bp = beam_pixels or 1.0
    beams = area / bp
    score = _ramp_cfg(beams, cfg.get("derived", "negative_bowl_beams"))
    depth = float(z[zz, yy, xx].min())
    where = f"x={int(np.median(xx))} y={int(np.median(yy))} ch {int(zz.min())}-{int(zz.max())}"
    if score < GREEN:
        reason = f"negative bowl of {beams:.1f} beams at {where}, down to {depth:.1f} sigma"
    else:
        reason = f"largest negative region {beams:.1f} beams ({where})"
    return Score("derived", "negative_bowl", score, reason, subject,
                 {"area_beams": beams, "area_pixels": area, "min_snr": depth, "regions": int(n)})


def check_strict_mask_flux(cube: np.ndarray, strict: np.ndarray, broad: np.ndarray | None, cfg: QAConfig,
                           subject: str = "") -> Score:
    """Fraction of the emission (in the broad mask, else the whole cube) inside the strict mask."""
    data = np.where(np.isfinite(cube), cube, 0.0)
    ref_mask = broad if broad is not None and broad.shape == data.shape else None
    total = float(data[ref_mask].sum()) if ref_mask is not None else float(data[data > 0].sum())
    inside = float(data[strict].sum()) if strict.shape == data.shape else math.nan
    if not math.isfinite(inside) or total <= 0:
        return na("derived", "strict_mask_flux", subject, "no positive emission or mask shape mismatch")
    frac = inside / total
    score = _ramp_cfg(frac, cfg.get("derived", "strict_mask_flux_fraction"))
    ref = "broad mask" if ref_mask is not None else "all positive voxels"
    return Score("derived", "strict_mask_flux", score,
                 f"strict mask holds {frac:.1%} of the flux in the {ref}", subject,
                 {"fraction": frac, "reference": ref})


def check_moment_finite(moment: np.ndarray, mask: np.ndarray, cfg: QAConfig, subject: str = "",
                        name: str = "mom0") -> Score:
    """Moment map finite wherever the (projected) mask has a voxel."""
    proj = mask.any(axis=0) if mask.ndim == 3 else mask.astype(bool)
    if proj.shape != moment.shape:
        return na("derived", f"{name}_finite", subject, f"mask {proj.shape} and {name} {moment.shape} differ")
    n = int(proj.sum())
    if n == 0:
        return Score("derived", f"{name}_finite", 1.0, "empty mask: nothing to check", subject)
    frac = float(np.isfinite(moment[proj]).mean())
    score = _ramp_cfg(frac, cfg.get("derived", "moment_finite_fraction"))
    return Score("derived", f"{name}_finite", score,
                 f"{name} finite at {frac:.1%} of the {n} masked pixels", subject, {"fraction": frac, "n": n})


def _freq_hz(header: Any) -> float | None:
    for key in ("RESTFRQ", "RESTFREQ"):
        if key in header and float(header[key]) > 0:
            return float(header[key])
    return None


def to_kelvin_factor(header: Any) -> float:
    """Factor turning the data into K (1 for K; Jy/beam through the beam and frequency)."""
    unit = str(header.get("BUNIT", "K")).strip().lower()
    if unit in ("k", "kelvin"):
        return 1.0
    if "jy/beam" in unit and "BMAJ" in header and _freq_hz(header):
        import astropy.units as u  # noqa: PLC0415
        from radio_beam import Beam  # noqa: PLC0415

        beam = Beam(header["BMAJ"] * u.deg, header["BMIN"] * u.deg, header.get("BPA", 0) * u.deg)
        return float(beam.jtok(_freq_hz(header) * u.Hz).value)
    return 1.0


def integrated_map(cube: np.ndarray) -> np.ndarray:
    """Sum over channels with NaN as 0 (K * channels); a 2D input is returned as is."""
    return np.nansum(cube, axis=0) if cube.ndim == 3 else np.nan_to_num(cube)


def check_sd_flux_scale(interf: tuple[np.ndarray, Any], sd: tuple[np.ndarray, Any], cfg: QAConfig,
                        subject: str = "") -> Score:
    """TP flux scale from the uv overlap: interferometer vs TP amplitudes in an annulus.

    Both channel-summed maps are taken in K (so the ratio does not depend on units). The
    interferometer map is smoothed to the TP beam (Fourier domain, on its own grid) and, when
    the grids differ, interpolated onto the TP grid: the comparison happens at TP resolution
    on the TP pixels, so no interpolation smooths the TP map. Both maps are windowed by the
    interferometer footprint eroded by one TP beam (tapered), Fourier transformed, and a
    least-squares scale factor interferometer = f x TP is fitted over the uv annulus
    ``uv_overlap_annulus_m`` (the window mixes uv cells ~1 window-width apart: keep the
    annulus ~1 m above the shortest baseline). A correct TP calibration gives f = 1; a TP
    cube with a flux error e gives f = 1 / (1 + e).
    """
    from astropy.wcs import WCS  # noqa: PLC0415
    from astropy.wcs.utils import proj_plane_pixel_scales  # noqa: PLC0415
    from scipy.ndimage import binary_erosion, gaussian_filter  # noqa: PLC0415

    icube, ih = interf
    scube, sh = sd
    freq = _freq_hz(ih) or _freq_hz(sh)
    if freq is None or "BMAJ" not in sh or "BMAJ" not in ih:
        return na("postprocess", "tp_flux_scale", subject, "no rest frequency or beam in the FITS headers")
    iw, sw = WCS(ih), WCS(sh)
    if icube.ndim == 3 and scube.ndim == 3 and icube.shape[0] == scube.shape[0]:
        # same channels: sum only where the TP spectrum shows the line (less noise)
        spec = np.nansum(scube, axis=(1, 2))
        line = spec > 0.1 * np.nanmax(spec) if np.nanmax(spec) > 0 else np.ones(spec.size, dtype=bool)
        icube, scube = icube[line], scube[line]
    imap = integrated_map(icube) * to_kelvin_factor(ih)
    smap = integrated_map(scube) * to_kelvin_factor(sh)
    if icube.ndim == 3 and scube.ndim == 3:  # K * channels -> K km/s (channel widths may differ)
        imap = imap * (abs(float(iw.spectral.wcs.cdelt[0])) if iw.has_spectral else 1.0)
        smap = smap * (abs(float(sw.spectral.wcs.cdelt[0])) if sw.has_spectral else 1.0)
    foot = np.isfinite(icube).any(axis=0) if icube.ndim == 3 else np.isfinite(icube)
    ipix = float(np.mean(proj_plane_pixel_scales(iw.celestial)))
    sd_beam_deg, int_beam_deg = float(sh["BMAJ"]), float(ih["BMAJ"])
    # 1. interferometer map at the TP resolution, on its own grid
    ik = _kgrid(imap.shape)
    imap_sd = np.fft.ifft2(np.fft.fft2(np.where(foot, imap, 0.0)) * _transfer(ik, sd_beam_deg / ipix)
                           / _transfer(ik, int_beam_deg / ipix)).real
    # 2. onto the TP grid when the grids differ
    same = smap.shape == imap.shape and np.allclose(iw.celestial.wcs.cdelt, sw.celestial.wcs.cdelt) and \
        np.allclose(iw.celestial.wcs.crval, sw.celestial.wcs.crval) and \
        np.allclose(iw.celestial.wcs.crpix, sw.celestial.wcs.crpix)
    if not same:
        from reproject import reproject_interp  # noqa: PLC0415

        imap_sd, _ = reproject_interp((imap_sd, iw.celestial), sw.celestial, shape_out=smap.shape, order="bilinear")
        f_t, _ = reproject_interp((foot.astype(float), iw.celestial), sw.celestial, shape_out=smap.shape,
                                  order="bilinear")
        foot = np.nan_to_num(f_t) > 0.99
        imap_sd = np.nan_to_num(imap_sd)
    foot &= np.isfinite(smap)
    pix_deg = float(np.mean(proj_plane_pixel_scales(sw.celestial))) if not same else ipix
    sd_fwhm_pix = sd_beam_deg / pix_deg
    r = max(1, int(round(sd_fwhm_pix)))
    inner = binary_erosion(foot, structure=np.ones((2 * r + 1, 2 * r + 1), dtype=bool))
    lo, hi = (float(x) for x in cfg.get("postprocess", "uv_overlap_annulus_m"))
    lam = 299792458.0 / freq
    fringe_pix = lam / lo / np.deg2rad(pix_deg)  # largest scale of the annulus (pixels)
    diameter = 2.0 * math.sqrt(float(inner.sum()) / math.pi)
    need = float(cfg.get("postprocess", "uv_overlap_min_fringes"))
    if diameter < need * fringe_pix:
        return na("postprocess", "tp_flux_scale", subject,
                  f"field too small for the uv overlap: {diameter * pix_deg * 3600:.0f}\" usable, needs "
                  f"{need:g} x {fringe_pix * pix_deg * 3600:.0f}\" (the {lo:g} m fringe)")
    # 3. one tapered window for both maps, least-squares scale over the annulus
    window = gaussian_filter(inner.astype(float), sd_fwhm_pix / 2.355)
    fi = np.fft.fft2(np.where(foot, imap_sd, 0.0) * window)
    fs = np.fft.fft2(np.where(foot, smap, 0.0) * window)
    uv_m = _kgrid(smap.shape) / np.deg2rad(pix_deg) * lam
    ring = (uv_m >= lo) & (uv_m <= hi)
    if ring.sum() < 4:
        return na("postprocess", "tp_flux_scale", subject, f"no uv cells in the {lo:g}-{hi:g} m annulus")
    denom = float(np.sum(np.abs(fs[ring]) ** 2))
    if denom <= 0:
        return na("postprocess", "tp_flux_scale", subject, "TP map has no power in the uv overlap")
    f = float(np.sum((fi[ring] * np.conj(fs[ring])).real) / denom)
    score = _ramp_cfg(abs(f - 1.0), cfg.get("postprocess", "uv_overlap_scale"))
    if score < GREEN:
        tp_err = (1.0 / f - 1.0) if f > 0 else math.inf
        reason = (f"TP flux scale off: interferometer/TP = {f:.2f} in the {lo:g}-{hi:g} m uv overlap "
                  f"(TP flux error {tp_err:+.0%})")
    else:
        reason = f"TP and interferometer agree in the {lo:g}-{hi:g} m uv overlap (ratio {f:.3f})"
    return Score("postprocess", "tp_flux_scale", score, reason, subject,
                 {"ratio": f, "annulus_m": [lo, hi], "n_uv_cells": int(ring.sum()), "same_grid": bool(same)})


def _kgrid(shape: tuple[int, ...]) -> np.ndarray:
    """|k| (cycles / pixel) of an FFT grid."""
    return np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])


def _transfer(k: np.ndarray, fwhm_pix: float) -> np.ndarray:
    """Fourier transform of a unit-peak Gaussian beam of FWHM ``fwhm_pix`` at ``k`` (cycles / pixel)."""
    return np.exp(-(np.pi * fwhm_pix * k) ** 2 / (4 * np.log(2)))


@dataclass
class ProductSet:
    """FITS products of one (target, config, product) at native resolution, for product checks."""

    name: str
    cube: str | None = None
    noise: str | None = None
    strictmask: str | None = None
    broadmask: str | None = None
    moments: dict[str, str] = field(default_factory=dict)
    singledish: str | None = None
    interf_cube: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _exists(p: str | None) -> bool:
    return bool(p) and Path(p).is_file()


def product_checks(ps: ProductSet, cfg: QAConfig) -> list[Score]:
    """Checks that read FITS products (vectorised numpy; each file read once)."""
    scores: list[Score] = []
    subj = ps.name
    cube = noise = strict = broad = None
    cube_h = None
    try:
        if _exists(ps.cube):
            cube, cube_h = read_fits_cube(ps.cube)
        if _exists(ps.noise):
            noise, _ = read_fits_cube(ps.noise)
        if _exists(ps.strictmask):
            strict = read_fits_cube(ps.strictmask)[0] > 0.5
        if _exists(ps.broadmask):
            broad = read_fits_cube(ps.broadmask)[0] > 0.5
    except (OSError, ValueError) as exc:
        return [Score("derived", "products", 0.0, f"cannot read the products: {exc}", subj)]
    if noise is not None and noise.ndim == 2 and cube is not None and cube.ndim == 3:
        noise = np.broadcast_to(noise, cube.shape)
    mask = broad if broad is not None else strict
    if noise is None and strict is None and not _exists(ps.singledish):
        return [na("derived", "products", subj, "no derived products (noise cube, masks) in the records")]
    if cube is not None and noise is not None and noise.shape == cube.shape:
        scores.append(check_noise_gaussian(cube, noise, mask, cfg, subj))
        scores.append(check_negative_bowl(cube, noise, _beam_pixels(cube_h), cfg, subj))
    else:
        scores.append(na("derived", "noise_gaussian", subj, "no cube + noise cube pair"))
        scores.append(na("derived", "negative_bowl", subj, "no cube + noise cube pair"))
    if noise is not None:
        scores.append(check_noise_stripes(noise, cfg, subj))
    else:
        scores.append(na("derived", "noise_stripes", subj, "no noise cube"))
    if cube is not None and strict is not None:
        scores.append(check_strict_mask_flux(cube, strict, broad, cfg, subj))
    else:
        scores.append(na("derived", "strict_mask_flux", subj, "no cube + strict mask pair"))
    for name, m in (("strictmom0", strict), ("broadmom0", broad if broad is not None else None)):
        path = ps.moments.get(name)
        if m is None or not _exists(path):
            continue
        mom, _ = read_fits_cube(path)
        scores.append(check_moment_finite(mom, m, cfg, subj, name))
    if _exists(ps.singledish) and (_exists(ps.interf_cube) or cube is not None):
        try:
            interf = read_fits_cube(ps.interf_cube) if _exists(ps.interf_cube) else (cube, cube_h)
            scores.append(check_sd_flux_scale(interf, read_fits_cube(ps.singledish), cfg, subj))
        except (OSError, ValueError) as exc:
            scores.append(Score("postprocess", "tp_flux_scale", 0.0, f"cannot compare with TP: {exc}", subj))
    return scores
