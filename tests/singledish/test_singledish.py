"""Total power: tiny simulated ALMA TP data -> single-dish cube (acceptance of issue 10)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from phangs_operators.errors import StagingError
from phangs_operators.routines.singledish import SingleDishError

from .conftest import CHANNEL_KMS, RESTFREQ_GHZ, reduce

pytestmark = pytest.mark.casa


def _velocities_kms(path: str) -> np.ndarray:
    from astropy import units as u
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(path).with_spectral_unit(u.km / u.s, velocity_convention="radio",
                                                       rest_value=RESTFREQ_GHZ * u.GHz)
    return np.sort(cube.spectral_axis.to_value(u.km / u.s))


def test_simulated_tp_ms_is_alma_like(tp_sim):
    from phangs_operators.casa import casatools

    tb = casatools().table()
    ms = str(tp_sim["ms"])
    try:
        tb.open(ms)
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        state = np.unique(tb.getcol("STATE_ID"))
        keywords = tb.getkeywords()
        tb.close()
        tb.open(ms + "/ANTENNA")
        names = list(tb.getcol("NAME"))
        tb.close()
        tb.open(ms + "/STATE")
        modes = list(tb.getcol("OBS_MODE"))
    finally:
        tb.close()
        tb.done()
    assert np.all(a1 == a2), "TP data are autocorrelations only"
    assert all(n.startswith("T70") for n in names)
    assert {modes[s] for s in state} == {"OBSERVE_TARGET#ON_SOURCE", "OBSERVE_TARGET#OFF_SOURCE"}
    assert "SYSCAL" in keywords
    m = tp_sim["manifest"]
    assert m["n_off_integrations"] > 0 and m["n_on_integrations"] > 100
    assert m["map_size_arcsec"] > 2 * 30.0  # larger than the 12m mosaic field of ngc9999
    assert abs(m["model_line_flux_jykms"] - tp_sim["model_info"]["line_flux_jykms"]) < 1e-3 * m["model_line_flux_jykms"]
    rows = tp_sim["jyperk"].read_text().splitlines()
    assert rows[0] == "MS,Antenna,Spwid,Polarization,Factor" and len(rows) == 1 + len(names)


def test_injected_baseline_removed(tp_sim, cube_beam):
    m = tp_sim["manifest"]
    assert m["baseline_k"] > 50 * m["noise_k"]  # left in, the baseline would dominate the rms
    assert cube_beam.calibration[str(tp_sim["ms"])]["sdcal"] == "ps,tsys"
    assert cube_beam.baseline_unit == "K"
    assert set(cube_beam.baseline_rms) == {f"ngc9999_tp.ms:{a}" for a in m["antennas"]}
    for ant, rms in cube_beam.baseline_rms.items():
        assert rms == pytest.approx(m["noise_k"], rel=0.10), ant
    assert all(Path(p).exists() for p in cube_beam.baseline_tables)


def test_cube_velocity_grid_is_the_product_grid(tp_sim, cube_beam):
    vel = _velocities_kms(cube_beam.out_fits)
    grid = np.sort(tp_sim["grid"])
    assert vel.size == grid.size
    np.testing.assert_allclose(vel, grid, atol=1e-3 * CHANNEL_KMS)
    assert cube_beam.velocity_grid_kms["nchan"] == grid.size


def test_cube_is_jy_per_beam_with_the_task_beam(cube_beam):
    from astropy.io import fits

    hdr = fits.getheader(cube_beam.out_fits)
    assert hdr["BUNIT"] == "Jy/beam"
    assert hdr["NAXIS"] == 3 and hdr["CTYPE3"].startswith("VRAD")
    assert 27.0 < hdr["BMAJ"] * 3600 < 31.0
    assert cube_beam.beam_arcsec["bmaj"] == pytest.approx(hdr["BMAJ"] * 3600)
    assert cube_beam.conversion == "beam_factor"
    json.dumps(cube_beam.to_dict())  # XCom / QA ready


def test_total_line_flux_matches_model(tp_sim, cube_beam):
    model = tp_sim["manifest"]["model_line_flux_jykms"]
    assert cube_beam.total_flux_jykms == pytest.approx(model, rel=0.05)


def test_jyperk_and_beam_factor_paths_agree(cube_beam, cube_jyperk):
    from astropy.io import fits

    assert cube_jyperk.conversion == "jyperk"
    assert cube_jyperk.baseline_unit == "Jy/beam"
    assert cube_jyperk.total_flux_jykms == pytest.approx(cube_beam.total_flux_jykms, rel=0.01)
    a = fits.getdata(cube_beam.out_fits)
    b = fits.getdata(cube_jyperk.out_fits)
    bright = np.isfinite(a) & np.isfinite(b) & (a > 0.5 * np.nanmax(a))
    assert bright.sum() > 10
    assert np.median(b[bright] / a[bright]) == pytest.approx(1.0, abs=0.01)


# --- bad input -------------------------------------------------------------------------------


def _copy_ms(tp_sim, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(tp_sim["ms"], dst)
    return dst


def _edit(ms: Path, sub: str, column: str, fn) -> None:
    from phangs_operators.casa import casatools

    tb = casatools().table()
    try:
        tb.open(str(ms / sub) if sub else str(ms), nomodify=False)
        tb.putcol(column, fn(tb.getcol(column)))
    finally:
        tb.close()
        tb.done()


def _remove_syscal(ms: Path) -> None:
    """Drop the SYSCAL subtable keyword of ``ms`` (the Tsys spectra disappear)."""
    from phangs_operators.casa import casatools

    tb = casatools().table()
    try:
        tb.open(str(ms), nomodify=False)
        tb.removekeyword("SYSCAL")
    finally:
        tb.close()
        tb.done()


def _assert_reduce_fails(tp_sim, out: Path, error: type[Exception], match: str, **kwargs) -> None:
    """``reduce(tp_sim, out, **kwargs)`` raises ``error`` matching ``match`` and writes nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(error, match=match):
        reduce(tp_sim, out, **kwargs)
    assert not out.exists()
    assert not out.with_name(out.stem + ".baseline").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_ms_without_autocorrelations(tp_sim, tmp_path):
    ms = _copy_ms(tp_sim, tmp_path, "cross_only.ms")
    _edit(ms, "", "ANTENNA2", lambda a2: (a2 + 1) % len(tp_sim["manifest"]["antennas"]))
    _assert_reduce_fails(tp_sim, tmp_path / "out" / "cube.fits", SingleDishError,
                         r"cross_only\.ms.*autocorrelation", ms_list=[ms])


