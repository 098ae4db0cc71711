"""Staging on real CASA with the tiny simulation (issue 5, acceptance: staging)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from phangs_operators.errors import StagingError

from .conftest import STATWT_EDGE_KMS, TINY_CHANNEL_KMS

pytestmark = pytest.mark.casa

REST_GHZ = 230.538


def line_extent_kms(gal: dict) -> tuple[float, float]:
    """Velocity extent of the simulated line emission (manifest, else vsys +- (vmax sin i + 3 sigma))."""
    for key in ("line_extent_kms", "velocity_range_kms"):
        if key in gal:
            return tuple(gal[key])
    half = gal["vmax_kms"] * np.sin(np.radians(gal["incl_deg"])) + 3 * gal["sigma_kms"]
    return gal["vsys_kms"] - half, gal["vsys_kms"] + half


def _table(path, column, **kw):
    from phangs_operators.casa import casatools

    tb = casatools().table()
    tb.open(str(path))
    try:
        return tb.getcol(column, **kw)
    finally:
        tb.close()


def test_line_staging_grid_is_the_phangs_lsrk_grid(staged_mosaic, tiny):
    from phangs_operators.routines import vis

    galaxy = tiny["manifest"]["targets"]["ngc9999"]
    native = vis.chan_width_kms(tiny["manifest"]["preset_parameters"]["chan_width_hz"], REST_GHZ)
    (scheme,) = vis.suggest_extraction_scheme([native], TINY_CHANNEL_KMS)
    expected = vis.velocity_grid(galaxy["vsys_kms"], galaxy["vwidth_kms"], scheme)
    got = vis.read_velocity_axis(staged_mosaic.out_ms, REST_GHZ)
    # 360 km/s at 2 x 10.1624 km/s: 36 regrid channels -> 18 channels of 20.3249 km/s
    assert scheme.binfactor == 2
    assert staged_mosaic.nchan == expected.size == got.size == 18
    assert staged_mosaic.chan_width_kms == pytest.approx(20.3249, abs=1e-4)
    assert np.max(np.abs(got - expected)) < 1e-3  # km/s
    assert got[0] > got[-1]  # ascending frequency: channel 0 is the highest velocity
    assert _table(Path(staged_mosaic.out_ms) / "SPECTRAL_WINDOW", "MEAS_FREQ_REF").tolist() == [1]  # LSRK
    assert staged_mosaic.nspw == 1
    assert [i["array"] for i in staged_mosaic.inputs] == ["12m", "7m"]
    assert all(i["fitspec"].startswith("0:0~") for i in staged_mosaic.inputs)
    # statwt excluded the central channels, keeping ceil(50 / 20.32) = 3 edge channels a side
    assert staged_mosaic.statwt_fitspw == "0:3~14"
    assert staged_mosaic.to_dict()["ms"] == staged_mosaic.out_ms


def test_continuum_is_removed_by_uvcontsub(tiny, tmp_path):
    """uvcontsub on the raw 12m mosaic: the line-free (fit) channels average to ~0 afterwards."""
    from phangs_operators.casa import casa_session
    from phangs_operators.routines import vis

    raw_ms = tiny["ms"]["ngc9999_12m_mosaic.ms"]
    t = tiny["manifest"]["targets"]["ngc9999"]
    line = vis.get_ghz_range_for_line(restfreq_ghz=REST_GHZ, vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"])
    out = tmp_path / "contsub.ms"
    with casa_session(tmp_path / "work"):
        fitspec, n_free = vis.subtract_continuum(raw_ms, out, exclude_ranges_ghz=[line], fitorder=0)
    free = np.zeros(tiny["manifest"]["preset_parameters"]["nchan"], bool)
    for run in fitspec.split(":")[1].split(";"):
        a, b = (int(x) for x in run.split("~"))
        free[a : b + 1] = True
    assert free.sum() == n_free >= 10
    # the centre pointing (FIELD_ID 0) sees the 20 mJy nucleus at the phase centre, unattenuated
    centre = _table(raw_ms, "FIELD_ID") == 0
    assert centre.any()
    before = float(_table(raw_ms, "CORRECTED_DATA")[:, free, :][..., centre].real.mean())
    after = float(_table(out, "DATA")[:, free, :][..., centre].real.mean())
    after_all = float(_table(out, "DATA")[:, free, :].real.mean())
    # recorded: before +0.020 Jy (noise of the mean ~0.0014 Jy), after ~1e-9
    assert 0.014 < before < 0.026
    assert abs(after) < 1e-6 and abs(after_all) < 1e-6


def test_staged_line_free_channels_are_continuum_free(staged_mosaic, tiny):
    """The staged cube's line-free edge channels: mean consistent with zero (noise-limited)."""
    from phangs_operators.routines import vis

    gal = tiny["manifest"]["galaxies"]["ngc9999"]
    lo, hi = line_extent_kms(gal)
    data = _table(staged_mosaic.out_ms, "DATA")
    v = vis.read_velocity_axis(staged_mosaic.out_ms, REST_GHZ)
    free = (v < lo - 15) | (v > hi + 15)
    assert free.sum() >= 4
    sample = data[:, free, :].real
    mean, stderr = float(sample.mean()), float(sample.std() / np.sqrt(sample.size))
    # recorded: mean +0.0004 Jy, standard error 0.0034 Jy (the continuum before: +0.0038)
    assert abs(mean) < 3 * stderr + 1e-4
    line_chan = int(np.argmin(np.abs(v - gal["vsys_kms"])))
    assert float(data[:, line_chan, :].real.mean()) > 3 * stderr  # the line is still there


