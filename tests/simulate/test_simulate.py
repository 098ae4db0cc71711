"""The simulated measurement sets and TP cubes against the manifest (real CASA)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from phangs_operators.errors import SimulationError

pytestmark = pytest.mark.casa

#: CASA Stokes codes of XX and YY
XX, YY = 9, 12
#: MEAS_FREQ_REF of TOPO
TOPO = 5


def _table(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    from phangs_operators.casa import casatools

    tb = casatools().table()
    tb.open(str(path))
    try:
        return {c: tb.getcol(c) for c in columns} | {"nrows": tb.nrows()}
    finally:
        tb.close()
        tb.done()


def test_manifest_lists_every_output(tiny_demo) -> None:
    m = tiny_demo.manifest
    on_disk = json.loads((tiny_demo.data / "manifest.json").read_text())
    assert on_disk == m
    assert m["preset"] == "tiny" and m["seed"] == 42
    assert set(m["measurement_sets"]) == {
        "ngc9997_12m_single.ms",
        "ngc9999_12m_mosaic.ms",
        "ngc9999_7m_mosaic.ms",
        "ngc9998_1_12m_mosaic.ms",
        "ngc9998_1_7m_single.ms",
        "ngc9998_2_12m_mosaic.ms",
        "ngc9998_2_7m_single.ms",
    }
    paths = [e["path"] for e in m["measurement_sets"].values()] + [
        e["path"] for e in m["singledish"].values()
    ]
    paths += [g["model_image"] for g in m["galaxies"].values()]
    for rel in paths:
        assert not Path(rel).is_absolute(), rel
        assert (tiny_demo.data / rel).exists(), rel
    # nothing left behind by the build (temporary directory, CASA scratch)
    assert sorted(p.name for p in tiny_demo.data.iterdir()) == [
        "logs",
        "manifest.json",
        "model",
        "ms",
        "singledish",
    ]
    assert m["linear_mosaics"] == {"ngc9998": ["ngc9998_1", "ngc9998_2"]}
    assert m["targets"]["ngc9998_1"]["linmos_parent"] == "ngc9998"
    for g in m["galaxies"].values():
        apertures = g["line_flux_within_radius_jykms"]
        fluxes = [apertures[r] for r in sorted(apertures, key=float)]
        # non-decreasing (apertures that hold the whole disk agree to rounding)
        assert all(b >= a * (1 - 1e-12) for a, b in zip(fluxes[:-1], fluxes[1:], strict=True)) and fluxes[0] > 0
        assert fluxes[-1] <= g["line_flux_jykms"] * (1 + 1e-6)
        if g["r_max_arcsec"] <= 30.0:  # the whole disk is inside the 30" aperture
            assert apertures["30"] == pytest.approx(g["line_flux_jykms"], rel=1e-3)
        assert g["line_extent_kms"][0] < g["vsys_kms"] < g["line_extent_kms"][1]
    assert m["targets"]["ngc9998"]["linmos_parts"] == ["ngc9998_1", "ngc9998_2"]
    total = sum(e["size_bytes"] for e in m["measurement_sets"].values())
    assert total < 40e6, f"tiny MSes take {total / 1e6:.1f} MB"


@pytest.mark.parametrize(
    "name, array, n_fields",
    [
        ("ngc9997_12m_single.ms", "12m", 1),
        ("ngc9999_12m_mosaic.ms", "12m", 19),
        ("ngc9999_7m_mosaic.ms", "7m", 7),
        ("ngc9998_1_12m_mosaic.ms", "12m", 3),
        ("ngc9998_2_7m_single.ms", "7m", 1),
    ],
)
def test_measurement_set_matches_manifest(tiny_demo, name: str, array: str, n_fields: int) -> None:
    e = tiny_demo.manifest["measurement_sets"][name]
    ms = tiny_demo.data / e["path"]
    assert e["array"] == array and e["n_fields"] == n_fields

    ant = _table(ms / "ANTENNA", ["NAME", "DISH_DIAMETER"])
    assert ant["nrows"] == e["n_antennas"] == (12 if array == "12m" else 6)
    assert np.all(ant["DISH_DIAMETER"] == (12.0 if array == "12m" else 7.0))

    fld = _table(ms / "FIELD", ["NAME", "PHASE_DIR"])
    assert fld["nrows"] == n_fields
    assert set(fld["NAME"]) == {e["field_name"]}  # ALMA mosaics: one name, one row per pointing
    dirs = np.degrees(fld["PHASE_DIR"][:, 0, :].T) % [360.0, 360.0]
    expected = np.array(e["pointings_deg"]) % [360.0, 360.0]
    assert np.allclose(dirs, expected, atol=1e-7)

    spw = _table(ms / "SPECTRAL_WINDOW", ["MEAS_FREQ_REF", "NUM_CHAN", "CHAN_WIDTH", "CHAN_FREQ", "NAME"])
    assert spw["nrows"] == 1
    assert spw["MEAS_FREQ_REF"][0] == TOPO and e["spw_frame"] == "TOPO"
    assert spw["NUM_CHAN"][0] == e["n_channels"] == 56
    assert np.allclose(spw["CHAN_WIDTH"][:, 0], e["channel_width_hz"])
    freqs = spw["CHAN_FREQ"][:, 0]
    assert freqs[0] == pytest.approx(e["freq_range_topo_hz"][0], abs=1.0)
    assert freqs[-1] == pytest.approx(e["freq_range_topo_hz"][1], abs=1.0)

    pol = _table(ms / "POLARIZATION", ["CORR_TYPE"])
    assert list(pol["CORR_TYPE"][:, 0]) == [XX, YY]

    obs = _table(ms / "OBSERVATION", ["TELESCOPE_NAME", "PROJECT"])
    assert list(obs["TELESCOPE_NAME"]) == [e["telescope"]] == (["ALMA"] if array == "12m" else ["ACA"])
    assert list(obs["PROJECT"]) == [e["project"]]

    state = _table(ms / "STATE", ["OBS_MODE"])
    assert all(mode.startswith("OBSERVE_TARGET") for mode in state["OBS_MODE"])

    main = _table(ms, ["DATA", "FIELD_ID", "STATE_ID", "ANTENNA1", "ANTENNA2"])
    n_base = e["n_antennas"] * (e["n_antennas"] - 1) // 2
    assert main["nrows"] == e["n_integrations"] * n_base
    assert main["DATA"].shape == (2, e["n_channels"], main["nrows"])
    assert sorted(set(main["FIELD_ID"])) == list(range(n_fields))
    assert np.all(main["STATE_ID"] == 0)
    assert np.all(main["ANTENNA1"] != main["ANTENNA2"])  # no autocorrelations


def test_line_and_continuum_sit_where_the_model_puts_them(tiny_demo) -> None:
    """Short-baseline spectrum of the single pointing: line centred on vsys (LSRK), 20 mJy continuum."""
    from phangs_operators.casa import casatools

    m = tiny_demo.manifest
    e = m["measurement_sets"]["ngc9997_12m_single.ms"]
    g = m["galaxies"][e["galaxy"]]
    ms_path = tiny_demo.data / e["path"]
    ms = casatools().ms()
    ms.open(str(ms_path))
    try:
        lsrk = np.asarray(ms.cvelfreqs(spwids=[0], mode="channel", outframe="LSRK"))
    finally:
        ms.close()
        ms.done()
    v = 299792.458 * (1.0 - lsrk / m["rest_frequency_hz"])
    # the spw covers vsys +- (vwidth/2 + 50 km/s): line-free channels for contsub on both sides
    half = g["vwidth_kms"] / 2 + 50.0
    assert v.min() < g["vsys_kms"] - half and v.max() > g["vsys_kms"] + half

    main = _table(ms_path, ["DATA", "UVW"])
    short = np.hypot(main["UVW"][0], main["UVW"][1]) < 40.0
    assert short.sum() > 100
    spec = np.real(main["DATA"][:, :, short]).mean(axis=(0, 2))
    edges = np.r_[spec[:8], spec[-8:]]
    assert np.median(edges) == pytest.approx(g["cont_flux_jy"], abs=0.008)
    line = spec - np.median(edges)
    window = np.abs(v - g["vsys_kms"]) < 150.0
    centroid = (line[window] * v[window]).sum() / line[window].sum()
    assert centroid == pytest.approx(g["vsys_kms"], abs=10.0)
    assert line[window].max() > 5 * np.std(edges)


@pytest.mark.parametrize("galaxy", ["ngc9999", "ngc9998"])
def test_tp_cube_header_and_flux(tiny_demo, galaxy: str) -> None:
    from astropy.coordinates import Angle
    from astropy.io import fits

    m = tiny_demo.manifest
    sd = m["singledish"][galaxy]
    g = m["galaxies"][galaxy]
    with fits.open(tiny_demo.data / sd["path"]) as hdul:
        hdr = hdul[0].header
        data = hdul[0].data.astype(np.float64)
    assert hdr["NAXIS"] == 3 and list(data.shape) == sd["shape"] == [56, 40, 40]
    assert hdr["BUNIT"] == sd["bunit"] == "Jy/beam"
    assert hdr["BMAJ"] * 3600 == pytest.approx(28.5) and hdr["BMIN"] * 3600 == pytest.approx(28.5)
    assert "BPA" in hdr
    assert hdr["CDELT1"] * 3600 == pytest.approx(-4.0) and hdr["CDELT2"] * 3600 == pytest.approx(4.0)
    assert hdr["CTYPE1"].startswith("RA--") and hdr["CTYPE2"].startswith("DEC-")
    assert hdr["CTYPE3"] == "VRAD" and hdr["CUNIT3"] == "m/s"
    assert hdr["SPECSYS"] == "LSRK"
    assert hdr["RESTFRQ"] == pytest.approx(230.538e9)
    assert hdr["CRVAL1"] == pytest.approx(Angle(g["ra_hms"]).deg) and hdr["CRVAL2"] == pytest.approx(
        Angle(g["dec_dms"]).deg
    )
    v0 = (hdr["CRVAL3"] + (1 - hdr["CRPIX3"]) * hdr["CDELT3"]) / 1e3
    assert v0 == pytest.approx(sd["velocity_range_kms"][0])
    assert hdr["CDELT3"] / 1e3 == pytest.approx(sd["channel_width_kms"])
    # flux: sum(Jy/beam) * dv / (beam area in pixels) = the model's line flux
    beam_area_pix = math.pi / (4 * math.log(2)) * (hdr["BMAJ"] * hdr["BMIN"]) / (hdr["CDELT2"] ** 2)
    flux = data.sum() * abs(hdr["CDELT3"]) / 1e3 / beam_area_pix
    assert flux == pytest.approx(g["line_flux_jykms"], rel=0.01)
    assert sd["line_flux_jykms"] == pytest.approx(g["line_flux_jykms"], rel=0.005)
    # noise level as in the manifest (line-free channels)
    assert np.std(np.r_[data[:5], data[-5:]]) == pytest.approx(sd["noise_rms_jy_beam"], rel=0.2)


def _compare_outputs(a: Path, b: Path, manifest: dict) -> list[str]:
    """Names of the outputs that differ between two simulations."""
    from astropy.io import fits

    differ = []
    cols = ["DATA", "CORRECTED_DATA", "UVW", "TIME", "FLAG", "WEIGHT", "SIGMA", "FIELD_ID"]
    for name, e in manifest["measurement_sets"].items():
        ta, tb = _table(a / e["path"], cols), _table(b / e["path"], cols)
        if not all(np.array_equal(ta[c], tb[c]) for c in cols):
            differ.append(name)
    for name, e in manifest["singledish"].items():
        if not np.array_equal(fits.getdata(a / e["path"]), fits.getdata(b / e["path"])):
            differ.append(name)
    return differ


def _strip_run_facts(manifest: dict) -> dict:
    out = {k: v for k, v in manifest.items() if k != "timings_s"}
    out["tp_measurement_sets"] = {name: {k: v for k, v in tp.items() if k != "timings_s"}
                                  for name, tp in manifest.get("tp_measurement_sets", {}).items()}
    return out


def test_same_seed_gives_identical_output_through_the_cli(tiny_demo, tmp_path) -> None:
    from phangs_operators.cli import main

    again = tmp_path / "again"
    assert main(["simulate", str(again), "--preset", "tiny", "--seed", str(tiny_demo.seed)]) == 0
    second = json.loads((again / "manifest.json").read_text())
    assert _strip_run_facts(second) == _strip_run_facts(tiny_demo.manifest)
    assert _compare_outputs(tiny_demo.data, again, tiny_demo.manifest) == []


def test_another_seed_changes_the_noise_only_and_replaces_a_previous_run(tiny_demo, tmp_path) -> None:
    from phangs_operators.routines.simulate import simulate

    target = tmp_path / "other"
    (target / "ms" / "stale.ms").mkdir(parents=True)
    (target / "manifest.json").write_text("{}")
    other = simulate(target, preset="tiny", seed=tiny_demo.seed + 1)
    assert not (target / "ms" / "stale.ms").exists()
    assert json.loads((target / "manifest.json").read_text())["seed"] == tiny_demo.seed + 1
    a, b = _strip_run_facts(other), _strip_run_facts(tiny_demo.manifest)
    assert a.pop("seed") != b.pop("seed")
    for m in (a, b):  # TP: the seed and the random system temperatures are the noise realisation
        for tp in m["tp_measurement_sets"].values():
            tp.pop("seed"), tp.pop("tsys_k")
    assert a == b  # same layout, model and metadata
    assert sorted(_compare_outputs(tiny_demo.data, target, tiny_demo.manifest)) == sorted(
        list(tiny_demo.manifest["measurement_sets"]) + list(tiny_demo.manifest["singledish"])
    )


def test_refuses_a_foreign_non_empty_directory(tmp_path) -> None:
    from phangs_operators.routines.simulate import simulate

    (tmp_path / "precious.txt").write_text("do not delete")
    with pytest.raises(SimulationError, match="not empty and holds no simulation"):
        simulate(tmp_path, preset="tiny")
    assert (tmp_path / "precious.txt").read_text() == "do not delete"


@pytest.mark.parametrize(
    "kwargs, message", [({"preset": "huge"}, "unknown preset 'huge'"), ({"seed": -1}, "seed must be >= 0")]
)
def test_bad_arguments_are_simulation_errors(tmp_path, kwargs, message) -> None:
    from phangs_operators.routines.simulate import simulate

    with pytest.raises(SimulationError, match=message):
        simulate(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
