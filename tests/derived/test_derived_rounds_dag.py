"""Round 2 (mom1wprior) and round 3 (velocity field, flat masks, flat moments) as the target DAG
runs them: the operators of the derived stage executed one after the other on a synthetic cube,
and the velocity-field routine they use."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.errors import CubeError
from phangs_operators.operators.derived import (
    BroadMaskOperator,
    ConvolveCubeOperator,
    FlatProductsOperator,
    Mom1WithPriorOperator,
    MomentsOperator,
    NoiseCubeOperator,
    StrictMaskOperator,
)
from phangs_operators.operators.publish import collect_files, describe
from phangs_operators.routines.cubes import PHANGS_MOMENTS
from phangs_operators.routines.cubes.synthetic import synthetic_cube, synthetic_header
from phangs_operators.routines.cubes.vfield import combine_vfields, make_vfield

SHAPE = (40, 32, 32)
NAMES = {"target": "gal", "config": "7m", "product": "co21"}


def _mdef(name):
    d = PHANGS_MOMENTS[name]
    return {"name": d.name, "algorithm": d.algorithm, "mask": d.mask, "ext": d.ext, "ext_error": d.ext_error,
            "round": d.round, "kwargs": dict(d.kwargs), "maps_to_pass": list(d.maps_to_pass),
            "other_exts": dict(d.other_exts)}


def _map_header(shape, cdelt_deg=None):
    hdr = synthetic_header((1,) + shape)
    for k in ("CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3", "NAXIS3", "SPECSYS"):
        hdr.remove(k, ignore_missing=True)
    hdr["NAXIS"] = 2
    hdr["BUNIT"] = "km/s"
    if cdelt_deg is not None:
        hdr["CDELT1"], hdr["CDELT2"] = -cdelt_deg, cdelt_deg
        hdr["CRPIX1"], hdr["CRPIX2"] = shape[1] / 2 + 0.5, shape[0] / 2 + 0.5
    return hdr


def _model_vfield():
    xx = np.arange(SHAPE[2])[None, :] * np.ones((SHAPE[1], 1))
    return (1000.0 + 3.0 * 2 * (xx - SHAPE[2] // 2)).astype(np.float32)


def _kw(tmp, **extra):
    return {"names": NAMES, "out_dir": str(tmp), "workdir": str(tmp), **extra}


@pytest.fixture(scope="module")
def round1(tmp_path_factory):
    """Round 1 of config 7m at native and 4as through the DAG's operators."""
    tmp = tmp_path_factory.mktemp("rounds_dag")
    data, hdr = synthetic_cube(SHAPE, disk_sigma_pix=6.0, noise_k=0.05)
    cube = tmp / "gal_7m_co21_pbcorr_trimmed_k.fits"
    fits.PrimaryHDU(data, hdr).writeto(cube)
    ctx = {"params": {}}
    records = []
    for i, res in enumerate(({"res_tag": ""}, {"res_tag": "4as", "arcsec": 4.0})):
        conv = ConvolveCubeOperator(task_id=f"convolve_{i}", cube=str(cube), **res, **_kw(tmp)).execute(ctx)
        noise = NoiseCubeOperator(task_id=f"noise_{i}", cube=conv, **_kw(tmp)).execute(ctx)
        records.append(StrictMaskOperator(task_id=f"strict_{i}", cube=noise, **_kw(tmp)).execute(ctx))
    broad = BroadMaskOperator(task_id="broad", strict_masks=[records], **_kw(tmp)).execute(ctx)
    r1 = [_mdef(n) for n in ("strictmom0", "strictmom1", "broadmom0", "broadmom1")]
    moments = [MomentsOperator(task_id=f"moments_{i}", cube=rec, broad_mask=broad, moments=r1,
                               **_kw(tmp)).execute(ctx) for i, rec in enumerate(records)]
    # the prior map of the moment key lives next to the products, under another config's name
    prior = tmp / "gal_7m+tp_co21_15as_strict_mom1.fits"
    fits.PrimaryHDU(_model_vfield(), _map_header(SHAPE[1:])).writeto(prior)
    return tmp, records, broad, moments, prior