def test_statwt_weight_ratio_follows_input_noise(staged_mosaic, tiny):
    w = _table(staged_mosaic.out_ms, "WEIGHT")
    obs = _table(staged_mosaic.out_ms, "OBSERVATION_ID")
    tel = _table(Path(staged_mosaic.out_ms) / "OBSERVATION", "TELESCOPE_NAME").tolist()
    w12 = float(np.median(w[:, obs == tel.index("ALMA")]))
    w7 = float(np.median(w[:, obs == tel.index("ACA")]))
    p = tiny["manifest"]["preset_parameters"]
    expected = (p["noise_7m_jy"] / p["noise_12m_jy"]) ** 2  # 8.16
    ratio = w12 / w7
    # recorded: 8.13 vs 8.16
    assert ratio == pytest.approx(expected, rel=0.10)


def test_continuum_product_one_channel_per_spw(tiny, stage_dir):
    from phangs_operators.routines import vis

    gal = tiny["manifest"]["targets"]["ngc9999"]
    res = vis.stage_continuum_product(
        {"12m": [tiny["ms"]["ngc9999_12m_mosaic.ms"]], "7m": [tiny["ms"]["ngc9999_7m_mosaic.ms"]]},
        stage_dir / "ngc9999_12m+7m_cont.ms", vsys_kms=gal["vsys_kms"], vwidth_kms=gal["vwidth_kms"],
        lines_to_flag=["co21"], target_field="NGC9999", workdir=stage_dir / "work",
    )
    assert res.nchan == 1 and res.nspw == 2  # 12m and 7m were observed on different dates (TOPO spws)
    assert all(i["flagged"].startswith("0:") for i in res.inputs)
    data = _table(res.out_ms, "DATA")
    assert data.shape[1] == 1
    # the one channel is exactly the average of the unflagged (line-free) input channels, row by row
    a, b = (int(x) for x in res.inputs[0]["flagged"].split(":")[1].split("~"))
    raw = _table(tiny["ms"]["ngc9999_12m_mosaic.ms"], "CORRECTED_DATA")
    keep = np.ones(raw.shape[1], bool)
    keep[a : b + 1] = False
    expected = raw[:, keep, :].mean(axis=1)
    obs = _table(res.out_ms, "OBSERVATION_ID")
    got = data[:, 0, :][:, obs == 0]
    assert got.shape == expected.shape
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6)
    # and it keeps the positive continuum on the nucleus pointing (recorded: 0.018 Jy for 20 mJy)
    centre = (_table(res.out_ms, "FIELD_ID") == 0) & (obs == 0)
    assert 0.008 < float(data[:, 0, centre].real.mean()) < 0.03
    # with explicit continuum ranges outside the spw -> a clear error
    with pytest.raises(StagingError, match="no spectral window overlaps the continuum ranges"):
        vis.stage_continuum_product(
            {"12m": [tiny["ms"]["ngc9999_12m_mosaic.ms"]]}, stage_dir / "bad_cont.ms",
            vsys_kms=gal["vsys_kms"], vwidth_kms=gal["vwidth_kms"], freq_ranges_ghz=[(100.0, 101.0)],
            workdir=stage_dir / "work",
        )
    assert not (stage_dir / "bad_cont.ms").exists()


