"""Imaging on real CASA with the tiny simulation (issue 5, acceptance: imaging and chunks)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from phangs_operators.errors import ImagingError
from phangs_operators.routines.recipes import CONTINUUM_SCHEDULE, CleanSchedule

from .test_staging import REST_GHZ, line_extent_kms

pytestmark = pytest.mark.casa

SCALES_12M7M = [0, 2.5, 5.0, 10.0]  # demo config 12m+7m clean_scales_arcsec
#: tclean settings under which every channel is cleaned to the threshold in one minor cycle,
#: so chunked == monolithic exactly (CASA_NOTES §7)
#: a shorter loop schedule for tests that only check the wiring (the full one runs in mosaic_cube)
FAST = CleanSchedule(min_loops=1, max_loops=4)
EXACT_CYCLES = {"cycleniter": -1, "cyclefactor": 1e-6, "minpsffraction": 0.0}


def _pixels(path) -> np.ndarray:
    from phangs_operators.casa import casatools

    ia = casatools().image()
    ia.open(str(path))
    try:
        return ia.getchunk()
    finally:
        ia.close()


def _spectral_freqs(path) -> np.ndarray:
    from phangs_operators.casa import casatools

    ia = casatools().image()
    ia.open(str(path))
    try:
        cs = ia.coordsys()
        ax = int(cs.findcoordinate("spectral")["pixel"][0])
        n = ia.shape()[ax]
        pix = np.zeros((len(ia.shape()), n))
        pix[ax] = np.arange(n)
        world = np.array([cs.toworld(list(pix[:, i]), "n")["numeric"][ax] for i in range(n)])
        cs.done()
        return world
    finally:
        ia.close()


@pytest.fixture(scope="module")
def img_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imaging")


def _geometry(ms: Path, tiny, target: str) -> dict:
    """``image_geometry`` of a staged MS, phase centre at the simulated ``target``'s position."""
    from phangs_operators.routines import imaging

    t = tiny["manifest"]["targets"][target]
    return imaging.image_geometry(ms, phasecenter=f"J2000 {t['ra']} {t['dec']}")


@pytest.fixture(scope="module")
def mosaic_geometry(staged_mosaic, tiny):
    return _geometry(staged_mosaic.out_ms, tiny, "ngc9999")


@pytest.fixture(scope="module")
def single_geometry(staged_single, tiny):
    return _geometry(staged_single.out_ms, tiny, "ngc9997")


@pytest.fixture(scope="module")
def mosaic_cube(staged_mosaic, mosaic_geometry, cube_recipe, img_dir):
    """The monolithic PHANGS recipe on the 12m+7m mosaic (dirty -> multiscale -> singlescale)."""
    from phangs_operators.routines import imaging

    return imaging.clean_cube(
        staged_mosaic.out_ms, img_dir / "ngc9999_12m+7m_co21", geometry=mosaic_geometry, tclean_kw=cube_recipe,
        workdir=img_dir / "work", restfreq_ghz=REST_GHZ, scales_arcsec=SCALES_12M7M,
    )


def test_geometry(mosaic_geometry, single_geometry):
    g = mosaic_geometry
    # tiny 12m+7m (19 + 7 pointings): cell <= beam / 5, image covers 1.2 x the pointing extent
    assert g["cell_arcsec"] <= g["beam_estimate_arcsec"] / 5.0
    assert g["cell_arcsec"] > g["beam_estimate_arcsec"] / 10.0
    assert all(n * g["cell_arcsec"] > 1.2 * e for n, e in zip(g["imsize"], g["extent_arcsec"], strict=True))
    assert g["dish_m"] == 7.0 and g["nfields"] == 25  # 19 12m + 7 7m pointings, the centre shared
    assert g["phasecenter"] == "J2000 12h00m00.0s -30d00m00.0s"
    s = single_geometry
    assert s["dish_m"] == 12.0 and s["nfields"] == 1
    assert s["imsize"][0] * s["cell_arcsec"] < g["imsize"][0] * g["cell_arcsec"]