@pytest.fixture(scope="module")
def round2(round1):
    tmp, _, _, moments, prior = round1
    ops, results = [], []
    for i, rec in enumerate(moments):
        op = Mom1WithPriorOperator(task_id=f"moments_round2_{i}", round1=rec, moments=[_mdef("mom1wprior")],
                                   vfield_prior=str(prior), **_kw(tmp))
        ops.append(op)
        results.append(op.execute({"params": {}}))
    return ops, results


def test_round2_operator_writes_the_hybrid_per_resolution(round1, round2):
    tmp, _, _, _, prior = round1
    ops, results = round2
    assert [r["res_tag"] for r in results] == ["", "4as"]
    for res, r in zip(("", "_4as"), results, strict=True):
        hyb_path = tmp / f"gal_7m_co21{res}_mom1wprior.fits"
        assert r["maps"] == [str(hyb_path), str(tmp / f"gal_7m_co21{res}_emom1wprior.fits")]
        assert r["vfield_prior"] == str(prior)
        hyb = fits.getdata(hyb_path)
        strict = fits.getdata(tmp / f"gal_7m_co21{res}_strict_mom1.fits")
        broad = fits.getdata(tmp / f"gal_7m_co21{res}_broad_mom1.fits")
        both = np.isfinite(strict)
        assert both.sum() > 20
        np.testing.assert_array_equal(hyb[both], strict[both])
        filled = np.isfinite(hyb) & ~both
        assert filled.sum() == r["moments"]["mom1wprior"]["n_filled_from_broad"]
        if not res:  # at 4" the strict mask already is the broad mask (the union of both)
            assert filled.sum() > 20
        np.testing.assert_array_equal(hyb[filled], broad[filled])
        assert np.all(np.abs(hyb[filled] - _model_vfield()[filled]) < 20.0)  # the prior test
        err = fits.getdata(tmp / f"gal_7m_co21{res}_emom1wprior.fits")
        assert np.all(np.isfinite(err[np.isfinite(hyb)]))
        assert fits.getheader(hyb_path)["BTYPE"] == "Moment1"
    # one QA record per mapped resolution; a re-run returns it without recomputing
    qa = json.loads(ops[1].qa_path({}).read_text())
    assert qa["stage"] == "derived" and qa["result"]["res_tag"] == "4as"
    mtime = (tmp / "gal_7m_co21_4as_mom1wprior.fits").stat().st_mtime_ns
    assert ops[1].execute({"params": {}}) == results[1]
    assert (tmp / "gal_7m_co21_4as_mom1wprior.fits").stat().st_mtime_ns == mtime


def test_round2_without_the_prior_map_fills_from_broad_alone(round1, tmp_path):
    tmp, _, _, moments, _ = round1
    op = Mom1WithPriorOperator(task_id="r2_noprior", round1=moments[0], moments=[_mdef("mom1wprior")],
                               vfield_prior=str(tmp / "gal_7m+tp_co21_15as_strict_mom1_MISSING.fits"),
                               names=NAMES, out_dir=str(tmp_path), workdir=str(tmp_path))
    # the round-1 maps are read from out_dir: link them
    for ext in ("strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1", "broad_mom0", "broad_emom0"):
        (tmp_path / f"gal_7m_co21_{ext}.fits").symlink_to(tmp / f"gal_7m_co21_{ext}.fits")
    r = op.execute({"params": {}})
    assert r["vfield_prior"] is None
    with_prior = fits.getdata(tmp / "gal_7m_co21_mom1wprior.fits")
    without = fits.getdata(tmp_path / "gal_7m_co21_mom1wprior.fits")
    # without the prior test at least as many pixels are filled
    assert np.isfinite(without).sum() >= np.isfinite(with_prior).sum()
    assert r["moments"]["mom1wprior"]["n_filled_from_broad"] >= 1


