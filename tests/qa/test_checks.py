"""Unit tests of the QA scoring functions and thresholds (no files unless stated)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phangs_operators.qa import checks
from phangs_operators.qa.config import QAConfigError, load_config


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_ramp_both_directions():
    assert checks.ramp(0.05, 0.1, 0.4) == 1.0
    assert checks.ramp(0.4, 0.1, 0.4) == pytest.approx(0.33)
    assert checks.ramp(0.25, 0.1, 0.4) == pytest.approx(1 - 0.67 * 0.5)
    assert checks.ramp(0.7, 0.1, 0.4) == 0.0
    assert checks.ramp(0.99, 0.99, 0.9) == 1.0  # larger is better
    assert checks.ramp(0.9, 0.99, 0.9) == pytest.approx(0.33)
    assert checks.ramp(float("nan"), 0.1, 0.4) == 0.0


def test_defaults_versioned_and_project_override(tmp_path):
    base = load_config()
    assert base.version == 1 and base.get("imaging", "beam_axis_ratio") == {"good": 1.5, "bad": 2.5}
    f = tmp_path / "project.yaml"
    f.write_text("version: 1\nimaging:\n  beam_axis_ratio: {good: 1.2, bad: 1.8}\nreport: {min_score: 0.5}\n")
    merged = load_config(f)
    assert merged.get("imaging", "beam_axis_ratio") == {"good": 1.2, "bad": 1.8}
    assert merged.get("imaging", "mask_fraction") == base.get("imaging", "mask_fraction")
    assert merged.get("report", "min_score") == 0.5 and merged.sources[-1] == str(f)
    assert merged.digest() != base.digest()
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"derived": {"negative_bowl_snr": 4.0}}))
    assert load_config(j).get("derived", "negative_bowl_snr") == 4.0


@pytest.mark.parametrize("text, match", [
    ("imaging:\n  beam_axis_ratoi: {good: 1, bad: 2}\n", "unknown key imaging.beam_axis_ratoi"),
    ("version: 2\n", "version 2"),
    ("- a\n- b\n", "mapping"),
    ("imaging: [\n", "project.yaml"),
])
def test_bad_threshold_files_are_errors(tmp_path, text, match):
    f = tmp_path / "project.yaml"
    f.write_text(text)
    with pytest.raises(QAConfigError, match=match):
        load_config(f)


def test_env_var_override(tmp_path, monkeypatch):
    f = tmp_path / "env.yaml"
    f.write_text("report: {min_score: 0.9}\n")
    monkeypatch.setenv("PHANGS_QA_THRESHOLDS", str(f))
    assert load_config().get("report", "min_score") == 0.9


def _imaging(task="g.clean_chunk", mi=0, reason="converged", nloops=3, **extra):
    loops = [{"loop": i, "model_flux": 1.0 + i, "frac_delta_flux": 0.5 / (i + 1), "reason": ""} for i in range(nloops)]
    loops[-1]["reason"] = reason
    loops[-1]["residual_rms_jy"] = extra.pop("rms", 0.01)
    r = {"stages": {"singlescale": loops}, "noise_jy": 0.01, "beam_major_arcsec": 1.2, "beam_minor_arcsec": 1.0,
         "nchan": 10, "start": 10 * mi, "imsize": [100, 100], "singlescale_mask_pixels": 5000, **extra}
    return {"task_id": task, "stage": "imaging", "map_index": mi, "try_number": 1, "elapsed_s": 10.0, "result": r}


def test_clean_loop_cap_fails_with_reason(cfg):
    group = [_imaging(mi=0), _imaging(mi=1, reason="max_loops", nloops=20)]
    s = checks.check_clean_convergence(group, cfg)
    assert s.value is not None and s.value < 0.33
    assert "loop cap (20 loops)" in s.reason and "ch 10-19" in s.reason
    ok = checks.check_clean_convergence([_imaging(mi=0), _imaging(mi=1)], cfg)
    assert ok.value == 1.0 and "converged" in ok.reason


def test_tclean_stopcode_niter_is_a_cap(cfg):
    rec = _imaging()
    rec["result"]["stages"] = {"clean": [{"loop": 0, "stopcode": 1, "niter": 1000}]}
    s = checks.check_clean_convergence([rec], cfg)
    assert s.value < 0.33 and "niter limit (1000)" in s.reason


def test_imaging_numbers(cfg):
    g = [_imaging(mi=0, peak_residual_jy=0.03), _imaging(mi=1, peak_residual_jy=0.12, rms=0.02)]
    assert checks.check_peak_residual(g, cfg).value < 0.33  # 12 sigma
    s = checks.check_residual_vs_dirty(g, cfg)
    assert s.value < 0.33 and "2.00 x dirty noise" in s.reason
    g[1]["result"]["beam_minor_arcsec"] = 0.4
    assert checks.check_beam_shape(g, cfg).value < 0.33
    g[0]["elapsed_s"], g[1]["elapsed_s"] = 10.0, 100.0
    g.append(_imaging(mi=2))
    assert checks.check_chunk_durations(g, cfg).value < 0.33
    assert checks.check_mask_fraction(g, cfg).value == 1.0  # 5000 / 1e5 = 5 %


def test_missing_fields_are_not_available(cfg):
    rec = {"task_id": "g.stage_visibilities", "stage": "staging", "result": {"product": "line"}}
    for check in checks.STAGING_CHECKS:
        s = check(rec, cfg)
        assert s.value is None and s.level == "na" and s.reason.startswith("not available")
    tp = {"task_id": "tp.baseline", "stage": "total_power", "result": {}}
    assert checks.check_baseline_rms(tp, cfg).value is None


def test_staging_numbers(cfg):
    rec = {"task_id": "g.stage_visibilities", "stage": "staging", "result": {
        "product": "line", "chan_width_kms": 2.5, "requested_chan_kms": 2.5, "nchan": 10, "vel_first_kms": 0.0,
        "vel_last_kms": 22.5, "flagged_fraction": 0.6, "continuum_residual_snr": 5.0,
        "inputs": [{"array": "12m", "median_weight": 40.0, "final_kms": 2.5},
                   {"array": "7m", "median_weight": 1.0, "final_kms": 2.6}]}}
    scores = {s.name: s for s in (c(rec, cfg) for c in checks.STAGING_CHECKS)}
    assert scores["flagged_fraction"].value < 0.33 and "60.0%" in scores["flagged_fraction"].reason
    assert scores["continuum_residual"].value < 0.33
    assert scores["weight_ratio"].value < 0.66 and "40" in scores["weight_ratio"].reason
    assert scores["channel_grid"].value < 0.66  # one input is on a 2.6 km/s grid (3.8 % off)


def test_baseline_rms_worst_antenna(cfg):
    rec = {"task_id": "tp.baseline", "stage": "total_power", "result": {
        "baseline_rms": {"PM01": 0.05, "PM02": 0.2}, "radiometer_rms": 0.05}}
    s = checks.check_baseline_rms(rec, cfg)
    assert s.value < 0.33 and "PM02" in s.reason and "4.00 x" in s.reason


def test_feather_flux(cfg):
    good = {"task_id": "f.feather", "stage": "postprocess", "result": {"numbers": {
        "interf_flux_jykms": 60.0, "sd_flux_jykms": 100.0, "feathered_flux_jykms": 99.0}}}
    assert checks.check_feather_flux(good, cfg).value == 1.0
    bad = {"task_id": "f.feather", "stage": "postprocess", "result": {"numbers": {
        "interf_flux_jykms": 130.0, "sd_flux_jykms": 100.0, "feathered_flux_jykms": 100.0}}}
    s = checks.check_feather_flux(bad, cfg)
    assert s.value < 0.33 and "exceeds TP by 30.0%" in s.reason


def test_latest_try_wins():
    a = {"task_id": "t", "map_index": 0, "try_number": 1, "result": {"x": 1}}
    b = {"task_id": "t", "map_index": 0, "try_number": 2, "result": {"x": 2}}
    c = {"task_id": "t", "map_index": 1, "try_number": 1, "result": {"x": 3}}
    groups = checks.group_records([b, a, c])
    assert [r["result"]["x"] for r in groups["t"]] == [2, 3]


# --- product checks on arrays ---------------------------------------------------------------

def _noise_cube(shape=(20, 64, 64), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), np.ones(shape, dtype=np.float32)


def test_gaussian_noise_scores_well(cfg):
    cube, noise = _noise_cube()
    assert checks.check_noise_gaussian(cube, noise, None, cfg).value == 1.0
    assert checks.check_noise_stripes(noise * (1 + 0.01 * np.random.default_rng(1).standard_normal(noise.shape)),
                                      cfg).value == 1.0
    assert checks.check_negative_bowl(cube, noise, 10.0, cfg).value == 1.0


def test_wrong_noise_level_is_caught(cfg):
    cube, noise = _noise_cube()
    s = checks.check_noise_gaussian(cube, noise * 0.6, None, cfg)
    assert s.value < 0.33 and "std 1.6" in s.reason


def test_channel_stripe_found(cfg):
    _, noise = _noise_cube()
    noise[7] *= 1.5
    s = checks.check_noise_stripes(noise, cfg)
    assert s.value < 0.33 and "channel 7" in s.reason


def test_channel_band_found_and_smooth_rise_is_not_a_stripe(cfg):
    _, noise = _noise_cube()
    noise[8:11] *= 1.5  # a band of three channels: found at its edges
    s = checks.check_noise_stripes(noise, cfg)
    assert s.value < 0.33 and "channel" in s.reason
    # the noise of bright line channels in a dynamic-range-limited cube (demo ngc9997): a smooth
    # rise to 2.5x over ten channels and back, no channel out of line with its neighbours
    _, noise = _noise_cube()
    bump = 1.0 + 1.5 * np.exp(-0.5 * ((np.arange(noise.shape[0]) - 10) / 3.0) ** 2)
    s = checks.check_noise_stripes(noise * bump[:, None, None].astype(np.float32), cfg)
    assert s.value == 1.0, s.reason


def test_moment_finite(cfg):
    mask = np.zeros((5, 10, 10), dtype=bool)
    mask[2, 2:6, 2:6] = True
    mom = np.full((10, 10), np.nan)
    mom[2:6, 2:6] = 1.0
    assert checks.check_moment_finite(mom, mask, cfg).value == 1.0
    mom[2:4, 2:6] = np.nan
    s = checks.check_moment_finite(mom, mask, cfg)
    assert s.value < 0.33 and "50.0%" in s.reason


def test_score_json_round_trip():
    s = checks.Score("derived", "x", 0.5, "why", "subj", {"a": np.float32(1.5), "b": float("inf")})
    d = json.loads(json.dumps(s.to_dict()))
    assert d["level"] == "warning" and d["details"] == {"a": 1.5, "b": None}


def test_tp_flux_scale_on_a_coarser_tp_grid(good_target, cfg):
    """A TP cube on its own (2x coarser) grid is reprojected; the scale stays ~1, and 20 % is caught."""
    icube, ih = checks.read_fits_cube(good_target.interf_cube)
    sd, sh = checks.read_fits_cube(good_target.singledish)
    ny, nx = sd.shape[1] // 2, sd.shape[2] // 2
    coarse = sd[:, :2 * ny, :2 * nx].reshape(sd.shape[0], ny, 2, nx, 2).mean(axis=(2, 4))
    h = sh.copy()
    h["NAXIS1"], h["NAXIS2"] = nx, ny
    h["CDELT1"], h["CDELT2"] = sh["CDELT1"] * 2, sh["CDELT2"] * 2
    h["CRPIX1"], h["CRPIX2"] = (sh["CRPIX1"] - 0.5) / 2 + 0.5, (sh["CRPIX2"] - 0.5) / 2 + 0.5
    ok = checks.check_sd_flux_scale((icube, ih), (coarse, h), cfg)
    assert ok.value is not None and ok.value >= 0.66, ok.reason
    assert 0.93 < ok.details["ratio"] < 1.07
    bad = checks.check_sd_flux_scale((icube, ih), (coarse * 1.2, h), cfg)
    assert bad.value < 0.33 and "TP flux scale off" in bad.reason