def test_clean_cube_matches_the_simulation(mosaic_cube, mosaic_geometry, staged_mosaic, tiny):
    from phangs_operators.routines import imaging
    from phangs_operators.routines.recipes import CleanSchedule

    res = mosaic_cube
    root = res.root
    for ext in (".image", ".residual", ".psf", ".pb", ".model", ".mask", "_dirty.image", "_multiscale.image",
                "_singlescale.image", "_record.json"):
        assert Path(root + ext).exists(), ext
    assert not [p for p in Path(root).parent.iterdir() if p.name.startswith(".tmp_")]
    # grid: every channel of the staged MS, same frequencies
    assert res.nchan == staged_mosaic.nchan == 18
    ms_freqs = 230.538e9 * (1 - imaging_velocities(staged_mosaic) / 299792.458)
    assert np.allclose(_spectral_freqs(root + ".image"), ms_freqs, rtol=1e-9, atol=1.0)
    # beam: recorded 3.62" x 2.87" (estimate 0.574 lambda/L80 = 3.05")
    g = mosaic_geometry
    assert 0.6 * g["beam_estimate_arcsec"] < res.beam_minor_arcsec <= res.beam_major_arcsec
    assert res.beam_major_arcsec < 1.6 * g["beam_estimate_arcsec"]
    assert res.beam_minor_arcsec / g["cell_arcsec"] >= 4.0
    # flux: clean components x channel width vs the model; the interferometer alone misses part
    # of the extended emission (recorded 98.5 of 108.4 Jy km/s in the clean components)
    flux = res.model_flux_jy * staged_mosaic.chan_width_kms
    model = tiny["manifest"]["galaxies"]["ngc9999"]["line_flux_jykms"]
    assert 0.5 * model < flux < 0.97 * model
    # the line sits at the right velocities: model flux per channel peaks inside the line extent
    model_cube = _pixels(root + ".model")
    per_chan = model_cube.sum(axis=(0, 1, 2))
    v = imaging_velocities(staged_mosaic)
    lo, hi = line_extent_kms(tiny["manifest"]["galaxies"]["ngc9999"])
    inside = (v > lo - 15) & (v < hi + 15)
    assert per_chan[inside].sum() > 0.95 * per_chan.sum()
    centroid = float((per_chan * v).sum() / per_chan.sum())
    assert abs(centroid - 500.0) < 25.0
    # QA record: loops with the PHANGS schedule
    record = json.loads(Path(res.record_json).read_text())
    ms_loops, ss_loops = record["stages"]["multiscale"], record["stages"]["singlescale"]
    sched = CleanSchedule()
    assert 3 <= len(ms_loops) <= 20 and 3 <= len(ss_loops) <= 20
    assert [r["niter"] for r in ms_loops] == [sched.niter(18, k) for k in range(len(ms_loops))]
    assert [r["cycleniter"] for r in ss_loops] == [sched.cycleniter(k) for k in range(len(ss_loops))]
    assert ms_loops[-1]["stop"] and ms_loops[-1]["reason"] in ("converged", "negative_flux", "max_loops")
    assert all(r["stopcode"] is not None for r in ms_loops + ss_loops)
    assert ms_loops[0]["threshold_jy"] == pytest.approx(4 * ms_loops[0]["noise_jy"])
    assert ss_loops[0]["threshold_jy"] == pytest.approx(1 * ss_loops[0]["noise_jy"])
    assert ss_loops[-1]["residual_rms_jy"] < res.noise_jy
    assert res.singlescale_mask_pixels > 0
    assert json.loads(json.dumps(res.to_dict()))["root"] == root
    # noise of the dirty cube is the pipeline's number
    assert res.noise_jy == pytest.approx(imaging.measure_noise(root + "_dirty.residual"))


def imaging_velocities(staged):
    from phangs_operators.routines import vis

    return vis.read_velocity_axis(staged.out_ms, REST_GHZ)


def test_clean_rerun_is_idempotent(mosaic_cube, staged_mosaic, mosaic_geometry, cube_recipe, img_dir):
    from phangs_operators.routines import imaging

    stamp = (Path(mosaic_cube.root + ".image") / "table.dat").stat().st_mtime_ns
    again = imaging.clean_cube(
        staged_mosaic.out_ms, mosaic_cube.root, geometry=mosaic_geometry, tclean_kw=cube_recipe,
        workdir=img_dir / "work", restfreq_ghz=REST_GHZ, scales_arcsec=SCALES_12M7M,
    )
    assert again.skipped
    assert (Path(mosaic_cube.root + ".image") / "table.dat").stat().st_mtime_ns == stamp
    assert again.stages["multiscale"] == json.loads(json.dumps(mosaic_cube.stages["multiscale"]))