def test_round2_skips_a_skipped_resolution_and_missing_inputs(tmp_path):
    op = Mom1WithPriorOperator(task_id="r2_skip", round1={"res_tag": "30as", "maps": [], "skipped": True},
                               moments=[_mdef("mom1wprior")], vfield_prior=None, **_kw(tmp_path))
    assert op.outputs({}) == []
    assert op.execute({"params": {}})["skipped"] is True
    op = Mom1WithPriorOperator(task_id="r2_missing", round1={"res_tag": "", "maps": []},
                               moments=[_mdef("mom1wprior")], vfield_prior=None, **_kw(tmp_path))
    r = op.execute({"params": {}})
    assert r["maps"] == [] and "round-1 maps missing" in r["skipped_moments"]["mom1wprior"]


@pytest.fixture(scope="module")
def flat(round1, round2):
    tmp, records, broad, _, _ = round1
    vfields = [str(tmp / "gal_7m_co21_mom1wprior.fits"), str(tmp / "gal_7m_co21_4as_mom1wprior.fits"),
               str(tmp / "gal_7m+tp_co21_mom1wprior.fits")]  # a linked config that made nothing
    op = FlatProductsOperator(task_id="flat_products", resolutions=records, broad_mask=broad, vfields=vfields,
                              moments=[_mdef("flatstrictmom0"), _mdef("flatbroadmom0")],
                              flatstrictmask_kw={"window": "30km/s"}, flatbroadmask_kw={"window": "50.0km/s"},
                              **_kw(tmp))
    return op, op.execute({"params": {}})


def test_flat_products_build_the_velocity_field_hierarchically(round1, flat):
    tmp = round1[0]
    _, result = flat
    vpath = tmp / "gal_7m_co21_vfield.fits"
    assert result["files"] == [str(vpath)]
    vf = fits.getdata(vpath)
    native = fits.getdata(tmp / "gal_7m_co21_mom1wprior.fits")
    coarse = fits.getdata(tmp / "gal_7m_co21_4as_mom1wprior.fits")
    keep = np.isfinite(native)
    np.testing.assert_allclose(vf[keep], native[keep], rtol=1e-6)
    fill = ~keep & np.isfinite(coarse)
    assert fill.sum() > 0  # the 4" map reaches further
    np.testing.assert_allclose(vf[fill], coarse[fill], rtol=1e-6)
    assert np.isfinite(vf).sum() == (keep | fill).sum()
    assert result["vfield"]["filled_from"] == {"gal_7m_co21_mom1wprior.fits": int(keep.sum()),
                                               "gal_7m_co21_4as_mom1wprior.fits": int(fill.sum())}
    assert fits.getheader(vpath)["BUNIT"] == "km / s"


def test_flat_masks_and_flat_moments_per_resolution(round1, flat):
    tmp = round1[0]
    _, result = flat
    assert [r["res_tag"] for r in result["maps"]] == ["", "4as"]
    for res in ("", "_4as"):
        fs = fits.getdata(tmp / f"gal_7m_co21{res}_flatstrictmask.fits").astype(bool)
        fb = fits.getdata(tmp / f"gal_7m_co21{res}_flatbroadmask.fits").astype(bool)
        strict = fits.getdata(tmp / f"gal_7m_co21{res}_strictmask.fits").astype(bool)
        broad = fits.getdata(tmp / "gal_7m_co21_broadmask.fits").astype(bool)
        assert (fs | strict).sum() == fs.sum() and (fb | broad).sum() == fb.sum()
        # 30 km/s window (2.5 km/s channels): at most 13 channels beyond the strict mask
        assert 0 < (fs & ~strict).sum(axis=0).max() <= 13
        assert fb.sum(axis=0).max() >= 20  # the 50 km/s window: 20-21 channels
        assert (fs & ~strict).sum() < (fb & ~broad).sum() + (broad & ~strict).sum()
        for kind in ("flatstrict", "flatbroad"):
            m0 = fits.getdata(tmp / f"gal_7m_co21{res}_{kind}_mom0.fits")
            e0 = fits.getdata(tmp / f"gal_7m_co21{res}_{kind}_emom0.fits")
            mask = fs if kind == "flatstrict" else fb
            has = mask.any(axis=0)
            assert np.all(np.isfinite(m0[has])) and np.all(np.isfinite(e0[has]))
            assert np.nansum(m0) > 0
            assert fits.getheader(tmp / f"gal_7m_co21{res}_{kind}_mom0.fits")["BTYPE"] == "Moment0"


