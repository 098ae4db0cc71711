"""CASA integration tests of the post-processing routines on tiny synthetic images."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import CubeError, ImagingError
from phangs_operators.routines import postprocess as pp
from phangs_operators.routines.post import maths
from phangs_operators.routines.post.casaimage import image_info, opened, read_cube
from tests.postprocess import synth

pytestmark = pytest.mark.casa


def _no_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".tmp" in p.name]


def _flux_in(data: np.ndarray, valid: np.ndarray, beam: float, pixel: float, dv: float) -> float:
    return float(np.sum(np.where(valid, data, 0.0)) / maths.beam_area_pixels(beam, beam, pixel) * dv)


@pytest.fixture(scope="module")
def chain(single_field, tmp_path_factory):
    """pbcor -> round beam -> import TP -> feather, shared by the tests below."""
    sf = single_field
    out = tmp_path_factory.mktemp("chain")
    res = {}
    res["pbcor"] = pp.pbcor_cube(sf.interf.image, sf.interf.pb, out / "gal_12m_co21_pbcorr.image", cutoff=0.5,
                                 workdir=out / "w")
    res["round"] = pp.round_beam(out / "gal_12m_co21_pbcorr.image", out / "gal_12m_co21_pbcorr_round.image",
                                 workdir=out / "w")
    res["sd"] = pp.import_singledish(sf.tp_fits, out / "gal_12m_co21_pbcorr_round.image",
                                     out / "gal_12m_co21_singledish.image", workdir=out / "w")
    res["feather"] = pp.feather_cube(out / "gal_12m_co21_pbcorr_round.image", out / "gal_12m_co21_singledish.image",
                                     out / "gal_12m+tp_co21_pbcorr_round.image", sdfactor=1.0, workdir=out / "w")
    return out, res


def test_pbcor_divides_by_pb_above_cutoff(single_field, chain):
    out, res = chain
    raw, _ = read_cube(single_field.interf.image)
    pb, _ = read_cube(single_field.interf.pb)
    cor, valid = read_cube(out / "gal_12m_co21_pbcorr.image")
    expected = maths.pb_correct(raw, pb, 0.5)
    assert np.array_equal(valid, np.isfinite(expected))
    np.testing.assert_allclose(cor[valid], expected[valid], rtol=1e-5)
    assert 0.3 < res["pbcor"].numbers["valid_fraction"] < 0.8
    assert _no_leftovers(out) == []


def test_rerun_is_noop_unless_overwrite(single_field, chain):
    out, _ = chain
    target = out / "gal_12m_co21_pbcorr.image"
    stamp = (target / "table.f0").stat().st_mtime_ns
    again = pp.pbcor_cube(single_field.interf.image, single_field.interf.pb, target, cutoff=0.5, workdir=out / "w")
    assert again.skipped and (target / "table.f0").stat().st_mtime_ns == stamp
    redo = pp.pbcor_cube(single_field.interf.image, single_field.interf.pb, out / "redo.image", cutoff=0.5,
                         workdir=out / "w")
    redo2 = pp.pbcor_cube(single_field.interf.image, single_field.interf.pb, out / "redo.image", cutoff=0.5,
                          workdir=out / "w", overwrite=True)
    assert not redo.skipped and not redo2.skipped


def test_round_beam_target_and_flux(single_field, chain):
    out, res = chain
    beams = single_field.interf.beams
    # sqrt(bmaj_max^2 + (2 pixel)^2), rounded up to 1e-4" (imsmooth aborts on some full-precision values)
    expected = math.ceil(math.hypot(max(b[0] for b in beams), 2 * single_field.interf.pixel_as) * 1e4) / 1e4
    r = res["round"]
    assert r.beam_arcsec[0] == pytest.approx(expected, rel=1e-9)
    assert r.numbers["per_plane_input"] is True
    info = image_info(r.output)
    assert not info.per_plane_beams
    assert info.beams[0, 0] == pytest.approx(expected, rel=1e-4)
    assert info.beams[0, 1] == pytest.approx(expected, rel=1e-4)
    # convolution keeps the flux inside the valid area (up to edge losses)
    _, v_in = read_cube(out / "gal_12m_co21_pbcorr.image")
    f_in = pp.line_flux(out / "gal_12m_co21_pbcorr.image", v_in)
    f_out = pp.line_flux(r.output, v_in)
    assert f_out == pytest.approx(f_in, rel=0.05)
    # the flat-noise cube brought to the same beam, from the XCom-style beam list
    xcom = r.to_dict()
    assert xcom["image"] == r.output and xcom["outputs"]["image"] == r.output
    flat = pp.round_beam(single_field.interf.image, out / "flat_round.image", target_beam_arcsec=xcom["beam_arcsec"],
                         workdir=out / "w")
    assert image_info(flat.output).beams[0, 0] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(CubeError, match="smaller than the minimum"):
        pp.round_beam(out / "gal_12m_co21_pbcorr.image", out / "forced.image", force_beam=1.0, workdir=out / "w")
    assert not (out / "forced.image").exists()


def test_import_singledish_regrids_and_converts_k(single_field, chain, ct):
    out, res = chain
    r = res["sd"]
    info = image_info(r.output)
    tmpl = image_info(out / "gal_12m_co21_pbcorr_round.image")
    assert info.shape == tmpl.shape
    assert info.axis_types == ["Direction", "Direction", "Stokes", "Spectral"]
    assert info.unit_normalised == "Jy/beam"
    assert r.numbers["input_unit"] == "K"
    assert r.numbers["jytok"] == pytest.approx(maths.jytok_factor(28.5, 28.5, float(np.mean(info.freqs_hz))), rel=1e-6)
    data, valid = read_cube(r.output)
    truth = synth.truth_on_grid(ct, r.output, single_field.sky, 28.5)
    centre = (slice(24, 40), slice(24, 40))
    np.testing.assert_allclose(data[centre][valid[centre]], truth[centre][valid[centre]], rtol=0.03,
                               atol=0.01 * truth.max())


def test_feather_restores_missing_flux(single_field, chain, ct):
    out, res = chain
    r = res["feather"].numbers
    rnd = image_info(out / "gal_12m_co21_pbcorr_round.image")
    feathered, valid = read_cube(out / "gal_12m+tp_co21_pbcorr_round.image")
    truth = synth.truth_on_grid(ct, out / "gal_12m_co21_pbcorr_round.image",
                                single_field.sky, rnd.beams[0, 0])
    flux_truth = _flux_in(truth, valid, rnd.beams[0, 0], rnd.pixel_arcsec, rnd.channel_width_kms())
    assert r["interf_flux_jykms"] / flux_truth < 0.6
    assert 0.9 <= r["feathered_flux_jykms"] / flux_truth <= 1.1
    assert _flux_in(feathered, valid, rnd.beams[0, 0], rnd.pixel_arcsec, rnd.channel_width_kms()) == pytest.approx(
        r["feathered_flux_jykms"], rel=1e-6)
    assert res["feather"].to_dict()["numbers"]["sdfactor"] == 1.0


def test_casa_feather_matches_numpy_reference(chain):
    out, _ = chain
    interf, vi = read_cube(out / "gal_12m_co21_pbcorr_round.image")
    sd, vs = read_cube(out / "gal_12m_co21_singledish.image")
    feathered, _ = read_cube(out / "gal_12m+tp_co21_pbcorr_round.image")
    info = image_info(out / "gal_12m_co21_pbcorr_round.image")
    common = vi & vs
    ch = 4
    a = np.where(common, interf, 0.0)[:, :, 0, ch]
    b = np.where(common, sd, 0.0)[:, :, 0, ch]
    bpix = info.beams[0, 0] / info.pixel_arcsec
    ref = maths.feather_plane(a, b, (bpix, bpix), 28.5 / info.pixel_arcsec, sdfactor=1.0)
    got = feathered[:, :, 0, ch]
    m = common[:, :, 0, ch]
    assert np.sum(got[m]) == pytest.approx(np.sum(ref[m]), rel=0.03)
    assert np.sqrt(np.mean((got[m] - ref[m]) ** 2)) < 0.03 * np.abs(ref[m]).max()


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("no_beam", "no beam"),
        ("bad_unit", "neither 'K' nor 'Jy/beam'"),
        ("no_spectral", "no spectral axis"),
        ("no_overlap", "no overlap in velocity"),
        ("missing", "not found"),
    ],
)
def test_import_singledish_rejects_bad_cubes(single_field, chain, tmp_path, kind, match):
    out, _ = chain
    sky = single_field.sky
    path = tmp_path / f"tp_{kind}.fits"
    if kind == "no_beam":
        synth.write_tp_fits(path, sky, drop=("BMAJ", "BMIN", "BPA"))
    elif kind == "bad_unit":
        synth.write_tp_fits(path, sky, unit="Jy/pixel")
    elif kind == "no_spectral":
        synth.write_tp_fits(path, sky)
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["CTYPE3"] = "LINEAR"
    elif kind == "no_overlap":
        synth.write_tp_fits(path, sky, v0=2000.0)
    dest = tmp_path / "sd.image"
    with pytest.raises(CubeError, match=match) as err:
        pp.import_singledish(path, out / "gal_12m_co21_pbcorr_round.image", dest, workdir=tmp_path / "w")
    assert path.name in str(err.value)
    assert not dest.exists() and _no_leftovers(tmp_path) == []


def test_missing_inputs_name_the_file(tmp_path, single_field):
    with pytest.raises(ImagingError, match="nope.image"):
        pp.pbcor_cube(tmp_path / "nope.image", single_field.interf.pb, tmp_path / "o.image", cutoff=0.5)
    with pytest.raises(ImagingError, match="nope_root.image"):
        pp.postprocess_cube(tmp_path / "nope_root", tmp_path / "x.fits", workdir=tmp_path / "w")


def test_convert_to_kelvin_factor(chain, tmp_path):
    out, _ = chain
    src = out / "gal_12m_co21_pbcorr_round.image"
    r = pp.convert_to_kelvin(src, tmp_path / "k.image")
    info = image_info(src)
    f = maths.jytok_factor(info.beams[0, 0], info.beams[0, 1], float(np.mean(info.freqs_hz)))
    assert r.numbers["jytok"] == pytest.approx(f, rel=1e-9)
    a, va = read_cube(src)
    b, vb = read_cube(tmp_path / "k.image")
    assert np.array_equal(va, vb)
    np.testing.assert_allclose(b[vb], a[va] * f, rtol=1e-5)
    assert image_info(tmp_path / "k.image").unit == "K"
    with pytest.raises(CubeError, match="expected Jy/beam"):
        pp.convert_to_kelvin(tmp_path / "k.image", tmp_path / "kk.image")


def test_trim_box_and_rebin(chain, tmp_path):
    out, _ = chain
    src = out / "gal_12m_co21_pbcorr_round.image"
    _, valid = read_cube(src)
    box = maths.valid_bounding_box(valid, pad=1, axes=[0, 1, 3])
    r = pp.trim_cube(src, tmp_path / "t.image", pb=out / "gal_12m_co21_pbcorr.image", pb_out=tmp_path / "t.pb",
                     rind_pixels=0, workdir=tmp_path / "w")
    shape = image_info(tmp_path / "t.image").shape
    assert shape[0] == box[0][1] - box[0][0] + 1 and shape[1] == box[1][1] - box[1][0] + 1
    assert r.numbers["rebin_factor"] == 1  # 7.5" beam on 2" pixels: 3.75 px per beam
    assert image_info(tmp_path / "t.pb").shape == shape
    # oversampled: 3.75 px/beam with min 1.5 -> factor 2
    r2 = pp.trim_cube(src, tmp_path / "t2.image", min_pixperbeam=1.5, workdir=tmp_path / "w")
    assert r2.numbers["rebin_factor"] == 2
    info2 = image_info(tmp_path / "t2.image")
    assert info2.pixel_arcsec == pytest.approx(4.0)
    assert info2.bmaj_max / info2.pixel_arcsec >= 1.5
    # rind erosion removes the outer ring of valid pixels
    r3 = pp.trim_cube(src, tmp_path / "t3.image", rind_pixels=1, workdir=tmp_path / "w")
    _, v3 = read_cube(tmp_path / "t3.image")
    _, v0 = read_cube(tmp_path / "t.image")
    assert v3.sum() < v0.sum() and r3.numbers["box"] == r.numbers["box"]


def test_postprocess_chain_and_science_ready_fits(single_field, tmp_path):
    sf = single_field
    out_fits = tmp_path / "gal_12m+tp_co21_pbcorr_trimmed_k.fits"
    r = pp.postprocess_cube(sf.dir / "gal_12m_co21", out_fits, tp_fits=sf.tp_fits, cutoff=0.5, workdir=tmp_path / "w")
    d = r.to_dict()
    assert d["numbers"]["feathered_flux_jykms"] > 2 * d["numbers"]["interf_flux_jykms"]
    assert set(d["outputs"]) >= {"fits_k", "fits_jybeam", "fits_pb"}
    h = fits.getheader(out_fits)
    assert h["NAXIS"] == 3 and h["BITPIX"] == -32
    assert h["BUNIT"].strip() == "K"
    assert h["BMAJ"] == h["BMIN"] and h["BPA"] == 0.0
    assert h["CTYPE3"] == "VRAD" and h["CUNIT3"] == "m/s" and h["SPECSYS"] == "LSRK"
    assert h["RESTFRQ"] == pytest.approx(230.538e9)
    assert h["TELESCOP"] == "ALMA" and h["OBJECT"] == "GAL"
    assert "HISTORY" not in h and "DATE-OBS" not in h and "OBSERVER" not in h
    assert h["JYTOK"] == pytest.approx(d["numbers"]["jytok"])
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(out_fits)
    assert cube.beam.major.to("arcsec").value == pytest.approx(r.beam_arcsec[0], rel=1e-6)
    assert str(cube.spectral_axis.unit) == "m / s"
    # K cube = Jy/beam cube x factor
    jy = fits.getdata(tmp_path / "gal_12m+tp_co21_pbcorr_trimmed.fits")
    k = fits.getdata(out_fits)
    ok = np.isfinite(jy)
    np.testing.assert_allclose(k[ok], jy[ok] * h["JYTOK"], rtol=1e-5)
    assert (h["DATAMIN"], h["DATAMAX"]) == pytest.approx((float(np.nanmin(k)), float(np.nanmax(k))), rel=1e-12)
    assert fits.getheader(tmp_path / "gal_12m+tp_co21_trimmed_pb.fits")["NAXIS"] == 3
    assert _no_leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path / "w")) == sorted(
        ["gal_12m_co21_pbcorr.image", "gal_12m_co21_pbcorr_round.image", "gal_12m_co21_singledish.image",
         "gal_12m+tp_co21_pbcorr_round.image", "gal_12m+tp_co21_pbcorr_trimmed.image", "gal_12m+tp_co21_trimmed.pb",
         "gal_12m+tp_co21_pbcorr_trimmed_k.image"])
    again = pp.postprocess_cube(sf.dir / "gal_12m_co21", out_fits, tp_fits=sf.tp_fits, cutoff=0.5,
                                workdir=tmp_path / "w")
    assert again.skipped
    # finished FITS products are enough to skip, even after the intermediates were cleaned
    import shutil

    shutil.rmtree(tmp_path / "w")
    stamp = out_fits.stat().st_mtime_ns
    third = pp.postprocess_cube(sf.dir / "gal_12m_co21", out_fits, tp_fits=sf.tp_fits, cutoff=0.5,
                                workdir=tmp_path / "w")
    assert third.skipped and out_fits.stat().st_mtime_ns == stamp and not (tmp_path / "w").exists()
    assert third.numbers["jytok"] == pytest.approx(d["numbers"]["jytok"])


def test_linear_mosaic_flux_and_continuity(mosaic_parts, ct, tmp_path):
    d, sky, parts = mosaic_parts
    rounds = []
    for i, part in enumerate(parts):
        pp.pbcor_cube(part.image, part.pb, tmp_path / f"p{i}_pbcorr.image", cutoff=0.3, workdir=tmp_path / "w")
        pp.round_beam(tmp_path / f"p{i}_pbcorr.image", tmp_path / f"p{i}_round.image", workdir=tmp_path / "w")
        rounds.append(str(tmp_path / f"p{i}_round.image"))
    out = tmp_path / "gal_12m_co21_pbcorr_round.image"
    r = pp.linear_mosaic(rounds, [str(p.pb) for p in parts], out, workdir=tmp_path / "w")
    info = image_info(out)
    # common beam: sqrt(largest part beam^2 + (2 pix)^2)
    bmax = max(image_info(p).bmaj_max for p in rounds)
    assert r.beam_arcsec[0] == pytest.approx(math.hypot(bmax, 4.0), rel=1e-6)
    # grid spans both parts: 48" + 6" offsets + 2 x 78" fields -> wider than one part
    assert info.shape[0] > 40 and info.shape[1] >= 40
    data, valid = read_cube(out)
    truth = synth.truth_on_grid(ct, out, sky, info.beams[0, 0])
    flux = _flux_in(data, valid, info.beams[0, 0], info.pixel_arcsec, info.channel_width_kms())
    flux_truth = _flux_in(truth, valid, info.beams[0, 0], info.pixel_arcsec, info.channel_width_kms())
    assert flux == pytest.approx(flux_truth, rel=0.05)
    assert r.numbers["mosaic_flux_jykms"] == pytest.approx(flux, rel=1e-6)
    # continuity across the overlap: no step between the parts (column through the middle)
    overlap = np.zeros(valid.shape, bool)
    overlap[info.shape[0] // 2 - 3: info.shape[0] // 2 + 4] = True
    sel = valid & overlap
    assert np.max(np.abs(data[sel] - truth[sel])) < 0.03 * truth.max()
    # weights and mosaic pb
    w, vw = read_cube(r.outputs["weight"])
    assert np.array_equal(vw, valid) and np.all(w[vw] > 0)
    rel, _ = read_cube(r.outputs["pb"])
    assert np.nanmax(rel) == pytest.approx(1.0, rel=0.1)


def test_linear_mosaic_bad_parts(mosaic_parts, tmp_path, ct):
    d, sky, parts = mosaic_parts
    with pytest.raises(ImagingError, match="missing_part.image"):
        pp.linear_mosaic([str(parts[0].image), str(tmp_path / "missing_part.image")],
                         [str(parts[0].pb), str(parts[1].pb)], tmp_path / "m.image", workdir=tmp_path / "w")
    # a part at another velocity
    from phangs_operators.casa import casa_session

    with casa_session(tmp_path / "casa"):
        far = synth.make_interferometer(ct, tmp_path / "far_co21", sky, n=40, v0=900.0, per_plane=False,
                                        missing_fraction=0.0)
    with pytest.raises(CubeError, match="do not overlap in velocity") as err:
        pp.linear_mosaic([str(parts[0].image), str(far.image)], [str(parts[0].pb), str(far.pb)],
                         tmp_path / "m.image", workdir=tmp_path / "w")
    assert "far_co21.image" in str(err.value)
    assert not (tmp_path / "m.image").exists() and _no_leftovers(tmp_path) == []


@pytest.mark.parametrize("before", [False, True], ids=["feather_after_mosaic", "feather_before_mosaic"])
def test_postprocess_mosaic_feathers_as_the_key_says(mosaic_with_tp, ct, tmp_path, before):
    d, sky, roots, tp = mosaic_with_tp
    out_fits = tmp_path / "gal_12m+tp_co21_pbcorr_trimmed_k.fits"
    r = pp.postprocess_mosaic(roots, out_fits, tp_fits=tp, feather_before_mosaic=before, cutoff=0.3,
                              workdir=tmp_path / "w")
    d_res = r.to_dict()
    assert d_res["numbers"]["feather_before_mosaic"] is before
    final = Path(r.outputs["final_image"])
    info = image_info(final)
    data, valid = read_cube(final)
    truth = synth.truth_on_grid(ct, final, sky, info.beams[0, 0])
    args = (info.beams[0, 0], info.pixel_arcsec, info.channel_width_kms())
    ratio = _flux_in(data, valid, *args) / _flux_in(truth, valid, *args)
    assert 0.9 <= ratio <= 1.1
    mosaic_only, mvalid = read_cube(r.outputs["mosaic"]) if not before else (None, None)
    if not before:  # the interferometer-only mosaic misses much of the flux
        assert _flux_in(mosaic_only, mvalid, *args) / _flux_in(truth, mvalid, *args) < 0.7
        assert (tmp_path / "w" / "gal_12m+tp_co21_interf_pbcorr_round.image").is_dir()
    else:
        assert (tmp_path / "w" / "gal_1_12m_co21_feathered_pbcorr_round.image").is_dir()
    h = fits.getheader(out_fits)
    assert h["BUNIT"].strip() == "K" and h["OBJECT"] == "GAL" and h["NAXIS"] == 3
    assert fits.getheader(tmp_path / "gal_12m+tp_co21_trimmed_pb.fits")["NAXIS"] == 3


def test_postprocess_mosaic_without_tp_and_per_part_tp(mosaic_with_tp, tmp_path):
    d, sky, roots, tp = mosaic_with_tp
    r = pp.postprocess_mosaic(roots, tmp_path / "a" / "gal_12m_co21_pbcorr_trimmed_k.fits", workdir=tmp_path / "wa")
    assert r.numbers["feather_before_mosaic"] is None and Path(r.output).is_file()
    r2 = pp.postprocess_mosaic(roots, tmp_path / "b" / "gal_12m+tp_co21_pbcorr_trimmed_k.fits",
                               part_tp_fits=[tp, tp], workdir=tmp_path / "wb")
    assert r2.numbers["feathered_flux_jykms"] > 1.5 * r2.numbers["interf_flux_jykms"]
    with pytest.raises(CubeError, match="missing for"):
        pp.postprocess_mosaic(roots, tmp_path / "c" / "x_pbcorr_trimmed_k.fits", part_tp_fits=[tp, None],
                              feather_before_mosaic=True, workdir=tmp_path / "wc")


def test_feather_area_singledish_vs_phangs_blanking(chain, tmp_path):
    """The default (PHANGS) area blanks the TP outside the footprint; area="singledish" keeps it
    (total TP flux kept); inside the common area both give the same pixels (feather's TP term is
    local)."""
    out, res = chain
    rnd, sd = out / "gal_12m_co21_pbcorr_round.image", out / "gal_12m_co21_singledish.image"
    wide = pp.feather_cube(rnd, sd, tmp_path / "wide.image", area="singledish", workdir=tmp_path / "w")
    n_sd, n_ph = wide.numbers, res["feather"].numbers
    assert n_sd["area"] == "singledish" and n_ph["area"] == "interferometer"
    assert n_sd["feathered_flux_jykms"] == pytest.approx(n_sd["sd_flux_jykms"], rel=0.01)
    assert n_ph["sd_flux_jykms"] == pytest.approx(n_sd["sd_flux_in_interf_area_jykms"], rel=1e-6)
    assert n_sd["sd_flux_jykms"] > n_ph["sd_flux_jykms"]
    assert n_sd["feathered_flux_jykms"] > n_ph["feathered_flux_jykms"]
    assert n_sd["feathered_flux_in_interf_area_jykms"] == pytest.approx(n_ph["feathered_flux_jykms"], rel=1e-4)
    wide_px, v_wide = read_cube(tmp_path / "wide.image")
    narrow, v_narrow = read_cube(out / "gal_12m+tp_co21_pbcorr_round.image")
    _, v_int = read_cube(rnd)
    _, v_tp = read_cube(sd)
    assert np.array_equal(v_wide, v_tp)
    assert np.array_equal(v_narrow, v_int & v_tp)
    np.testing.assert_allclose(wide_px[v_narrow], narrow[v_narrow], rtol=1e-4, atol=1e-6 * np.nanmax(narrow))
    with pytest.raises(CubeError, match="feather area"):
        pp.feather_cube(rnd, sd, tmp_path / "bad.image", area="both", workdir=tmp_path / "w")
    with pytest.raises(CubeError, match="Jy/pixel"):  # a model must be a Jy/pixel sky, checked before any work
        pp.feather_cube(rnd, sd, tmp_path / "bad.image", model_image=rnd, workdir=tmp_path / "w")
    assert not (tmp_path / "bad.image").exists()


def test_feather_three_dimensional_cubes(chain, tmp_path):
    """Cubes without a Stokes axis (as PHANGS has after dropdeg) feather to the same result."""
    from phangs_operators.casa import casa_session, casatasks

    out, _ = chain
    ctk = casatasks()
    with casa_session(tmp_path / "casa"):
        for name in ("gal_12m_co21_pbcorr_round.image", "gal_12m_co21_singledish.image"):
            ctk.imsubimage(imagename=str(out / name), outfile=str(tmp_path / name), dropdeg=True)
    r = pp.feather_cube(tmp_path / "gal_12m_co21_pbcorr_round.image", tmp_path / "gal_12m_co21_singledish.image",
                        tmp_path / "f3.image", workdir=tmp_path / "w")
    info = image_info(tmp_path / "f3.image")
    assert info.axis_types == ["Direction", "Direction", "Spectral"]
    four, v4 = read_cube(out / "gal_12m+tp_co21_pbcorr_round.image")
    three, v3 = read_cube(tmp_path / "f3.image")
    assert np.array_equal(v4[:, :, 0, :], v3)
    np.testing.assert_allclose(three[v3], four[:, :, 0, :][v3], rtol=1e-4, atol=1e-6)
    assert r.numbers["feathered_flux_jykms"] > 0


def test_trim_coarse_beam_edges(ct, single_field, tmp_path):
    from phangs_operators.casa import casa_session

    data, _ = read_cube(single_field.interf.image)
    beams = [(6.0 + 0.01 * ch, 5.0, 0.0) for ch in range(8)]
    beams[0] = (9.0, 5.0, 0.0)
    src = tmp_path / "edge.image"
    with casa_session(tmp_path / "casa"):
        info = image_info(single_field.interf.image)
        with opened(single_field.interf.image) as ia:
            csys = ia.coordsys().torecord()
        synth.write_image(ct, src, np.nan_to_num(data), csys, beams=beams)
    r = pp.trim_coarse_beam_edges(src, single_field.interf.pb, tmp_path / "o.image", tmp_path / "o.pb",
                                  workdir=tmp_path / "w")
    assert (r.numbers["first_channel"], r.numbers["last_channel"], r.numbers["dropped"]) == (1, 7, 1)
    out = image_info(tmp_path / "o.image")
    assert out.nchan == 7 and image_info(tmp_path / "o.pb").nchan == 7
    np.testing.assert_allclose(out.freqs_hz, info.freqs_hz[1:8])
    assert out.bmaj_max == pytest.approx(6.07)


def test_routines_stream_blocks_not_whole_cubes(chain, monkeypatch, tmp_path):
    """With one-channel blocks, line_flux and convert_to_kelvin allocate far less than the cube."""
    import tracemalloc

    from phangs_operators.routines.post import casaimage

    out, _ = chain
    src = out / "gal_12m+tp_co21_pbcorr_round.image"
    info = image_info(src)
    cube_bytes = int(np.prod(info.shape)) * 8  # what one float64 getchunk of the whole cube costs
    expected = pp.line_flux(src)
    monkeypatch.setattr(casaimage, "BLOCK_PIXELS", info.shape[0] * info.shape[1])
    assert len(casaimage.channel_blocks(info)) == info.nchan
    tracemalloc.start()
    flux = pp.line_flux(src)
    pp.convert_to_kelvin(src, tmp_path / "k.image")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert flux == pytest.approx(expected, rel=1e-9)
    assert peak < 0.5 * cube_bytes