def _line_kw(tiny, stage_dir, **over):
    t = tiny["manifest"]["targets"]["ngc9999"]
    kw = dict(line="co21", vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"], channel_kms=TINY_CHANNEL_KMS,
              target_field="NGC9999", statwt_edge_kms=STATWT_EDGE_KMS, workdir=stage_dir / "work")
    kw.update(over)
    return kw


def _no_leftovers(directory: Path, stem: str) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith(stem)]


def test_missing_ms_is_named(tiny, stage_dir):
    from phangs_operators.routines import vis

    missing = stage_dir / "nope.ms"
    with pytest.raises(StagingError, match="nope.ms"):
        vis.stage_line_product({"12m": [missing]}, stage_dir / "x_missing.ms", **_line_kw(tiny, stage_dir))
    _no_leftovers(stage_dir, "x_missing")


def test_ms_without_target_field(tiny, stage_dir):
    from phangs_operators.routines import vis

    with pytest.raises(StagingError, match=r"ngc9999_12m_mosaic\.ms.*no field matching \['NGC0001'\]"):
        vis.stage_line_product({"12m": [tiny["ms"]["ngc9999_12m_mosaic.ms"]]}, stage_dir / "x_field.ms",
                               **_line_kw(tiny, stage_dir, target_field="NGC0001"))
    _no_leftovers(stage_dir, "x_field")


def test_spw_not_covering_the_line(tiny, stage_dir):
    from phangs_operators.routines import vis

    with pytest.raises(StagingError, match=r"ngc9999_7m_mosaic\.ms.*no spectral window .* covers the line"):
        vis.stage_line_product({"7m": [tiny["ms"]["ngc9999_7m_mosaic.ms"]]}, stage_dir / "x_spw.ms",
                               **_line_kw(tiny, stage_dir, vsys_kms=3000.0))
    _no_leftovers(stage_dir, "x_spw")
    # channels coarser than the requested width are not used either
    with pytest.raises(StagingError, match="no spectral window with channels <= 5.0 km/s"):
        vis.stage_line_product({"7m": [tiny["ms"]["ngc9999_7m_mosaic.ms"]]}, stage_dir / "x_spw.ms",
                               **_line_kw(tiny, stage_dir, channel_kms=5.0))
    _no_leftovers(stage_dir, "x_spw")


def test_empty_selection(tiny, stage_dir, tmp_path):
    from phangs_operators.casa import casa_session, casatasks
    from phangs_operators.routines import vis

    flagged = tmp_path / "all_flagged_7m.ms"
    shutil.copytree(tiny["ms"]["ngc9999_7m_mosaic.ms"], flagged)
    with casa_session(tmp_path / "work"):
        casatasks().flagdata(vis=str(flagged), mode="manual", flagbackup=False)
    with pytest.raises(StagingError, match=r"all_flagged_7m\.ms.*(empty|failed)"):
        vis.stage_line_product({"7m": [flagged]}, stage_dir / "x_empty.ms", **_line_kw(tiny, stage_dir))
    _no_leftovers(stage_dir, "x_empty")


def test_rerun_is_idempotent_unless_forced(staged_single, tiny, stage_dir):
    from phangs_operators.routines import vis

    out = Path(staged_single.out_ms)
    stamp = (out / "table.dat").stat().st_mtime_ns
    t = tiny["manifest"]["targets"]["ngc9997"]
    kw = dict(line="co21", vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"], channel_kms=TINY_CHANNEL_KMS,
              target_field="NGC9997", statwt_edge_kms=STATWT_EDGE_KMS, workdir=stage_dir / "work")
    again = vis.stage_line_product({"12m": [tiny["ms"]["ngc9997_12m_single.ms"]]}, out, **kw)
    assert again.skipped and again.nchan == staged_single.nchan == 18
    assert again.vel_first_kms == pytest.approx(staged_single.vel_first_kms)
    assert (out / "table.dat").stat().st_mtime_ns == stamp
    forced = vis.stage_line_product({"12m": [tiny["ms"]["ngc9997_12m_single.ms"]]}, out, overwrite=True, **kw)
    assert not forced.skipped and forced.nchan == 18
    assert (out / "table.dat").stat().st_mtime_ns != stamp
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