def test_round2_and_round3_outputs_are_published_with_kinds_and_resolutions(round1, round2, flat):
    tmp = round1[0]
    files = dict(collect_files([round2[1], flat[1]]))
    assert files[str(tmp / "gal_7m_co21_4as_mom1wprior.fits")] == "4as"
    assert files[str(tmp / "gal_7m_co21_4as_flatbroad_emom0.fits")] == "4as"
    assert files[str(tmp / "gal_7m_co21_vfield.fits")] == ""
    assert files[str(tmp / "gal_7m_co21_flatstrictmask.fits")] == ""
    kinds = {describe(p, "gal", "7m", "co21", res) for p, res in files.items()}
    assert {("mom1wprior", "moment"), ("emom1wprior", "emoment"), ("vfield", "vfield"),
            ("flatstrictmask", "mask"), ("flatbroad_mom0", "moment"), ("flatstrict_emom0", "emoment")} <= kinds


def test_flat_products_without_any_mom1wprior_map_is_a_logged_skip(tmp_path):
    op = FlatProductsOperator(task_id="flat_none", resolutions=[], broad_mask={"broadmask": "x"},
                              vfields=[str(tmp_path / "nope_mom1wprior.fits")],
                              moments=[_mdef("flatstrictmom0")], **_kw(tmp_path))
    r = op.execute({"params": {}})
    assert r["skipped"] is True and not (tmp_path / "gal_7m_co21_vfield.fits").exists()


# -- the velocity-field routine ---------------------------------------------------------------

def test_combine_vfields_keeps_earlier_values_and_zero_velocities():
    a = np.array([[np.nan, 0.0], [5.0, np.nan]])
    b = np.array([[1.0, 9.0], [9.0, np.nan]])
    c = np.array([[2.0, 9.0], [9.0, 3.0]])
    out, src = combine_vfields(a, [b, c])
    np.testing.assert_array_equal(out, [[1.0, 0.0], [5.0, 3.0]])  # 0 km/s is a velocity, kept
    np.testing.assert_array_equal(src, [[1, 0], [0, 2]])
    out, src = combine_vfields(np.full((2, 2), np.nan), [])
    assert np.isnan(out).all() and (src == -1).all()
    with pytest.raises(CubeError, match="shape"):
        combine_vfields(a, [np.zeros((3, 3))])


def test_make_vfield_reprojects_coarser_maps_onto_the_template(tmp_path):
    shape = (16, 16)
    tmpl = np.full(shape, np.nan, dtype=np.float32)
    tmpl[4:12, 4:12] = 1000.0
    fits.PrimaryHDU(tmpl, _map_header(shape)).writeto(tmp_path / "t.fits")
    hdr = synthetic_header((1, *shape))
    pix = abs(hdr["CDELT1"])
    coarse_hdr = _map_header((8, 8), cdelt_deg=2 * pix)
    coarse_hdr["BUNIT"] = "m/s"
    fits.PrimaryHDU(np.full((8, 8), 950e3, dtype=np.float32), coarse_hdr).writeto(tmp_path / "c.fits")
    res = make_vfield(tmp_path / "t.fits", [tmp_path / "t.fits", tmp_path / "c.fits"], tmp_path / "v.fits")
    out = fits.getdata(tmp_path / "v.fits")
    np.testing.assert_array_equal(out[4:12, 4:12], 1000.0)
    outside = np.isfinite(out) & (out != 1000.0)
    assert outside.sum() > 100
    np.testing.assert_allclose(out[outside], 950.0, rtol=1e-6)  # m/s converted to km/s
    assert res.inputs == [str(tmp_path / "t.fits"), str(tmp_path / "c.fits")]  # the repeated template is ignored
    with pytest.raises(CubeError, match="no such file"):
        make_vfield(tmp_path / "missing.fits", [], tmp_path / "v2.fits")
