"""Acceptance of the QA report on synthetic targets: files, HTML, recorded score ranges, faults."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from phangs_operators.qa.report import SECTIONS, build_overview, build_report


class _Page(HTMLParser):
    """Collects ids, image sources/alt texts, links and checks tags are balanced."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.links, self.stack, self.errors = set(), [], [], [], []
        self.scripts = 0
        self.external = []
        self.captions = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "script":
            self.scripts += 1
        if tag == "figcaption":
            self.captions += 1
        for key in ("src", "href"):
            if str(a.get(key, "")).startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text())
    p.close()
    return p


#: recorded score ranges of the fault-free synthetic target (seed 1)
EXPECTED = {
    ("staging", "weight_ratio"): (0.95, 1.0),
    ("staging", "channel_grid"): (0.95, 1.0),
    ("imaging", "clean_convergence"): (1.0, 1.0),
    ("imaging", "peak_residual"): (0.95, 1.0),
    ("imaging", "beam_shape"): (0.9, 1.0),
    ("total_power", "baseline_rms"): (0.9, 1.0),
    ("postprocess", "feather_flux"): (0.9, 1.0),
    ("postprocess", "tp_flux_scale"): (0.9, 1.0),
    ("derived", "noise_gaussian"): (0.9, 1.0),
    ("derived", "noise_stripes"): (0.9, 1.0),
    ("derived", "negative_bowl"): (0.9, 1.0),
    ("derived", "strict_mask_flux"): (0.9, 1.0),
    ("derived", "strictmom0_finite"): (1.0, 1.0),
}


def test_report_files_and_html(good_report):
    html, js = Path(good_report.html), Path(good_report.json)
    assert html.is_file() and js.is_file()
    page = _parse(html)
    assert not page.errors, page.errors
    assert page.scripts == 0 and not page.external  # self-contained
    assert "overview-table" in page.ids and "overview" in page.ids
    for stage in SECTIONS:
        assert f"stage-{stage}" in page.ids
    assert len(page.imgs) == good_report.n_figures >= 7
    for img in page.imgs:
        assert (html.parent / img["src"]).is_file(), img["src"]
        assert not Path(img["src"]).is_absolute()
        assert len(img.get("alt", "")) > 30
    assert page.captions == len(page.imgs)
    for link in page.links:
        if not link.startswith("#"):
            assert (html.parent / link).exists(), link
    # figure kinds asked for by the issue
    names = " ".join(Path(i["src"]).name for i in page.imgs)
    for kind in ("_peak.png", "_mom0.png", "_noise_hist.png", "_spectra.png", "_clean.png", "chunk_timeline.png"):
        assert kind in names, kind


def test_report_json_and_recorded_scores(good_report):
    doc = json.loads(Path(good_report.json).read_text())
    assert doc["schema"] == "phangs-qa-report/1"
    assert doc["run_id"] == "manual__test" and doc["keyset_hash"] == "abc123"
    assert doc["software"]["numpy"] and doc["thresholds"]["version"] == 1
    assert doc["status"] == "pass" and good_report.status == "pass"
    values = [s["value"] for s in doc["scores"] if s["value"] is not None]
    assert values == sorted(values)  # worst first
    got = {}
    for s in doc["scores"]:
        if s["value"] is not None:
            got[(s["stage"], s["name"])] = min(s["value"], got.get((s["stage"], s["name"]), 1.0))
    for key, (lo, hi) in EXPECTED.items():
        assert key in got, f"missing score {key}"
        assert lo <= got[key] <= hi, f"{key}: {got[key]} not in [{lo}, {hi}]"
    assert doc["worst_score"] == min(values) >= 0.66
    clean = next(t for t in doc["tasks_per_stage"]["imaging"] if t["task_id"].endswith("clean_chunk"))
    assert clean["instances"] == 4 and clean["elapsed_s"] == pytest.approx(20 + 21 + 22 + 23)
    used = doc["data_used"][0]
    assert used["inputs"] == {"12m": ["synth_12m_1.ms"], "7m": ["synth_7m_1.ms"]}


@pytest.mark.parametrize("fault, stage, name, words", [
    ("bowl", "derived", "negative_bowl", "negative bowl of"),
    ("loop_cap", "imaging", "clean_convergence", "loop cap"),
    ("tp_error", "postprocess", "tp_flux_scale", "TP flux scale off"),
    ("stripe", "derived", "noise_stripes", "noise stripe: row"),
])
def test_faults_fail_with_the_right_reason(fault_reports, fault, stage, name, words):
    res, doc = fault_reports[fault]
    assert res.status == "fail"
    hit = [s for s in doc["scores"] if s["stage"] == stage and s["name"] == name]
    assert hit and min(s["value"] for s in hit) < 0.33, hit
    worst = min(hit, key=lambda s: s["value"])
    assert words in worst["reason"]
    assert any(f"{stage}/{name}" in f and words in f for f in res.failing)
    if fault == "tp_error":
        assert "+1" in worst["reason"] or "+2" in worst["reason"]  # TP too bright by ~20 %
        assert 0.78 < worst["details"]["ratio"] < 0.88


def test_faults_do_not_leak_into_other_checks(fault_reports):
    """Each fault fails its own check; the stripe does not fail the bowl check and vice versa."""
    bowl = {s["name"] for s in fault_reports["bowl"][1]["scores"] if s["value"] is not None and s["value"] < 0.33}
    stripe = {s["name"] for s in fault_reports["stripe"][1]["scores"]
              if s["value"] is not None and s["value"] < 0.33}
    loop = {s["name"] for s in fault_reports["loop_cap"][1]["scores"] if s["value"] is not None and s["value"] < 0.33}
    tp = {s["name"] for s in fault_reports["tp_error"][1]["scores"] if s["value"] is not None and s["value"] < 0.33}
    assert "noise_stripes" not in bowl and "negative_bowl" not in stripe
    assert loop == {"clean_convergence"} and tp == {"tp_flux_scale"}


def test_min_score_threshold(fault_reports, tmp_path):
    res0, doc = fault_reports["tp_error"]
    worst = res0.worst_score
    workdirs = sorted({str(Path(r["file"]).parent.parent) for r in doc["records"]})
    res = build_report("t", workdirs, tmp_path / "r", make_plots=False, min_score=worst + 0.01)
    assert res.status == "fail" and len(res.failing) == 1
    res = build_report("t", workdirs, tmp_path / "r", make_plots=False, min_score=worst - 0.01)
    assert res.status == "pass" and not res.failing


def test_broken_record_is_reported_not_fatal(good_target, tmp_path):
    import shutil

    wd = tmp_path / "wd"
    shutil.copytree(good_target.workdirs[0], wd)
    (wd / "qa" / "broken.json").write_text("{not json")
    res = build_report("synth", [wd], tmp_path / "r", make_plots=False)
    doc = json.loads(Path(res.json).read_text())
    assert any("broken.json" in p for p in doc["problems"])
    assert "broken.json" in Path(res.html).read_text()


def test_overview_page(good_report, fault_reports, tmp_path):
    reports = [good_report.json] + [res.json for res, _ in fault_reports.values()]
    page = Path(build_overview(reports, tmp_path / "overview.html"))
    p = _parse(page)
    assert not p.errors and "targets" in p.ids and p.scripts == 0
    assert len(p.links) == 5
    for link in p.links:
        assert (page.parent / link).is_file()
    text = page.read_text()
    # worst first: a failing target before the passing one
    assert text.index("synth_bowl") < text.index(">synth<")