def test_ms_without_tp_antennas(tp_sim, tmp_path):
    ms = _copy_ms(tp_sim, tmp_path, "no_tp.ms")
    _edit(ms, "ANTENNA", "NAME", lambda n: np.array([f"DA{41 + k}" for k in range(len(n))]))
    _assert_reduce_fails(tp_sim, tmp_path / "out" / "cube.fits", StagingError,
                         r"no_tp\.ms.*TP antenna", ms_list=[ms])


def test_spw_not_covering_the_line(tp_sim, tmp_path):
    _assert_reduce_fails(tp_sim, tmp_path / "cube.fits", SingleDishError,
                         r"ngc9999_tp\.ms: no spectral window covers the line grid 2",
                         vsys_kms=2500.0, velocity_grid_kms=None)


def test_jyperk_csv_without_the_ms_antennas(tp_sim, tmp_path):
    bad = tmp_path / "jyperk.csv"
    bad.write_text("MS,Antenna,Spwid,Polarization,Factor\nngc9999_tp.ms,PM01,0,I,40.0\nother.ms,T702,0,I,40.0\n")
    _assert_reduce_fails(tp_sim, tmp_path / "cube.fits", SingleDishError,
                         r"jyperk\.csv: no Jy/K factor for MS ngc9999_tp\.ms .*T70", jyperk_csv=bad)


