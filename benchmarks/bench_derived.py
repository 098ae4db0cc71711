"""Benchmark of the derived-products stage against a straightforward spectral-cube version.

Both implementations run the same steps on the same synthetic cube (reference section 11.D
layout, scaled): noise cube (PHANGS noise_kw: spec_box 5, 3 iterations) -> strict mask -> broad
mask -> all round-1 moments of the PHANGS moment key (10 maps + 10 error maps), reading and
writing FITS. The baseline is what one writes first with spectral-cube: per-box / per-channel
loops for the noise, whole-cube arrays, and ``SpectralCube`` moment/max/argmax/spectral_smooth
calls. Results are checked to agree; timings and peak memory (tracemalloc, i.e. Python/numpy
allocations; the cube file itself is memory-mapped) are reported as ratios.

Usage::

    python benchmarks/bench_derived.py                  # 60x256x256
    python benchmarks/bench_derived.py --size 120x512x512 --skip-baseline
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from phangs_operators.routines.cubes.moments import PHANGS_MOMENTS  # noqa: E402
from phangs_operators.routines.cubes.stage import run_derived_stage  # noqa: E402
from phangs_operators.routines.cubes.synthetic import synthetic_cube  # noqa: E402

NOISE_KW = {"spec_box": 5, "iterations": 3}
ROUND1 = [d for d in PHANGS_MOMENTS.values() if d.round == 1]


# ------------------------------------------------------------------------------------------
# baseline: a straightforward spectral-cube implementation of the same steps


def _mad(x: np.ndarray, m: np.ndarray) -> float:
    from scipy.stats import norm

    n = int(m.sum())
    if n == 0:
        return np.nan
    ok = m & np.isfinite(x)
    neg = x[ok & (x < 0)]
    s1 = 1.482602218505602 * abs(np.median(neg)) if neg.size else np.nan
    sel = x[ok & (x < norm.isf(0.5 / n) * s1)]
    return 1.482602218505602 * abs(np.median(np.abs(sel))) if sel.size else np.nan


def baseline_noise(data: np.ndarray, ppb: float) -> np.ndarray:
    from astropy.convolution import Gaussian2DKernel, convolve, convolve_fft
    from scipy.signal import savgol_coeffs

    nchan, ny, nx = data.shape
    box = math.ceil(2.5 * math.sqrt(ppb))
    sub = max(1, int(math.floor(math.sqrt(4 * ppb / math.pi) / 2.5)))
    win = math.ceil(nchan / 5) // 2 * 2 + 1
    valid = np.isfinite(data)
    pixdim = int(math.ceil(np.sum(valid.any(axis=0)) ** 0.5))
    step = max(1, min(int(box // 2.5), pixdim // 20))
    half = box // 2
    out = np.ones_like(data)
    work = data.copy()
    for _ in range(NOISE_KW["iterations"]):
        nmap = np.full((ny, nx), np.nan)
        for y in range(half, ny, step):
            for x in range(half, nx, step):
                sl = (slice(None), slice(y - half, y + half + 1, sub),
                      slice(x - half, x + half + 1, sub))
                if valid[sl].sum() > 30:
                    nmap[y, x] = _mad(work[sl], valid[sl])
        pad = int(box)
        nmap = convolve_fft(np.pad(nmap, pad, "edge"),
                            Gaussian2DKernel(box / np.sqrt(8 * np.log(2))),
                            nan_treatment="interpolate", boundary="wrap")[pad:-pad, pad:-pad]
        spec = np.full(nchan, np.nan)
        for z in range(nchan):
            lo, hi = max(0, z - 2), min(nchan, z + 3)
            spec[z] = _mad(work[lo:hi] / nmap, valid[lo:hi])
        spec = convolve(spec, savgol_coeffs(win, 3), nan_treatment="interpolate",
                        boundary="extend")
        spec /= np.nanmedian(spec)
        cube = (nmap[None] * spec[:, None, None]).astype(np.float32)
        work = work / cube
        out *= cube
    return out


def baseline_strict(data: np.ndarray, noise: np.ndarray) -> np.ndarray:
    import scipy.ndimage as ndi

    snr = data / noise
    line = np.ones((2, 1, 1), bool)
    hi = ndi.binary_opening(np.nan_to_num(snr) >= 4.0, line)
    lo = ndi.binary_opening(np.nan_to_num(snr) >= 2.0, line)
    lab, n = ndi.label(lo)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[hi])] = True
    keep[0] = False
    return keep[lab]


def baseline_moments(cube_path: Path, noise_path: Path, masks: dict[str, Path],
                     out: Path) -> dict[str, np.ndarray]:
    import astropy.units as u
    from astropy.convolution import Box1DKernel
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(cube_path).with_spectral_unit(u.km / u.s)
    cube.allow_huge_operations = True
    sig = SpectralCube.read(noise_path).filled_data[:].value
    v = cube.spectral_axis.value
    dv = float(np.abs(np.median(np.diff(v))))
    data = cube.unmasked_data[:].value
    results = {}
    for d in ROUND1:
        m = fits.getdata(masks[d.mask]).astype(bool)
        mc = cube.with_mask(m)
        s2 = np.where(m, sig.astype(np.float64) ** 2, np.nan)
        if d.algorithm == "mom0":
            mom = mc.moment0().value
            observed = np.isfinite(data).any(axis=0)
            err = np.sqrt(np.nansum(s2, axis=0)) * dv
            err[~np.isfinite(mom)] = (np.nanmedian(sig, axis=0) * np.sqrt(10 / dv) * dv)[
                ~np.isfinite(mom)]
            mom[np.isnan(mom) & observed] = 0
        elif d.algorithm in ("mom1", "mom2"):
            m1 = mc.moment1().value
            st = mc.sum(axis=0).value
            if d.algorithm == "mom1":
                mom = m1
                err = np.sqrt(np.nansum(s2 * (v[:, None, None] - m1) ** 2, axis=0)) / np.abs(st)
            else:
                mom = mc.linewidth_sigma().value
                err = (np.nansum(s2 * ((v[:, None, None] - m1) ** 2 - mom**2) ** 2, axis=0)
                       / st**2) ** 0.25
        elif d.algorithm == "ew":
            tmax = mc.max(axis=0).value
            mom = mc.moment0().value / tmax / np.sqrt(2 * np.pi)
            arg = mc.argmax(axis=0)
            sat = np.take_along_axis(sig, arg[None], 0)[0]
            err = np.sqrt(np.nansum(s2, axis=0) * dv**2 / (2 * np.pi * tmax**2)
                          + (mom**2 - mom * dv / np.sqrt(2 * np.pi)) * sat**2)
        elif d.algorithm == "tpeak":
            chans = np.nonzero(m.any(axis=(1, 2)))[0]
            tm = np.zeros_like(m)
            tm[chans.min():chans.max()] = True
            tm &= np.isfinite(data)
            tc = cube.with_mask(tm)
            fac = 1.0
            if "window" in d.kwargs:
                n = u.Quantity(d.kwargs["window"]).to_value(u.km / u.s) / dv
                tc = tc.spectral_smooth(Box1DKernel(n))
                fac = 1 / np.sqrt(n)
            mom = tc.max(axis=0).value
            arg = tc.argmax(axis=0)
            err = np.take_along_axis(np.where(tm, sig, np.nan), arg[None], 0)[0] * fac
        elif d.algorithm == "vpeak":
            tmax = mc.max(axis=0).value
            mom = v[mc.argmax(axis=0)]
            mom[~np.isfinite(tmax)] = np.nan
            err = np.where(np.isfinite(tmax), dv, np.nan)
        else:  # vquad
            tmax = mc.max(axis=0).value
            arg = np.clip(mc.argmax(axis=0), 1, len(v) - 2)
            f = mc.filled_data[:].value
            tu = np.clip(np.nan_to_num(np.take_along_axis(f, arg[None] + 1, 0)[0]), 0, None)
            td = np.clip(np.nan_to_num(np.take_along_axis(f, arg[None] - 1, 0)[0]), 0, None)
            den = tu + td - 2 * tmax
            delta = np.clip(-(tu - td) / den, -0.5, 0.5)
            mom = np.interp(arg + delta, np.arange(len(v)), v)
            mom[~np.isfinite(tmax)] = np.nan
            sm = np.where(m, sig, np.nan)
            ru, rm, rd = (np.take_along_axis(sm, arg[None] + k, 0)[0] for k in (1, 0, -1))
            j1 = 1 / den - (tu - td) / den**2
            j2 = 2 * (tu - td) / den**2
            j3 = -1 / den - (tu - td) / den**2
            err = np.clip(j1**2 * ru**2 + j2**2 * rm**2 + j3**2 * rd**2, -0.5, 0.5) * dv
        hdr = cube.wcs.celestial.to_header()
        fits.PrimaryHDU(np.asarray(mom, np.float32), hdr).writeto(
            out / f"base{d.ext}.fits", overwrite=True)
        fits.PrimaryHDU(np.asarray(err, np.float32), hdr).writeto(
            out / f"base{d.ext_error}.fits", overwrite=True)
        results[d.name] = np.asarray(mom, dtype=np.float64)
    return results


def run_baseline(cube_path: Path, out: Path) -> dict[str, np.ndarray]:
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(cube_path)
    data = cube.unmasked_data[:].value.astype(np.float32)
    noise = baseline_noise(data, cube.pixels_per_beam)
    hdr = cube.header
    fits.PrimaryHDU(noise, hdr).writeto(out / "base_noise.fits", overwrite=True)
    strict = baseline_strict(data, noise)
    fits.PrimaryHDU(strict.astype(np.uint8), hdr).writeto(out / "base_strictmask.fits",
                                                          overwrite=True)
    sm = SpectralCube.read(out / "base_strictmask.fits")
    broad = sm.filled_data[:].value > 0  # union with itself: native only, like ours
    fits.PrimaryHDU(broad.astype(np.uint8), hdr).writeto(out / "base_broadmask.fits",
                                                         overwrite=True)
    res = baseline_moments(cube_path, out / "base_noise.fits",
                           {"strictmask": out / "base_strictmask.fits",
                            "broadmask": out / "base_broadmask.fits"}, out)
    res["_strict_voxels"] = np.array(strict.sum())
    return res


# ------------------------------------------------------------------------------------------


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _peak(fn) -> int:
    """Peak Python/numpy heap during ``fn`` (tracemalloc; memory-mapped file pages excluded).

    Measured in a separate run: tracemalloc slows allocation-heavy code, so it is kept out of
    the timed runs.
    """
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="60x256x256", help="NCHANxNYxNX (up to 500x1024x1024)")
    ap.add_argument("--skip-baseline", action="store_true", help="time only our stage")
    ap.add_argument("--baseline-memory", action="store_true",
                    help="also measure the baseline's peak memory (one more slow run)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.size.lower().split("x"))
    if len(shape) != 3 or shape[0] > 500 or shape[1] > 1024 or shape[2] > 1024:
        ap.error("--size must be NCHANxNYxNX within 500x1024x1024")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="bench_derived_") as tmp:
        tmp = Path(tmp)
        data, hdr = synthetic_cube(shape)
        cube_path = tmp / "bench_cube.fits"
        fits.PrimaryHDU(data, hdr).writeto(cube_path)
        cube_bytes = data.nbytes
        del data
        ours_dir = tmp / "ours"

        def ours(d=ours_dir):
            return run_derived_stage(cube_path, d, noise_kw=NOISE_KW, moment_defs=ROUND1)

        res, t_ours = _timed(ours)
        peak_ours = _peak(lambda: ours(tmp / "ours_mem"))
        report = {
            "shape": list(shape), "cube_mb": cube_bytes / 1e6,
            "ours_s": t_ours, "ours_peak_mb": peak_ours / 1e6,
            "ours_peak_over_cube": peak_ours / cube_bytes,
            "strict_voxels": res.resolutions["native"]["strict_voxels"],
        }
        if not args.skip_baseline:
            base_dir = tmp / "base"
            base_dir.mkdir()
            base, t_base = _timed(lambda: run_baseline(cube_path, base_dir))
            report.update({"baseline_s": t_base, "speedup": t_base / t_ours,
                           "baseline_strict_voxels": int(base["_strict_voxels"])})
            if args.baseline_memory:
                peak_base = _peak(lambda: run_baseline(cube_path, base_dir))
                report.update({"baseline_peak_mb": peak_base / 1e6,
                               "baseline_peak_over_cube": peak_base / cube_bytes})
            agree = {}
            for d in ROUND1:
                ours_map = fits.getdata(ours_dir / f"bench_cube{d.ext}.fits").astype(np.float64)
                ref = base[d.name]
                both = np.isfinite(ours_map) & np.isfinite(ref)
                agree[d.name] = bool((np.isfinite(ours_map) == np.isfinite(ref)).mean() > 0.999
                                     and np.allclose(ours_map[both], ref[both], rtol=1e-4,
                                                     atol=1e-6))
            report["maps_agree"] = agree
        report["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    for key, val in report.items():
        print(f"{key:24s} {val}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
