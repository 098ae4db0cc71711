"""Benchmark of the post-processing stage against the bare CASA task sequence.

Both run on the same synthetic bench-sized inputs (default 360 x 360 x 72 like the ``bench``
preset's 12m+7m cube: flat-noise cube with per-plane beams and 70 % of the short-spacing flux
missing, its primary beam, and a 28.5" total-power FITS cube in K):

* ``baseline``: the CASA_NOTES section 8 recipe as straight task calls (impbcor, imsmooth,
  importfits + adddegaxes + imtrans, imregrid, K -> Jy/beam with immath, feather, imsubimage
  dropdeg, immath to K, exportfits), no checks, no bookkeeping;
* ``ours``: :func:`phangs_operators.routines.postprocess.postprocess_cube` (the same steps plus
  masks, trimming, validation, three FITS files, flux bookkeeping, atomic outputs).

Each runs in its own process; wall time and peak RSS (``ru_maxrss`` of that process) are
reported with the ratio ours / baseline.

Usage::

    python benchmarks/bench_postprocess.py                 # 360x360x72
    python benchmarks/bench_postprocess.py --size 128x128x24
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))


def _build(d: Path, n: int, nchan: int) -> None:
    from phangs_operators.casa import casa_session, casatools
    from tests.postprocess import synth

    ct = casatools()
    sky = synth.Sky(components=[(0.0, 0.0, 30.0, 60.0), (20.0, -15.0, 2.0, 4.0), (-25.0, 10.0, 1.5, 6.0)],
                    v_sigma_kms=40.0)
    with casa_session(d / "casa"):
        synth.make_interferometer(ct, d / "gal_12m+7m_co21", sky, n=n, nchan=nchan, pixel_as=0.5, bmaj=1.57,
                                  bmin=1.38, pb_fwhm_as=60.0, missing_sigma_as=8.0, v0=300.0 - 1.27 * nchan,
                                  noise=0.003)
    synth.write_tp_fits(d / "gal_tp_co21.fits", sky, n=80, pixel_as=4.0, nchan=nchan + 8,
                        v0=300.0 - 1.27 * nchan - 10.0)


def _baseline(d: Path) -> dict:
    from phangs_operators.casa import casa_session, casatasks, casatools
    from phangs_operators.routines.post import maths

    ct, ctk = casatools(), casatasks()
    w = d / "baseline"
    with casa_session(w):
        t0 = time.perf_counter()
        img, pb = str(d / "gal_12m+7m_co21.image"), str(d / "gal_12m+7m_co21.pb")
        ctk.impbcor(imagename=img, pbimage=pb, outfile="pbcor.image", cutoff=0.5, overwrite=True)
        ia = ct.image()
        ia.open("pbcor.image")
        beams = ia.restoringbeam()["beams"]
        ia.done()
        bmaj = max(b["*0"]["major"]["value"] for b in beams.values())
        target = maths.round_beam_target(bmaj, 0.5)
        ctk.imsmooth(imagename="pbcor.image", outfile="round.image", kernel="gauss", targetres=True,
                     major=f"{target}arcsec", minor=f"{target}arcsec", pa="0deg", overwrite=True)
        ctk.importfits(fitsimage=str(d / "gal_tp_co21.fits"), imagename="sd.image", overwrite=True)
        ia = ct.image()
        ia.open("sd.image")
        ia.adddegaxes(outfile="sd4.image", stokes="I", overwrite=True).done()
        ia.done()
        ctk.imtrans(imagename="sd4.image", outfile="sdr.image", order="0132")
        ctk.imregrid(imagename="sdr.image", template="round.image", output="sd_al.image", asvelocity=True, axes=[-1],
                     interpolation="cubic", overwrite=True)
        f = maths.jytok_factor(28.5, 28.5, 230.3e9)
        ctk.immath(imagename="sd_al.image", mode="evalexpr", expr=f"IM0/{f}", outfile="sd_jy.image")
        ctk.imhead("sd_jy.image", mode="put", hdkey="bunit", hdvalue="Jy/beam")
        ctk.feather(imagename="feather.image", highres="round.image", lowres="sd_jy.image", sdfactor=1.0,
                    lowpassfiltersd=False)
        ctk.imsubimage(imagename="feather.image", outfile="final.image", dropdeg=True, overwrite=True)
        k = maths.jytok_factor(target, target, 230.3e9)
        ctk.immath(imagename="final.image", mode="evalexpr", expr=f"IM0*{k}", outfile="final_k.image")
        ctk.imhead("final_k.image", mode="put", hdkey="bunit", hdvalue="K")
        ctk.exportfits(imagename="final_k.image", fitsimage="final_k.fits", velocity=True, overwrite=True,
                       dropstokes=True, dropdeg=True, bitpix=-32)
        elapsed = time.perf_counter() - t0
    return {"seconds": elapsed}


def _ours(d: Path) -> dict:
    import spectral_cube  # noqa: F401 - imported before timing, as CASA is in the baseline

    from phangs_operators.casa import casatasks
    from phangs_operators.routines.postprocess import postprocess_cube

    casatasks()
    t0 = time.perf_counter()
    r = postprocess_cube(d / "gal_12m+7m_co21", d / "ours" / "gal_12m+7m+tp_co21_pbcorr_trimmed_k.fits",
                         tp_fits=d / "gal_tp_co21.fits", cutoff=0.5, workdir=d / "ours" / "work")
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "numbers": r.to_dict()["numbers"]}


def _child(mode: str, d: Path, n: int, nchan: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    out = {"build": _build, "baseline": _baseline, "ours": _ours}[mode]
    res = out(d, n, nchan) if mode == "build" else out(d)
    res = res or {}
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT " + json.dumps(res))


def _run(mode: str, d: Path, n: int, nchan: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--dir", str(d), "--size", f"{n}x{n}x{nchan}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    res = json.loads(line[7:])
    res["process_seconds"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="360x360x72", help="NxNxNCHAN of the interferometer cube")
    ap.add_argument("--child", choices=["build", "baseline", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n, _, nchan = (int(x) for x in args.size.split("x"))
    if args.child:
        _child(args.child, Path(args.dir), n, nchan)
        return
    with tempfile.TemporaryDirectory(prefix="bench-post-") as tmp:
        d = Path(tmp)
        build = _run("build", d, n, nchan)
        base = _run("baseline", d, n, nchan)
        ours = _run("ours", d, n, nchan)
    print(f"inputs {n}x{n}x{nchan}: built in {build['process_seconds']:.1f} s")
    print(f"baseline (bare CASA tasks): {base['seconds']:.2f} s in-task, peak RSS {base['peak_rss_mb']:.0f} MB")
    print(f"ours (postprocess_cube):     {ours['seconds']:.2f} s in-task, peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"ratio ours/baseline: time {ours['seconds'] / base['seconds']:.2f}, "
          f"peak RSS {ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
    nums = ours["numbers"]
    print(f"line flux [Jy km/s]: interferometer {nums.get('interf_flux_jykms'):.4g}, "
          f"TP {nums.get('sd_flux_jykms'):.4g}, feathered {nums.get('feathered_flux_jykms'):.4g}")


if __name__ == "__main__":
    main()