def test_velocity_grid_finer_than_native(tp_sim, tmp_path):
    _assert_reduce_fails(tp_sim, tmp_path / "cube.fits", SingleDishError,
                         r"ngc9999_tp\.ms: velocity grid of 5\.0+ km/s is finer than the native",
                         chan_dv_kms=5.0, velocity_grid_kms=None)


def test_off_integrations_without_syscal(tp_sim, tmp_path):
    ms = _copy_ms(tp_sim, tmp_path, "no_syscal.ms")
    _remove_syscal(ms)
    _assert_reduce_fails(tp_sim, tmp_path / "out" / "cube.fits", SingleDishError,
                         r"no_syscal\.ms: OFF integrations but no SYSCAL", ms_list=[ms])


def test_raster_without_off_integrations_uses_otfraster(tp_sim, tmp_path):
    from phangs_operators.casa import casa_session, casatasks

    ms = tmp_path / "on_only.ms"
    with casa_session(tmp_path / "split"):
        casatasks().split(vis=str(tp_sim["ms"]), outputvis=str(ms), intent="*ON_SOURCE*", datacolumn="data")
    res = reduce(tp_sim, tmp_path / "out" / "cube.fits", ms_list=[ms])
    assert res.calibration[str(ms)]["sdcal"] == "otfraster,tsys"
    for rms in res.baseline_rms.values():
        assert rms == pytest.approx(tp_sim["manifest"]["noise_k"], rel=0.10)
    # the raster edges hold faint emission that otfraster takes as OFF: a little flux is lost
    model = tp_sim["manifest"]["model_line_flux_jykms"]
    assert 0.85 * model < res.total_flux_jykms < 1.02 * model


@pytest.mark.slow
def test_float_data_multi_spw_ms_as_importasdm_writes_it(tp_sim, tmp_path):
    from phangs_operators.routines.simulate_tp import simulate_tp_ms

    m = simulate_tp_ms(tmp_path / "fd", model_image=tp_sim["model"], vsys_kms=tp_sim["vsys"], ms_name="fd.ms",
                       preset="tiny", float_data=True, extra_spw=True, seed=7)
    assert m["data_column"] == "FLOAT_DATA" and m["line_spw"] == 1
    res = reduce(tp_sim, tmp_path / "out" / "cube.fits", ms_list=[m["ms"]], jyperk_csv=m["jyperk_csv"])
    cal = res.calibration[str(Path(m["ms"]).resolve())]
    assert cal["column"] == "float_data" and cal["spw"] == 1  # jyperk.csv and SYSCAL keep the MS's spw ids
    for rms in res.baseline_rms.values():  # Jy/beam after the Jy/K table
        assert rms == pytest.approx(m["noise_k"] * m["jyperk"], rel=0.10)
    assert res.total_flux_jykms == pytest.approx(m["model_line_flux_jykms"], rel=0.05)


def test_data_already_on_the_k_scale_pass_through(tp_sim, tmp_path, cube_jyperk):
    """ON-only K-scale data without SYSCAL: no sdcal calibration, the Jy/K table still applies."""
    from phangs_operators.casa import casa_session, casatasks

    cta = casatasks()
    work = tmp_path / "prep"
    with casa_session(work):
        cal = work / "cal.ms"
        shutil.copytree(tp_sim["ms"], cal)
        cta.sdcal(infile=str(cal), calmode="ps,tsys,apply", outfile="")
        kdir = tmp_path / "k_scale"
        kdir.mkdir()
        ms = kdir / tp_sim["ms"].name  # same name: the jyperk.csv rows refer to it
        cta.split(vis=str(cal), outputvis=str(ms), intent="*ON_SOURCE*", datacolumn="corrected")
    _remove_syscal(ms)
    res = reduce(tp_sim, tmp_path / "out" / "cube.fits", ms_list=[ms], jyperk_csv=tp_sim["jyperk"])
    assert res.calibration[str(ms)]["sdcal"] == "none"
    assert any("K scale" in w for w in res.warnings)
    assert res.total_flux_jykms == pytest.approx(cube_jyperk.total_flux_jykms, rel=0.005)