def test_align_clean_mask_round_trip(mosaic_cube, img_dir, tmp_path):
    from phangs_operators.casa import casa_session, casatasks
    from phangs_operators.routines import imaging

    fits = tmp_path / "mask.fits"
    with casa_session(tmp_path / "work"):
        casatasks().exportfits(imagename=mosaic_cube.root + ".mask", fitsimage=str(fits), velocity=True,
                               dropstokes=True, dropdeg=True, bitpix=-32)
    out = imaging.align_clean_mask(fits, mosaic_cube.root + "_dirty.image", tmp_path / "aligned.mask",
                                   workdir=tmp_path)
    original = _pixels(mosaic_cube.root + ".mask") > 0.5
    aligned = _pixels(out) > 0.5
    assert aligned.shape == original.shape
    assert original.sum() > 0
    assert (aligned == original).mean() > 0.999
    # 2-D template: the 3-D mask is collapsed with max
    with pytest.raises(ImagingError, match="not found"):
        imaging.align_clean_mask(tmp_path / "none.fits", mosaic_cube.root + ".image", tmp_path / "x.mask")


def _chunked_vs_monolithic(ms, geometry, tclean_kw, out, threshold_jy, chunk_size, workdir):
    from phangs_operators.routines import imaging
    from phangs_operators.routines.vis import read_nchan

    mono = imaging.clean_cube(ms, out / "mono", geometry=geometry, tclean_kw=tclean_kw, workdir=workdir,
                              restfreq_ghz=REST_GHZ, threshold_jy=threshold_jy, per_plane_beam=True,
                              scales_arcsec=SCALES_12M7M)
    plan = imaging.plan_chunks(read_nchan(ms), chunk_size)
    roots = []
    for c in plan:
        root = imaging.chunk_root(out / "cube", c["start"], c["nchan"])
        r = imaging.image_chunk(ms, root, start=c["start"], nchan=c["nchan"], geometry=geometry,
                                tclean_kw=tclean_kw, threshold_jy=threshold_jy, workdir=workdir,
                                restfreq_ghz=REST_GHZ, keep_backups=True, scales_arcsec=SCALES_12M7M)
        assert r.nchan == c["nchan"] and r.start == c["start"]
        roots.append(root)
    gathered = imaging.gather_chunks(roots, out / "gathered")
    dirty = imaging.gather_chunks([r + "_dirty" for r in roots], out / "gathered_dirty")
    assert gathered.nchan == dirty.nchan == mono.nchan
    return mono, gathered, dirty, plan, roots


def _assert_same(a_path, b_path, what, tol=0.0):
    a, b = _pixels(a_path), _pixels(b_path)
    assert a.shape == b.shape, what
    if tol == 0.0:
        assert np.array_equal(a, b), f"{what} differs by {np.nanmax(np.abs(a - b))}"
    else:
        assert np.nanmax(np.abs(a - b)) < tol, f"{what} differs by {np.nanmax(np.abs(a - b))} >= {tol}"


