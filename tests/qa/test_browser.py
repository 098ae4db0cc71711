"""Browser test: headless Debian Chromium opens the QA report and the overview page from disk.

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``scripts/install_browser.sh``) and
the ``selenium`` package. Missing pieces FAIL the test with the fix, they never skip it.
The screenshots are kept under the pytest tmp dir and copied to ``benchmarks/results/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phangs_operators.qa.report import SECTIONS, build_overview

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"headless browser test needs {missing}: run `sudo scripts/install_browser.sh` "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("headless browser test needs selenium: `uv pip install --python .venv/bin/python "
                    "selenium -c constraints.txt`", pytrace=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium_profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1280,1600",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _severe(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _keep(drv, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    assert drv.save_screenshot(str(shot)), "screenshot failed"
    assert shot.stat().st_size > 10_000
    try:
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, RESULTS / name)
    except OSError:  # the artifact under tmp_path is the one that matters
        pass
    return shot


def test_report_in_headless_chromium(driver, good_report, tmp_path):
    from selenium.webdriver.common.by import By

    driver.get(Path(good_report.html).resolve().as_uri())
    assert driver.title == "QA report: synth"
    table = driver.find_element(By.ID, "overview-table")
    rows = table.find_elements(By.TAG_NAME, "tr")
    assert len(rows) > 10 and rows[0].find_elements(By.TAG_NAME, "th")[0].text == "score"
    for stage in SECTIONS:
        section = driver.find_element(By.ID, f"stage-{stage}")
        assert section.find_element(By.TAG_NAME, "h2").text
    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) == good_report.n_figures
    # every image decoded (a missing file has naturalWidth 0)
    widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert all(w > 100 for w in widths), widths
    assert _severe(driver) == []
    _keep(driver, tmp_path, "qa_report_synth.png")


def test_overview_in_headless_chromium(driver, good_report, fault_reports, tmp_path):
    from selenium.webdriver.common.by import By

    page = build_overview([good_report.json] + [r.json for r, _ in fault_reports.values()],
                          tmp_path / "qa_overview.html")
    driver.get(Path(page).resolve().as_uri())
    rows = driver.find_element(By.ID, "targets").find_elements(By.TAG_NAME, "tr")
    assert len(rows) == 1 + 1 + len(fault_reports)
    first = rows[1].find_elements(By.TAG_NAME, "td")
    assert first[1].text == "fail"  # worst first
    link = rows[-1].find_element(By.TAG_NAME, "a")
    link.click()
    assert driver.find_element(By.ID, "overview-table")
    assert _severe(driver) == []
    driver.back()
    _keep(driver, tmp_path, "qa_overview.png")
