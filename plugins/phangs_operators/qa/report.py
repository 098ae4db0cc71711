"""The QA report of a target run: static HTML + JSON, and an overview page of all targets.

The report is self-contained: inline CSS, no scripts, fonts or CDNs; figures are PNG files in
``img/`` next to ``report.html`` (relative links), so the folder works from a local disk and
from the product store. ``report.json`` holds every score, the figure list and the metadata.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.qa import plots
from phangs_operators.qa.checks import (
    ProductSet,
    Score,
    _exists,
    noise_z,
    product_checks,
    read_fits_cube,
    score_records,
    subject_of,
    to_kelvin_factor,
)
from phangs_operators.qa.collect import REPORT_MARK, data_used, discover_products, load_records
from phangs_operators.qa.config import QAConfig, load_config

log = logging.getLogger(__name__)

SCHEMA = "phangs-qa-report/1"
#: report sections, in pipeline order
SECTIONS = ("total_power", "staging", "imaging", "postprocess", "derived", "publish")
SECTION_TITLES = {"total_power": "Total power", "staging": "Staging", "imaging": "Imaging",
                  "postprocess": "Post-processing", "derived": "Derived products", "publish": "Publication"}
REPORT_HTML, REPORT_JSON = "report.html", "report.json"
SOFTWARE_PACKAGES = ("phangs-airflow", "apache-airflow", "casatools", "casatasks", "numpy", "astropy",
                     "scipy", "matplotlib", "spectral-cube", "radio-beam")

CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.score{font-weight:bold;text-align:right}
tr.good td.score{background:#c8e6c9}tr.warning td.score{background:#fff3b0}
tr.bad td.score{background:#f4b6b6}tr.na td.score{background:#e6e6e6;color:#666}
.status-pass{color:#1b5e20}.status-fail{color:#b71c1c}
figure{display:inline-block;margin:.5em;max-width:48%;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#444}
nav a{margin-right:1em}
.meta td:first-child{font-weight:bold}
"""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote and found."""

    target: str
    html: str
    json: str
    worst_score: float | None
    status: str
    failing: list[str] = field(default_factory=list)
    n_scores: int = 0
    n_figures: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, REPORT_MARK: self.html, "report_json": self.json,
                "worst_score": self.worst_score, "status": self.status, "failing": list(self.failing),
                "n_scores": self.n_scores, "n_figures": self.n_figures, "seconds": round(self.seconds, 3)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:120] or "x"


def software_versions(records: Sequence[Mapping[str, Any]] = ()) -> dict[str, str]:
    """Installed versions of the key packages, plus what the records say they ran with."""
    out: dict[str, str] = {}
    for pkg in SOFTWARE_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    seen: dict[str, set[str]] = {}
    for rec in records:
        for k, v in (rec.get("software") or {}).items():
            seen.setdefault(f"record:{k}", set()).add(str(v))
    out.update({k: ", ".join(sorted(v)) for k, v in seen.items()})
    return out


def sort_scores(scores: Iterable[Score]) -> list[Score]:
    """Worst first; "not available" last; ties in pipeline order."""
    order = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(scores, key=lambda s: (s.value is None, s.value if s.value is not None else 0.0,
                                         order.get(s.stage, 99), s.subject, s.name))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def _velocity_kms(header: Any, nchan: int) -> np.ndarray:
    from astropy.wcs import WCS  # noqa: PLC0415

    w = WCS(header)
    if not w.has_spectral:
        return np.arange(nchan, dtype=float)
    spec = w.spectral
    world = spec.pixel_to_world_values(np.arange(nchan))
    ctype = str(spec.wcs.ctype[0]).upper()
    world = np.asarray(world, dtype=float)  # astropy returns SI: Hz for FREQ, m/s for VRAD/VOPT/VELO
    if ctype.startswith("FREQ"):
        rest = float(header.get("RESTFRQ", header.get("RESTFREQ", 0)) or 0)
        if rest > 0:
            return 299792.458 * (1.0 - world / rest)
        return world / 1e9
    return world / 1000.0


def _jy_per_k_pixel(header: Any) -> float:
    import astropy.units as u  # noqa: PLC0415
    from astropy.wcs import WCS  # noqa: PLC0415
    from astropy.wcs.utils import proj_plane_pixel_area  # noqa: PLC0415

    rest = float(header.get("RESTFRQ", header.get("RESTFREQ", 230.538e9)) or 230.538e9)
    jy_sr = (1 * u.K).to(u.Jy / u.sr, equivalencies=u.brightness_temperature(rest * u.Hz)).value
    pix_sr = float(proj_plane_pixel_area(WCS(header).celestial)) * (math.pi / 180) ** 2
    return float(jy_sr * pix_sr)


def _spectrum(cube: np.ndarray, header: Any, select: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = to_kelvin_factor(header) * _jy_per_k_pixel(header)
    flux = np.nansum(np.where(select[None], cube, 0.0), axis=(1, 2)) * k
    return _velocity_kms(header, cube.shape[0]), flux


def _footprint_in(sd_header: Any, sd_shape: tuple[int, int], int_header: Any, foot: np.ndarray) -> np.ndarray:
    """Pixels of the TP grid whose centres fall inside the interferometer footprint."""
    from astropy.wcs import WCS  # noqa: PLC0415

    sw, iw = WCS(sd_header).celestial, WCS(int_header).celestial
    yy, xx = np.mgrid[0:sd_shape[0], 0:sd_shape[1]]
    ra, dec = sw.all_pix2world(xx.ravel(), yy.ravel(), 0)
    px, py = iw.all_world2pix(ra, dec, 0)
    ix, iy = np.rint(px).astype(int), np.rint(py).astype(int)
    inside = (ix >= 0) & (iy >= 0) & (ix < foot.shape[1]) & (iy < foot.shape[0])
    sel = np.zeros(ix.size, dtype=bool)
    sel[inside] = foot[iy[inside], ix[inside]]
    return sel.reshape(sd_shape)


def product_figures(ps: ProductSet, img_dir: Path, cfg: QAConfig) -> list[plots.Figure]:
    """Peak-intensity and mom0 maps, noise histogram and (with TP) the integrated spectra."""
    figs: list[plots.Figure] = []
    if not _exists(ps.cube):
        return figs
    cube, h = read_fits_cube(ps.cube)
    if cube.ndim != 3:
        return figs
    strict = read_fits_cube(ps.strictmask)[0] > 0.5 if _exists(ps.strictmask) else None
    broad = read_fits_cube(ps.broadmask)[0] > 0.5 if _exists(ps.broadmask) else None
    mask = strict if strict is not None and strict.shape == cube.shape else None
    mask2d = mask.any(axis=0) if mask is not None else None
    base = _safe(ps.name)
    unit = str(h.get("BUNIT", "")).strip() or "arbitrary"
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        peak = np.nanmax(np.where(np.isfinite(cube), cube, -np.inf), axis=0)
    peak[~np.isfinite(peak)] = np.nan
    figs.append(plots.map_with_beam(peak, h, mask2d, img_dir / f"{base}_peak.png",
                                    title=f"peak intensity, {ps.name}", unit=unit, stage="derived",
                                    subject=ps.name, what="Peak intensity (maximum over channels)"))
    mom_key = next((k for k in ("strictmom0", "broadmom0") if _exists(ps.moments.get(k))), None)
    mom_path = ps.moments[mom_key] if mom_key else None
    if mom_path:
        mom0, mh = read_fits_cube(mom_path)
        mom_unit = str(mh.get("BUNIT", "")).strip() or f"{unit} km/s"
        what = f"Moment 0 ({mom_key[:-4]} mask, from the moment product)"
    else:
        dv = abs(float(np.median(np.diff(_velocity_kms(h, cube.shape[0]))))) if cube.shape[0] > 1 else 1.0
        m = mask if mask is not None else np.ones(cube.shape, dtype=bool)
        mom0 = np.where(m.any(axis=0), np.nansum(np.where(m, cube, 0.0), axis=0) * dv, np.nan)
        mh, mom_unit, what = h, f"{unit} km/s", "Moment 0 (computed in the strict mask)"
    if mom0.shape == peak.shape:
        figs.append(plots.map_with_beam(mom0, h, mask2d, img_dir / f"{base}_mom0.png",
                                        title=f"moment 0, {ps.name}", unit=mom_unit, stage="derived",
                                        subject=ps.name, what=what))
    if _exists(ps.noise):
        noise, _ = read_fits_cube(ps.noise)
        if noise.ndim == 2:
            noise = np.broadcast_to(noise, cube.shape)
        if noise.shape == cube.shape:
            sig = broad if broad is not None and broad.shape == cube.shape else mask
            z = noise_z(cube, noise, sig)
            step = max(1, z.size // int(cfg.get("report", "max_points_histogram")))
            figs.append(plots.noise_histogram(z[::step], img_dir / f"{base}_noise_hist.png", stage="derived",
                                              subject=ps.name))
    if _exists(ps.singledish):
        curves = []
        foot = np.isfinite(cube).any(axis=0)
        icube, ih = (read_fits_cube(ps.interf_cube) if _exists(ps.interf_cube) else (None, None))
        if icube is not None and icube.ndim == 3 and icube.shape[1:] == cube.shape[1:]:
            foot = np.isfinite(icube).any(axis=0)
            curves.append(("interferometer",) + _spectrum(icube, ih, foot))
        sd, sh = read_fits_cube(ps.singledish)
        if sd.ndim == 3:
            sel = _footprint_in(sh, sd.shape[1:], h, foot)
            curves.append(("total power",) + _spectrum(sd, sh, sel))
        curves.append(("feathered",) + _spectrum(cube, h, foot))
        figs.append(plots.spectra(curves, img_dir / f"{base}_spectra.png", stage="postprocess", subject=ps.name))
    return figs


def imaging_figures(records: Sequence[Mapping[str, Any]], img_dir: Path) -> list[plots.Figure]:
    """Clean convergence curves per imaging task, and the chunk timeline."""
    figs: list[plots.Figure] = []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        result = rec.get("result")
        if rec.get("stage") == "imaging" and isinstance(result, Mapping) and result.get("stages"):
            groups.setdefault(str(rec.get("task_id")), []).append(rec)
    for tid, recs in sorted(groups.items()):
        if not any(any(v for v in (r["result"]["stages"] or {}).values()) for r in recs):
            continue
        recs = sorted(recs, key=lambda r: r.get("map_index") if isinstance(r.get("map_index"), int) else -1)
        labels = [_label(r) for r in recs]
        figs.append(plots.clean_convergence(recs, labels, img_dir / f"{_safe(tid)}_clean.png", stage="imaging",
                                            subject=tid))
    bars = []
    for rec in records:
        mi = rec.get("map_index")
        if rec.get("stage") == "imaging" and isinstance(mi, int) and mi >= 0 and rec.get("elapsed_s") is not None:
            end = float(rec.get("finished_unix") or rec.get("_mtime") or 0.0)
            dur = float(rec["elapsed_s"])
            bars.append((str(rec.get("task_id")), _label(rec), end - dur, dur))
    if bars:
        t0 = min(b[2] for b in bars)
        bars = sorted(((t, lab, s - t0, d) for t, lab, s, d in bars), key=lambda b: (b[2], b[0]))
        figs.append(plots.chunk_timeline(bars, img_dir / "chunk_timeline.png", stage="imaging",
                                         subject="imaging chunks"))
    return figs


def _label(rec: Mapping[str, Any]) -> str:
    r = rec.get("result") or {}
    if r.get("start") is not None and r.get("nchan"):
        return f"ch {int(r['start'])}-{int(r['start']) + int(r['nchan']) - 1}"
    mi = rec.get("map_index")
    return f"#{mi}" if isinstance(mi, int) and mi >= 0 else subject_of(rec)


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

def _score_rows(scores: Sequence[Score], with_stage: bool = True) -> str:
    rows = []
    for s in scores:
        value = "n/a" if s.value is None else f"{s.value:.2f}"
        stage = f"<td>{html.escape(SECTION_TITLES.get(s.stage, s.stage))}</td>" if with_stage else ""
        rows.append(f'<tr class="{s.level}"><td class="score">{value}</td>{stage}'
                    f"<td>{html.escape(s.name)}</td><td>{html.escape(s.subject)}</td>"
                    f"<td>{html.escape(s.reason)}</td></tr>")
    head = "<tr><th>score</th>" + ("<th>stage</th>" if with_stage else "") + \
        "<th>check</th><th>subject</th><th>reason</th></tr>"
    return head + "".join(rows)


def _meta_table(meta: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in meta.items())
    return f'<table class="meta">{rows}</table>'


def render_html(doc: Mapping[str, Any], scores: Sequence[Score], figures: Sequence[plots.Figure],
                out_dir: Path) -> str:
    """The report page (a string)."""
    e = html.escape
    target = doc["target"]
    status = doc["status"]
    worst = doc["worst_score"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>QA report: {e(target)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>QA report: {e(target)}</h1>",
             f'<p class="status-{e(status)}" id="status">Status: <strong>{e(status.upper())}</strong>, '
             f"worst score {'n/a' if worst is None else f'{worst:.2f}'} (minimum {doc['min_score']:.2f}).</p>",
             "</header><nav>" + "".join(f'<a href="#stage-{s}">{e(SECTION_TITLES[s])}</a>' for s in SECTIONS)
             + "</nav>"]
    meta = {"target": target, "run id": doc.get("run_id") or "n/a", "DAG": doc.get("dag_id") or "n/a",
            "key-set hash": doc.get("keyset_hash") or "n/a", "generated (UTC)": doc["generated_utc"],
            "thresholds": f"version {doc['thresholds']['version']}, sha256 {doc['thresholds']['sha256'][:12]}, "
                          + ", ".join(doc["thresholds"]["sources"]),
            "QA records": doc["n_records"]}
    parts += ['<section id="overview"><h2>Overview</h2>', _meta_table(meta)]
    if doc["failing"]:
        parts.append("<p>Scores below the minimum:</p><ul>"
                     + "".join(f"<li>{e(r)}</li>" for r in doc["failing"]) + "</ul>")
    parts.append(f'<table id="overview-table">{_score_rows(scores)}</table>')
    parts.append("<h3>Data used</h3>")
    if doc["data_used"]:
        rows = "".join(
            f"<tr><td>{e(str(d['group']))}</td><td>{e(str(d.get('product')))}</td>"
            f"<td>{e('; '.join(f'{k}: ' + ', '.join(v) for k, v in d['inputs'].items()))}</td>"
            f"<td>{e(str(d.get('nchan')))}</td></tr>" for d in doc["data_used"])
        parts.append('<table id="data-used"><tr><th>config / product</th><th>kind</th>'
                     f"<th>measurement sets</th><th>channels</th></tr>{rows}</table>")
    else:
        parts.append("<p>No staging records.</p>")
    parts.append("<h3>Products checked</h3>")
    if doc["products"]:
        rows = "".join(f"<tr><td>{e(p['name'])}</td><td>{e(', '.join(Path(str(v)).name for k, v in p.items() if k != 'name' and v and not isinstance(v, dict)))}</td></tr>"  # noqa: E501
                       for p in doc["products"])
        parts.append(f'<table id="products"><tr><th>product</th><th>files</th></tr>{rows}</table>')
    else:
        parts.append("<p>No FITS products found in the records.</p>")
    parts.append("<h3>Software</h3>" + _meta_table(doc["software"]))
    if doc["problems"]:
        parts.append("<h3>Problems reading the records</h3><ul>"
                     + "".join(f"<li>{e(p)}</li>" for p in doc["problems"]) + "</ul>")
    parts.append("</section>")
    for stage in SECTIONS:
        st = [s for s in scores if s.stage == stage]
        figs = [f for f in figures if f.stage == stage]
        n_rec = doc["records_per_stage"].get(stage, 0)
        parts.append(f'<section id="stage-{stage}" class="stage"><h2>{e(SECTION_TITLES[stage])}</h2>'
                     f"<p>{n_rec} QA record(s).</p>")
        if st:
            parts.append(f'<table class="scores">{_score_rows(st, with_stage=False)}</table>')
        else:
            parts.append("<p>No scores for this stage.</p>")
        tasks = doc["tasks_per_stage"].get(stage) or []
        if tasks:
            rows = "".join(f"<tr><td>{e(t['task_id'])}</td><td>{t['instances']}</td><td>{t['elapsed_s']:.1f}</td>"
                           f"<td>{t['max_try']}</td></tr>" for t in tasks)
            parts.append(f'<table class="tasks"><tr><th>task</th><th>instances</th><th>task time (s)</th>'
                         f"<th>max try</th></tr>{rows}</table>")
        for f in figs:
            rel = os.path.relpath(f.path, out_dir)
            parts.append(f'<figure><img src="{e(rel)}" alt="{e(f.alt)}">'
                         f"<figcaption>{e(f.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_report(target: str, workdirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 cfg: QAConfig | None = None, thresholds: str | os.PathLike[str] | None = None,
                 run_id: str | None = None, dag_id: str | None = None, keyset_hash: str | None = None,
                 min_score: float | None = None, make_plots: bool = True) -> ReportResult:
    """Score a target's QA records and products and write ``report.html`` + ``report.json``.

    Parameters
    ----------
    target
        Target name (titles only).
    workdirs
        The target's working directories (imaging, postprocess, derived); their ``qa/*.json``
        records are read.
    out_dir
        Folder of the report (created); figures go to ``out_dir/img``.
    cfg, thresholds
        Merged thresholds, or a project thresholds file to merge over the defaults.
    run_id, dag_id, keyset_hash
        Shown in the overview; ``run_id``/``dag_id`` default to the most common in the records.
    min_score
        Worst acceptable score (default ``report.min_score`` of the thresholds).
    make_plots
        False skips the figures (scores only).
    """
    t0 = time.perf_counter()
    cfg = cfg or load_config(thresholds)
    min_score = float(cfg.get("report", "min_score") if min_score is None else min_score)
    out = Path(out_dir)
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    records, problems = load_records(workdirs)
    scores = score_records(records, cfg)
    products = discover_products(records)
    figures: list[plots.Figure] = []
    for ps in products:
        try:
            scores.extend(product_checks(ps, cfg))
        except Exception as exc:  # noqa: BLE001 - one broken product must not stop the report
            log.warning("product checks of %s failed: %s", ps.name, exc)
            scores.append(Score("derived", "products", 0.0, f"product checks failed: {exc}", ps.name))
        if make_plots:
            try:
                figures.extend(product_figures(ps, img_dir, cfg))
            except Exception as exc:  # noqa: BLE001
                log.warning("figures of %s failed: %s", ps.name, exc)
                problems.append(f"figures of {ps.name}: {exc}")
    if make_plots:
        try:
            figures.extend(imaging_figures(records, img_dir))
        except Exception as exc:  # noqa: BLE001
            log.warning("imaging figures failed: %s", exc)
            problems.append(f"imaging figures: {exc}")
    scores = sort_scores(scores)
    valued = [s for s in scores if s.value is not None]
    worst = min((s.value for s in valued), default=None)
    failing = [f"{s.stage}/{s.name} {s.subject}: {s.value:.2f} < {min_score:.2f}: {s.reason}"
               for s in valued if s.value < min_score]
    status = "fail" if failing else "pass"
    run_id = run_id or _most_common(r.get("run_id") for r in records)
    dag_id = dag_id or _most_common(r.get("dag_id") for r in records)
    doc: dict[str, Any] = {
        "schema": SCHEMA, "target": target, "run_id": run_id, "dag_id": dag_id, "keyset_hash": keyset_hash,
        "generated_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"), "status": status,
        "worst_score": worst, "min_score": min_score, "failing": failing,
        "thresholds": {k: v for k, v in cfg.to_dict().items() if k != "thresholds"},
        "software": software_versions(records), "n_records": len(records),
        "records_per_stage": dict(Counter(str(r.get("stage")) for r in records)),
        "tasks_per_stage": _tasks_per_stage(records),
        "data_used": data_used(records), "products": [p.to_dict() for p in products],
        "problems": problems, "scores": [s.to_dict() for s in scores],
        "figures": [{**f.to_dict(), "path": os.path.relpath(f.path, out)} for f in figures],
        "html": REPORT_HTML, "report_dir": str(out.resolve()),
        "records": [{"task_id": r.get("task_id"), "map_index": r.get("map_index"), "stage": r.get("stage"),
                     "try_number": r.get("try_number"), "elapsed_s": r.get("elapsed_s"),
                     "file": r.get("_file")} for r in records],
    }
    html_path, json_path = out / REPORT_HTML, out / REPORT_JSON
    _atomic_write(json_path, json.dumps(doc, indent=1, default=str))
    _atomic_write(html_path, render_html(doc, scores, figures, out))
    res = ReportResult(target=target, html=str(html_path), json=str(json_path), worst_score=worst,
                       status=status, failing=failing, n_scores=len(scores), n_figures=len(figures),
                       seconds=time.perf_counter() - t0)
    log.info("QA report of %s: %s (worst %s, %d scores, %d figures) in %.1f s", target, html_path, worst,
             len(scores), len(figures), res.seconds)
    return res


def _tasks_per_stage(records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per stage: each task id with its instance count, summed task time and highest try."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (str(r.get("stage")), str(r.get("task_id")))
        t = acc.setdefault(key, {"task_id": key[1], "instances": 0, "elapsed_s": 0.0, "max_try": 0})
        t["instances"] += 1
        t["elapsed_s"] += float(r.get("elapsed_s") or 0.0)
        t["max_try"] = max(t["max_try"], int(r.get("try_number") or 0))
    out: dict[str, list[dict[str, Any]]] = {}
    for (stage, _), t in sorted(acc.items()):
        out.setdefault(stage, []).append(t)
    return out


def _most_common(values: Iterable[Any]) -> str | None:
    c = Counter(v for v in values if v)
    return str(c.most_common(1)[0][0]) if c else None


# ---------------------------------------------------------------------------------------------
# overview of all targets
# ---------------------------------------------------------------------------------------------

def find_reports(root: str | os.PathLike[str]) -> list[Path]:
    """Every ``report.json`` of the QA report schema below ``root``."""
    return sorted(p for p in Path(root).rglob(REPORT_JSON) if p.is_file())


def build_overview(reports: Iterable[str | os.PathLike[str]], out_html: str | os.PathLike[str],
                   title: str = "PHANGS QA overview",
                   link_for: Callable[[Path, dict[str, Any]], Path] | None = None) -> str:
    """An overview page of all targets (status, worst score, worst reason, link), worst first.

    ``reports`` are ``report.json`` paths; links are relative to the page's folder and point
    to the HTML next to each JSON, or to ``link_for(json_path, doc)``.
    """
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in reports:
        p = Path(p)
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            rows.append((-1.0, f'<tr class="bad"><td>{html.escape(str(p))}</td><td>unreadable</td>'
                               f'<td class="score">n/a</td><td>{html.escape(str(exc))}</td><td></td><td></td></tr>'))
            continue
        if doc.get("schema") != SCHEMA:
            continue
        worst = doc.get("worst_score")
        first = next((s for s in doc.get("scores", []) if s.get("value") is not None), None)
        level = first["level"] if first else "na"
        target_html = link_for(p, doc) if link_for else p.with_name(doc.get("html", REPORT_HTML))
        link = os.path.relpath(target_html, out.parent)
        rows.append((worst if worst is not None else 2.0,
                     f'<tr class="{level}"><td>{html.escape(doc.get("target", "?"))}</td>'
                     f'<td class="status-{html.escape(doc.get("status", "?"))}">{html.escape(doc.get("status", "?"))}</td>'  # noqa: E501
                     f'<td class="score">{"n/a" if worst is None else f"{worst:.2f}"}</td>'
                     f"<td>{html.escape(first['reason'] if first else '')}</td>"
                     f"<td>{html.escape(str(doc.get('run_id') or ''))}</td>"
                     f'<td><a href="{html.escape(link)}">report</a></td></tr>'))
    rows.sort(key=lambda r: r[0])
    body = "".join(r[1] for r in rows)
    page = ("<!DOCTYPE html>\n" '<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{len(rows)} target(s), worst first; generated "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC.</p>"
            '<table id="targets"><tr><th>target</th><th>status</th><th>worst score</th><th>worst check</th>'
            f"<th>run id</th><th>report</th></tr>{body}</table></body></html>")
    _atomic_write(out, page)
    return str(out)