@pytest.mark.parametrize("kind", ["single", "mosaic"])
def test_chunked_equals_monolithic_exactly(kind, request, cube_recipe, img_dir):
    """Hogbom to 4 (single) / 2 (mosaic) sigma of the whole-cube noise with one minor cycle per
    channel: bit-identical cubes (single), 0.5 sigma (mosaic)."""
    from phangs_operators.routines import imaging

    staged = request.getfixturevalue("staged_single" if kind == "single" else "staged_mosaic")
    geometry = request.getfixturevalue(f"{kind}_geometry")
    kw = dict(cube_recipe, deconvolver="hogbom", **EXACT_CYCLES)
    if kind == "single":
        kw["gridder"] = "standard"
    out = img_dir / f"eq_{kind}"
    out.mkdir()
    # the thresholds come from the whole cube's noise, measured on a monolithic dirty cube
    if kind == "single":
        whole = imaging.make_dirty_cube(staged.out_ms, out / "mono_dirty_ref", geometry=geometry, tclean_kw=kw,
                                        workdir=img_dir / "work", restfreq_ghz=REST_GHZ)
        assert whole.noise_jy > 0 and not whole.stages
        noise = whole.noise_jy
    else:  # the dirty residual of the monolithic PHANGS run (same dirty imaging parameters)
        noise = request.getfixturevalue("mosaic_cube").noise_jy
    # single pointing: 4 sigma - Hogbom without major cycles on the sparse 12-antenna snapshot
    # diverges on the bright disk when pushed to 2 sigma (then the two runs differ chaotically)
    threshold = (4.0 if kind == "single" else 2.0) * noise
    chunk_size = 7 if kind == "single" else 10
    mono, gathered, gdirty, plan, roots = _chunked_vs_monolithic(
        staged.out_ms, geometry, kw, out, threshold, chunk_size=chunk_size, workdir=img_dir / "work"
    )
    assert [c["nchan"] for c in plan] == ([7, 7, 4] if kind == "single" else [10, 8])
    for ext in (".image", ".psf", ".pb", ".residual"):
        _assert_same(out / f"mono_dirty{ext}", out / f"gathered_dirty{ext}", f"dirty {ext}")
    if kind == "single":
        _assert_same(out / "mono_dirty_ref.image", out / "gathered_dirty.image", "make_dirty_cube .image")
    for ext in (".psf", ".pb"):
        _assert_same(out / f"mono{ext}", out / f"gathered{ext}", f"clean {ext}")
    if kind == "single":
        for ext in (".image", ".model", ".residual"):
            _assert_same(out / f"mono{ext}", out / f"gathered{ext}", f"clean {ext}")
    else:
        # mosaic (gridder='mosaic', flatnoise): recorded 635 vs 636 hogbom components, one
        # component more in the last channel of the monolithic run -> 17 of 18 channels
        # identical, max |delta image| 0.00073 Jy/beam = 0.07 sigma
        _assert_same(out / "mono.image", out / "gathered.image", "clean .image", tol=0.5 * noise)
        a, b = _pixels(out / "mono.image"), _pixels(out / "gathered.image")
        same_planes = int((np.abs(a - b).max(axis=(0, 1, 2)) == 0).sum())
        assert same_planes >= mono.nchan - 2
    assert np.abs(_pixels(out / "mono.model")).sum() > 0  # something was cleaned
    assert Path(str(out / "gathered.mask")).is_dir()
    # per-plane beams survive the gathering
    majors = imaging.read_beam(out / "gathered.image")["per_plane_major"]
    assert len(majors) == mono.nchan
    assert majors == imaging.read_beam(out / "mono.image")["per_plane_major"]
    # the pooled noise of the dirty chunks is the whole cube's noise
    th = imaging.chunks_threshold([r + "_dirty" for r in roots], nsigma=threshold / noise)
    assert th["noise_jy"] == pytest.approx(noise, rel=1e-9)
    assert th["threshold_jy"] == pytest.approx(threshold, rel=1e-9)


def test_chunked_within_half_sigma_with_recipe_cycles(staged_single, single_geometry, cube_recipe, img_dir):
    """Multiscale with the recipe's cycle control: chunks differ from one cube, by < 0.5 sigma."""
    from phangs_operators.routines import imaging

    kw = dict(cube_recipe, gridder="standard")
    out = img_dir / "eq_recipe_cycles"
    out.mkdir()
    whole = imaging.make_dirty_cube(staged_single.out_ms, out / "whole_dirty", geometry=single_geometry,
                                    tclean_kw=kw, workdir=img_dir / "work", restfreq_ghz=REST_GHZ)
    mono, gathered, _, _, _ = _chunked_vs_monolithic(
        staged_single.out_ms, single_geometry, kw, out, 2.0 * whole.noise_jy, chunk_size=6,
        workdir=img_dir / "work",
    )
    for ext in (".psf", ".pb"):
        _assert_same(out / f"mono{ext}", out / f"gathered{ext}", ext)
    # recorded (tiny single field, multiscale to 2 sigma): max |delta image| well below 0.5 sigma
    _assert_same(out / "mono.image", out / "gathered.image", "image", tol=0.5 * whole.noise_jy)


