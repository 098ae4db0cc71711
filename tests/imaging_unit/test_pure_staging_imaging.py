"""Pure staging/imaging helpers against the exact PHANGS values (PHANGS_REFERENCE §11.C)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phangs_operators.errors import ImagingError, StagingError
from phangs_operators.routines import imaging as im
from phangs_operators.routines import recipes as rc
from phangs_operators.routines import vis

# --- chunk plans --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nchan", "size", "starts", "ends"),
    [
        (25, 10, [0, 10, 20], [9, 19, 24]),
        (7, 3, [0, 3, 6], [2, 5, 6]),
        (10, 10, [0], [9]),  # the original failed here (returned None)
        (1, 10, [0], [0]),
        (10, 1, list(range(10)), list(range(10))),
    ],
)
def test_plan_chunks_ranges(nchan, size, starts, ends):
    plan = im.plan_chunks(nchan, size)
    assert [c["start"] for c in plan] == starts
    assert [c["end"] for c in plan] == ends
    assert [c["nchan"] for c in plan] == [e - s + 1 for s, e in zip(starts, ends, strict=True)]
    assert [c["index"] for c in plan] == list(range(len(starts)))


def test_plan_chunks_93_by_10():
    plan = im.plan_chunks(93, 10)
    assert len(plan) == 10
    assert (plan[-1]["start"], plan[-1]["end"]) == (90, 92)
    assert sum(c["nchan"] for c in plan) == 93


@pytest.mark.parametrize(("nchan", "size"), [(0, 10), (10, 0), (-3, 2), (10, 2.5)])
def test_plan_chunks_rejects_bad_input(nchan, size):
    with pytest.raises(ImagingError):
        im.plan_chunks(nchan, size)


def test_chunk_root_name():
    assert im.chunk_root("/x/ngc0628_12m+7m_co21", 10, 10) == "/x/ngc0628_12m+7m_co21_chan10_19"


# --- clean schedule -----------------------------------------------------------------------


def test_schedule_niter_and_cycleniter_for_100_channels():
    s = rc.CleanSchedule()
    assert [s.niter(100, k) for k in range(8)] == [1000, 2000, 4000, 8000, 16000, 32000, 64000, 100000]
    assert s.niter(100, 15) == 100000
    assert [s.cycleniter(k) for k in range(12)] == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1000, 1000]


def test_convergence_not_before_three_loops():
    s = rc.CleanSchedule()
    # flux constant from the start: would converge at once, but three loops are required
    recs = rc.simulate_loop(s, 100, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert len(recs) == 3
    assert recs[-1]["reason"] == "converged"
    assert math.isinf(recs[0]["frac_delta"])


def test_convergence_on_flux_sequence():
    s = rc.CleanSchedule()
    fluxes = [10.0, 15.0, 17.0, 17.5, 17.6, 17.65, 17.66]
    recs = rc.simulate_loop(s, 100, fluxes)
    # |17.6 - 17.5| / 17.5 = 0.0057 < 0.01 -> stop after loop index 4
    assert [r["loop"] for r in recs] == [0, 1, 2, 3, 4]
    assert recs[3]["frac_delta"] == pytest.approx(0.5 / 17.0)
    assert recs[-1]["frac_delta"] == pytest.approx(0.1 / 17.5)
    assert recs[-1]["stop"] and recs[-1]["reason"] == "converged"
    assert [r["niter"] for r in recs] == [1000, 2000, 4000, 8000, 16000]


def test_at_most_twenty_loops_and_negative_stop():
    s = rc.CleanSchedule()
    diverging = [float(2**k) for k in range(30)]
    recs = rc.simulate_loop(s, 10, diverging)
    assert len(recs) == 20 and recs[-1]["reason"] == "max_loops"
    neg = rc.simulate_loop(s, 10, [1.0, 2.0, 3.0, -1.0, -1.0])
    assert neg[-1]["reason"] == "negative_flux" and len(neg) == 4
    # single-scale stage does not stop on negative flux
    neg2 = rc.simulate_loop(s, 10, [1.0, 2.0, 3.0, -1.0, -1.001], stop_at_negative=False)
    assert neg2[-1]["reason"] == "converged" and len(neg2) == 5


def test_empty_model_converges_instead_of_nan():
    recs = rc.simulate_loop(rc.CleanSchedule(), 10, [0.0] * 25)
    assert len(recs) == 3 and recs[-1]["reason"] == "converged"
    assert recs[-1]["frac_delta"] == 0.0


def test_sanitize_drops_chanchunks_and_unknown_and_raises_pbmask():
    def fake_tclean(vis, imagename, pblimit, pbmask, niter):  # noqa: ARG001
        return None

    kw, dropped = rc.sanitize_tclean_kwargs(
        {"vis": "a", "imagename": "b", "chanchunks": 1, "pblimit": 0.5, "pbmask": 0.0, "niter": 1, "bogus": 3},
        fake_tclean,
    )
    assert "chanchunks" not in kw and "bogus" not in kw
    assert dropped == ["chanchunks", "bogus"]
    assert kw["pbmask"] == 0.5


# --- scales, cell, imsize ------------------------------------------------------------------


def test_multiscale_pixels():
    assert im.multiscale_pixels([0, 1, 2.5, 5.0, 10.0], 0.25) == [0, 4, 10, 20, 40]
    assert im.multiscale_pixels([0, 0.3], 0.1) == [0, 3]  # 0.3/0.1 = 2.999... must not truncate to 2


@pytest.mark.parametrize(
    ("raw", "rounded"),
    [
        (0.0042, 0.0042), (0.0123, 0.01), (0.047, 0.045), (0.067, 0.06), (0.27, 0.25), (0.3, 0.3),
        (0.499, 0.45), (0.55, 0.5), (0.87, 0.8), (1.6, 1.5), (1.99, 1.75), (2.2, 2.0), (4.9, 4.5),
        (5.0, 2.5), (7.3, 3.5),
    ],
)
def test_round_cell(raw, rounded):
    assert im.round_cell_arcsec(raw) == pytest.approx(rounded, abs=1e-12)


def test_fft_sizes():
    sizes = im.fft_friendly_sizes()
    assert sizes[0] == 2 and sizes[-1] == 1024 * 25 * 9
    assert len(sizes) == len(set(sizes.tolist()))
    for n in sizes:  # every size is 2^(i+1) 3^k 5^j with the PHANGS exponent limits
        m = int(n)
        i = 0
        while m % 2 == 0:
            m //= 2
            i += 1
        k = 0
        while m % 3 == 0:
            m //= 3
            k += 1
        j = 0
        while m % 5 == 0:
            m //= 5
            j += 1
        assert m == 1 and 1 <= i <= 10 and k < 3 and j < 3
    assert im.fft_size_above(100) == 120  # 108 = 2^2 3^3 is not allowed (k < 3)
    assert im.fft_size_above(120) == 128  # strictly greater; 125 = 5^3 is not allowed
    assert im.fft_size_above(1000) == 1024
    with pytest.raises(ImagingError):
        im.fft_size_above(1e7)


def test_cell_and_imsize_with_mocked_pickcellsize():
    # au.pickCellSize mocked: 0.27" cell, 640x600 pixels -> extent 207.36" x 194.4"
    cell, size = im.cell_and_imsize(0.27, [640, 600])
    assert cell == pytest.approx(0.25)
    assert size == [im.fft_size_above(0.27 * 640 * 1.2 / 0.25), im.fft_size_above(0.27 * 600 * 1.2 / 0.25)]
    assert size == [900, 800]  # 829.4 -> 900 (864 = 2^5 3^3 not allowed); 777.6 -> 800
    cell, size = im.cell_and_imsize(0.27, [640, 600], force_square=True)
    assert size == [900, 900]


def test_pb_radius():
    # 12 m at 230.538 GHz: FWHM = 1.13 lambda/D = 25.28"; radius at 0.5 = FWHM/2
    r = im.pb_radius_arcsec(230.538e9, 12.0, 0.5)
    assert r == pytest.approx(1.13 * 299792458.0 / 230.538e9 / 12.0 * 206264.806 / 2, rel=1e-6)


# --- noise and masks ----------------------------------------------------------------------


def test_chauvenet_mad_noise_is_robust():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 100_000)
    clean = im.chauvenet_mad_noise(x)
    assert clean == pytest.approx(1.0, abs=0.01)
    y = x.copy()
    y[: 2000] += 10.0  # 2 % bright outliers
    assert im.chauvenet_mad_noise(y) == pytest.approx(clean, rel=0.02)
    assert np.std(y) > 1.3  # plain std is not robust
    z = y.copy()
    z[:10] = np.nan
    assert np.isfinite(im.chauvenet_mad_noise(z))
    with pytest.raises(ImagingError):
        im.chauvenet_mad_noise(np.ones(10))
    with pytest.raises(ImagingError):
        im.chauvenet_mad_noise(np.array([np.nan, 1.0]))


def test_signal_mask_grows_inside_low_mask_and_no_wrap():
    cube = np.zeros((7, 7, 1, 6))
    cube[3, 3, 0, 2] = 5.0  # high
    cube[3, 4, 0, 2] = 3.0  # low, connected
    cube[3, 5, 0, 2] = 3.0  # low, connected through the previous
    cube[0, 0, 0, 2] = 3.0  # low, isolated -> not in the mask
    cube[3, 3, 0, 5] = 5.0  # high in the last channel
    m = im.signal_mask_array(cube, 1.0, 4.0, 2.0, spec_axis=None)
    assert m[3, 3, 0, 2] and m[3, 4, 0, 2] and m[3, 5, 0, 2]
    assert not m[0, 0, 0, 2]
    assert m.sum() == 4
    # with channel neighbours: the low mask includes +-1 channel of each low pixel, and the
    # dilation then reaches them; the last channel must not wrap into channel 0
    m2 = im.signal_mask_array(cube, 1.0, 4.0, 2.0, spec_axis=3)
    assert m2[3, 3, 0, 1] and m2[3, 3, 0, 3] and m2[3, 3, 0, 4]
    assert not m2[3, 3, 0, 0]
    assert not im.signal_mask_array(np.zeros((3, 3, 1, 3)), 1.0, spec_axis=3).any()


# --- staging arithmetic -------------------------------------------------------------------


def test_extraction_scheme_phangs_example():
    w = vis.chan_width_kms(488.281e3, 230.538)
    assert w == pytest.approx(0.634962, abs=2e-6)
    (s,) = vis.suggest_extraction_scheme([w], 2.6)
    assert s.binfactor == 4
    assert s.regrid_kms == pytest.approx(0.635153, abs=2e-6)
    assert s.final_kms == pytest.approx(2.54061, abs=2e-5)
    (e,) = vis.suggest_extraction_scheme([w], 2.6, exact=True)
    assert e.final_kms == 2.6 and e.regrid_kms == pytest.approx(0.65)


def test_extraction_scheme_common_width_for_mixed_windows():
    schemes = vis.suggest_extraction_scheme([0.634962, 1.27], 2.6)
    assert [s.binfactor for s in schemes] == [4, 2]
    finals = {round(s.final_kms, 9) for s in schemes}
    assert len(finals) == 1
    assert schemes[1].final_kms == pytest.approx(2.54 * (1 + 3e-4))
    with pytest.raises(StagingError):
        vis.suggest_extraction_scheme([3.0], 2.6)
    with pytest.raises(StagingError):
        vis.suggest_extraction_scheme([1.0], 2.6, method="bogus")
    with pytest.raises(StagingError):
        vis.suggest_extraction_scheme([], 2.6)


def test_regrid_nchan_and_velocity_grid():
    assert vis.regrid_nchan(254.0, 0.635153, 4) % 4 == 0
    assert vis.regrid_nchan(9.0, 1.0, 4) == 12  # PHANGS: 9 + 9 % 4 = 10, not a multiple
    s = vis.ExtractionScheme(native_kms=10.0, binfactor=2, regrid_kms=5.0, final_kms=10.0)
    v = vis.velocity_grid(500.0, 100.0, s)
    # regrid centres 450, 455, ..., 545 (20 ch) -> averaged pairs 452.5 ... 542.5, descending
    assert v.size == 10
    assert v[0] == pytest.approx(542.5) and v[-1] == pytest.approx(452.5)
    assert np.allclose(np.diff(v), -10.0)


def test_line_range_and_channel_selection():
    lo, hi = vis.get_ghz_range_for_line(restfreq_ghz=230.538, vsys_kms=657, vwidth_kms=254)
    assert (lo, hi) == (pytest.approx(229.935110, abs=1e-6), pytest.approx(230.130434, abs=1e-6))
    freqs = 230.0e9 + 1e6 * np.arange(10)
    widths = np.full(10, 1e6)
    m = vis.line_channel_mask(freqs, widths, [(230.0031, 230.0052)])
    # channel 3 spans 230.0025-230.0035 (overlaps), 5 spans 230.0045-230.0055 (overlaps), 6 does not
    assert np.flatnonzero(m).tolist() == [3, 4, 5]
    assert vis.channel_selection_string(0, ~m) == "0:0~2;6~9"
    assert vis.channel_selection_string(2, np.zeros(4, bool)) == ""
    assert vis.channel_runs(np.array([1, 1, 0, 1], bool)) == [(0, 1), (3, 3)]


def test_statwt_exclusion():
    # 50 km/s edges at 2.54 km/s -> 20 channels per side kept
    assert vis.statwt_exclusion_range(120, 2.54, 50.0) == (20, 99)
    assert vis.statwt_exclusion_range(30, 2.54, 50.0) is None
    assert vis.statwt_exclusion_range(41, 2.5, 50.0) == (20, 20)


def test_angle_formatting():
    assert vis.format_angle_hms(math.radians(180.0)) == "12h00m00.000000s"
    assert vis.format_angle_dms(math.radians(-30.0)) == "-30d00m00.00000s"
    assert vis.format_angle_dms(math.radians(10.5)) == "+10d30m00.00000s"


def test_recipe_defaults_and_geometry_overrides():
    kw = rc.with_defaults({"robust": 2.0, "chanchunks": 1})
    assert kw["robust"] == 2.0 and kw["gridder"] == "mosaic" and kw["specmode"] == "cube"
    assert kw["restoringbeam"] == "common" and kw["deconvolver"] == "multiscale"
    cont = rc.with_defaults({"specmode": "mfs"})
    assert cont["deconvolver"] == "mtmfs" and cont["nterms"] == 2
    clean, dropped = rc.sanitize_tclean_kwargs(kw)
    assert "chanchunks" not in clean and dropped == ["chanchunks"]
    g = {"cell": "0.5arcsec", "cell_arcsec": 0.5, "imsize": [180, 180], "phasecenter": "J2000 1h 2d"}
    g2 = im.with_overrides(g, cell_arcsec=0.25, imsize=[301, 200], phasecenter="J2000 3h 4d")
    assert g2["cell"] == "0.25arcsec" and g2["imsize"] == [302, 200] and g2["phasecenter"] == "J2000 3h 4d"
    assert g["imsize"] == [180, 180]  # the input is not modified
    assert rc.CONTINUUM_SCHEDULE.mask_high_snr == 2.5 and rc.CONTINUUM_SCHEDULE.mask_low_snr == 1.0


def test_results_are_json_serialisable():
    import json

    r = im.ImagingResult(root="/x/a", stages={"multiscale": [{"frac_delta_flux": "inf", "niter": np.int64(3)}]},
                         noise_jy=np.float64(0.01))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["stages"]["multiscale"][0]["niter"] == 3 and d["noise_jy"] == 0.01
    s = vis.StagingResult(out_ms="/x/a.ms", product="line", inputs=[{"spw": np.int32(0)}], nchan=18)
    d2 = json.loads(json.dumps(s.to_dict()))
    assert d2["ms"] == "/x/a.ms" and d2["inputs"][0]["spw"] == 0