def test_image_chunk_recipe_mode_uses_whole_cube_noise(staged_single, single_geometry, cube_recipe, img_dir):
    from phangs_operators.routines import imaging

    noise = 0.0123
    r = imaging.image_chunk(
        staged_single.out_ms, imaging.chunk_root(img_dir / "recipe_chunk", 6, 6), start=6, nchan=6,
        geometry=single_geometry, tclean_kw=dict(cube_recipe, gridder="standard"), noise_jy=noise,
        workdir=img_dir / "work", restfreq_ghz=REST_GHZ, scales_arcsec=[0, 2.5, 5.0], schedule=FAST,
    )
    assert r.nchan == 6 and r.start == 6 and r.noise_jy == noise
    ms_loops, ss_loops = r.stages["multiscale"], r.stages["singlescale"]
    assert ms_loops and all(rec["threshold_jy"] == pytest.approx(4 * noise) for rec in ms_loops)
    assert all(rec["threshold_jy"] == pytest.approx(noise) for rec in ss_loops)
    assert [rec["niter"] for rec in ms_loops][:2] == [60, 120][: len(ms_loops)]  # 10 x 6 channels x 2^k
    assert r.beam_major_arcsec > 0 and Path(r.record_json).exists()
    assert not Path(r.root + "_dirty.image").exists()  # no backups by default for chunks


def test_clean_continuum(tiny, stage_dir, img_dir):
    from phangs_operators.routines import imaging, vis

    t = tiny["manifest"]["targets"]["ngc9997"]
    cont = vis.stage_continuum_product(
        {"12m": [tiny["ms"]["ngc9997_12m_single.ms"]]}, stage_dir / "ngc9997_12m_cont.ms",
        vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"], lines_to_flag=["co21"], workdir=stage_dir / "work",
    )
    geometry = _geometry(cont.out_ms, tiny, "ngc9997")
    res = imaging.clean_continuum(
        cont.out_ms, img_dir / "ngc9997_12m_cont", geometry=geometry,
        tclean_kw={"gridder": "standard", "pblimit": 0.2}, workdir=img_dir / "work", scales_arcsec=[0, 2.5],
        schedule=replace(CONTINUUM_SCHEDULE, min_loops=1, max_loops=4),
    )
    assert Path(res.root + ".image.tt0").is_dir() and Path(res.root + ".model.tt0").is_dir()
    assert res.stages["multiscale"] and res.stages["multiscale"][0]["deconvolver"] == "mtmfs"
    # the 20 mJy nucleus: peak of the restored continuum image (recorded ~0.02 Jy/beam)
    peak = float(np.nanmax(_pixels(res.root + ".image.tt0")))
    assert 0.012 < peak < 0.03
    assert peak > 4 * res.noise_jy


def test_imaging_bad_input(staged_single, single_geometry, cube_recipe, img_dir, tmp_path):
    from phangs_operators.routines import imaging

    with pytest.raises(ImagingError, match="nope.ms"):
        imaging.make_dirty_cube(tmp_path / "nope.ms", tmp_path / "x", geometry=single_geometry,
                                tclean_kw=cube_recipe, workdir=tmp_path)
    with pytest.raises(ImagingError, match="outside the 18 channels"):
        imaging.image_chunk(staged_single.out_ms, tmp_path / "x", start=15, nchan=5, geometry=single_geometry,
                            tclean_kw=cube_recipe, workdir=tmp_path)
    with pytest.raises(ImagingError, match="missing chunk products"):
        imaging.gather_chunks([tmp_path / "a", tmp_path / "b"], tmp_path / "g")
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob("g.*"))


def test_chunk_with_whole_cube_mask(mosaic_cube, staged_mosaic, mosaic_geometry, cube_recipe, img_dir):
    """A whole-cube clean mask is cut onto the chunk's channels; nothing is cleaned outside it."""
    from phangs_operators.routines import imaging

    root = imaging.chunk_root(img_dir / "masked_chunk", 6, 6)
    r = imaging.image_chunk(
        staged_mosaic.out_ms, root, start=6, nchan=6, geometry=mosaic_geometry,
        tclean_kw=dict(cube_recipe, deconvolver="hogbom"), threshold_jy=2 * mosaic_cube.noise_jy,
        mask=mosaic_cube.root + ".mask", workdir=img_dir / "work", restfreq_ghz=REST_GHZ,
    )
    whole = _pixels(mosaic_cube.root + ".mask")[..., 6:12] > 0.5
    chunk_mask = _pixels(root + ".mask") > 0.5
    assert whole.sum() > 0
    assert np.array_equal(chunk_mask, whole)
    model = _pixels(root + ".model")
    assert np.abs(model).sum() > 0 and np.all(model[~chunk_mask] == 0)
    assert r.stages["clean"][0]["iterdone"] > 0
