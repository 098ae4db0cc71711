"""A synthetic target for QA tests and benchmarks: QA records + small FITS products.

:func:`make_synthetic_target` writes, below a root folder, the three working directories of
a target (``imaging/<t>``, ``postprocess/<t>``, ``derived/<t>``) with QA records shaped like
the pipeline's and FITS products made from a known sky (an extended disk and clumps with a
velocity gradient): the interferometer cube (sky x beam with the uv plane below 6 m removed),
the TP cube (sky x 28" beam), the feathered cube, the noise cube, strict/broad masks and a
moment-0 map. Faults can be switched on: a negative bowl in the cube, a clean that hit the
loop cap, a TP flux error, a stripe in the noise cube.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESTFRQ = 230.538e9
C = 299792458.0


@dataclass
class SyntheticTarget:
    """Paths of a synthetic target."""

    target: str
    workdirs: list[str]
    cube: str
    interf_cube: str
    singledish: str
    noise: str
    strictmask: str
    broadmask: str
    mom0: str


def _header(n: int, nchan: int, pix_arcsec: float, beam_arcsec: float, dv_kms: float) -> Any:
    from astropy.io import fits  # noqa: PLC0415

    h = fits.Header()
    h["NAXIS"] = 3
    h["NAXIS1"], h["NAXIS2"], h["NAXIS3"] = n, n, nchan
    h["CTYPE1"], h["CRVAL1"], h["CDELT1"], h["CRPIX1"], h["CUNIT1"] = "RA---SIN", 24.174, -pix_arcsec / 3600, n / 2 + 1, "deg"  # noqa: E501
    h["CTYPE2"], h["CRVAL2"], h["CDELT2"], h["CRPIX2"], h["CUNIT2"] = "DEC--SIN", 15.783, pix_arcsec / 3600, n / 2 + 1, "deg"  # noqa: E501
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = "VRAD", 607000.0, dv_kms * 1000, nchan / 2 + 1, "m/s"  # noqa: E501
    h["SPECSYS"] = "LSRK"
    h["RESTFRQ"] = RESTFRQ
    h["BUNIT"] = "K"
    h["BMAJ"], h["BMIN"], h["BPA"] = beam_arcsec / 3600, beam_arcsec / 3600, 0.0
    return h


def _write(path: Path, data: np.ndarray, header: Any, **cards: Any) -> str:
    from astropy.io import fits  # noqa: PLC0415

    h = header.copy()
    for k, v in cards.items():
        if v is None:
            h.remove(k, ignore_missing=True)
        else:
            h[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), h).writeto(path, overwrite=True)
    return str(path)


def _record(workdir: Path, task_id: str, stage: str, result: dict[str, Any], *, map_index: int | None = None,
            inputs: list[str] | None = None, elapsed: float = 1.0, run_id: str = "manual__synthetic",
            dag_id: str = "phangs_synth", finished: float | None = None) -> str:
    name = task_id + (f".{map_index}" if map_index is not None and map_index >= 0 else "") + ".json"
    rec = {"task_id": task_id, "dag_id": dag_id, "run_id": run_id,
           "map_index": -1 if map_index is None else map_index, "try_number": 1, "host": "synthetic",
           "stage": stage, "elapsed_s": elapsed, "inputs": inputs or [],
           "software": {"phangs_airflow": "synthetic"}, "result": result}
    p = workdir / "qa" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec, indent=1))
    if finished is not None:
        os.utime(p, (finished, finished))
    return str(p)


def _gauss2d(n: int, x0: float, y0: float, fwhm: float) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    s = fwhm / 2.3548
    return np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))


def _transfer(n: int, fwhm_pix: float) -> np.ndarray:
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    k = np.hypot(kx, ky)
    return np.exp(-(np.pi * fwhm_pix * k) ** 2 / (4 * np.log(2))), k


def make_synthetic_target(root: str | os.PathLike[str], target: str = "synth", *, n: int = 128,
                          nchan: int = 40, bowl: bool = False, loop_cap: bool = False, tp_error: float = 0.0,
                          stripe: bool = False, n_chunks: int = 4, seed: int = 1,
                          noise_scale: float = 1.0) -> SyntheticTarget:
    """Write a synthetic target below ``root`` (see the module docstring).

    Parameters
    ----------
    n, nchan
        Image size (pixels of 2 arcsec) and channels (2.5 km/s).
    bowl
        Subtract a 24" wide, -12 sigma negative bowl from the cubes around the disk.
    loop_cap
        The last clean chunk's single-scale loop stops at the loop cap.
    tp_error
        Fractional flux error of the TP cube (0.2 = TP 20 % too bright), also in the feathered cube.
    stripe
        A 3-row band of the noise cube 60 % too high.
    noise_scale
        Multiplies the noise added to the cubes (the noise cube keeps the nominal value).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    dirs = {k: root / k / target for k in ("imaging", "postprocess", "derived")}
    pix, beam_int, beam_sd, dv, sigma = 2.0, 6.0, 28.0, 2.5, 0.05
    h = _header(n, nchan, pix, beam_int, dv)
    v = (np.arange(nchan) - nchan / 2) * dv  # km/s relative to systemic
    # sky: extended disk + clumps along a velocity gradient (K)
    comps = [(n / 2, n / 2, 40.0, 0.6, 0.0, 40.0)]
    comps += [(n / 2 + dx, n / 2 + dy, 4.0, 3.0, 8.0 * dx / 10, 12.0)
              for dx, dy in ((-25, -10), (-12, 8), (0, -4), (14, 10), (26, -6))]
    comps += [(n / 2 + dx, n / 2 + dy, 10.0, 1.0, 6.0 * dx / 10, 30.0)
              for dx, dy in ((-20, 15), (18, -16), (-8, -22), (24, 20))]
    sky = np.zeros((nchan, n, n), dtype=np.float64)
    for x0, y0, fwhm, amp, vc, width in comps:
        spec = np.exp(-0.5 * ((v - vc) / (width / 2.3548)) ** 2)
        sky += amp * spec[:, None, None] * _gauss2d(n, x0, y0, fwhm)[None]
    t_int, k = _transfer(n, beam_int / pix)
    t_sd, _ = _transfer(n, beam_sd / pix)
    uv_m = k / np.deg2rad(pix / 3600) * (C / RESTFRQ)
    highpass = (uv_m >= 6.0).astype(float)
    fsky = np.fft.fft2(sky, axes=(1, 2))
    # beam-correlated noise with rms sigma
    white = rng.standard_normal((nchan, n, n))
    corr = np.fft.ifft2(np.fft.fft2(white, axes=(1, 2)) * t_int, axes=(1, 2)).real
    corr *= noise_scale * sigma / corr.std()
    pb = _gauss2d(n, n / 2, n / 2, 1.3 * n / 2)
    pbmask = pb >= 0.2
    noise_map = np.where(pbmask, sigma / pb, np.nan)
    interf = np.fft.ifft2(fsky * t_int * highpass, axes=(1, 2)).real + corr / np.where(pbmask, pb, 1)
    feathered_model = np.fft.ifft2(fsky * t_int * (highpass + (1.0 + tp_error) * (1 - highpass)), axes=(1, 2)).real
    feathered = feathered_model + corr / np.where(pbmask, pb, 1)
    sd = np.fft.ifft2(fsky * t_sd, axes=(1, 2)).real * (1.0 + tp_error)
    sd_noise = np.fft.ifft2(np.fft.fft2(rng.standard_normal(sd.shape), axes=(1, 2)) * t_sd, axes=(1, 2)).real
    sd += sd_noise * (noise_scale * 0.01 / sd_noise.std())
    if bowl:
        dip = -12 * sigma * _gauss2d(n, n / 2 + 30, n / 2 - 28, 24.0 / pix * 2)
        line = np.abs(v) < 20
        feathered[line] += dip[None]
        interf[line] += dip[None]
    interf[:, ~pbmask] = np.nan
    feathered[:, ~pbmask] = np.nan
    model = np.fft.ifft2(fsky * t_int, axes=(1, 2)).real
    strict = (model > 4 * sigma) & pbmask[None]
    broad = (model > 1.5 * sigma) & pbmask[None]
    noise = np.broadcast_to(noise_map, (nchan, n, n)).copy()
    if stripe:
        noise[:, n // 3:n // 3 + 3, :] *= 1.6
    mom0 = np.where(strict.any(axis=0), np.nansum(np.where(strict, feathered, 0.0), axis=0) * dv, np.nan)

    stem_f = f"{target}_12m+7m+tp_co21"
    stem_i = f"{target}_12m+7m_co21"
    pdir, ddir, idir = dirs["postprocess"], dirs["derived"], dirs["imaging"]
    cube_f = _write(pdir / f"{stem_f}_pbcorr_trimmed_k.fits", feathered, h)
    cube_i = _write(pdir / f"{stem_i}_pbcorr_trimmed_k.fits", interf, h)
    sd_path = _write(root / "singledish" / f"{target}_tp_co21_k.fits", sd, h, BMAJ=beam_sd / 3600,
                     BMIN=beam_sd / 3600)
    noise_p = _write(pdir / f"{stem_f}_pbcorr_trimmed_k_noise.fits", noise, h)
    strict_p = _write(pdir / f"{stem_f}_pbcorr_trimmed_k_strictmask.fits", strict.astype(np.float32), h, BUNIT=None)
    broad_p = _write(ddir / f"{stem_f}_broadmask.fits", broad.astype(np.float32), h, BUNIT=None)
    h2 = h.copy()
    for key in ("NAXIS3", "CTYPE3", "CRVAL3", "CDELT3", "CRPIX3", "CUNIT3"):
        h2.remove(key, ignore_missing=True)
    h2["NAXIS"] = 2
    mom0_p = _write(ddir / f"{stem_f}_strict_mom0.fits", mom0, h2, BUNIT="K km/s")

    # fluxes (Jy km/s) over the interferometer footprint for the feather record
    jy_k_pix = _jy_per_k_pix(pix)
    sel = pbmask[None]

    def flux(c: np.ndarray) -> float:
        return float(np.nansum(np.where(sel, c, 0.0)) * dv * jy_k_pix)

    f_int, f_sd, f_fe = flux(interf), flux(np.where(sel, sd, 0.0)), flux(feathered)

    # --- records ---------------------------------------------------------------------------
    t_end = 1.7e9
    grp = "12m_7m_co21"
    _record(idir, f"{grp}.stage_visibilities", "staging", {
        "out_ms": str(idir / f"{target}_12m+7m_co21.ms"), "ms": str(idir / f"{target}_12m+7m_co21.ms"),
        "product": "line", "skipped": False, "nchan": nchan, "nspw": 1, "chan_width_kms": dv,
        "requested_chan_kms": dv, "vel_first_kms": 607 - nchan / 2 * dv, "vel_last_kms": 607 + (nchan / 2 - 1) * dv,
        "restfreq_ghz": RESTFRQ / 1e9, "flagged_fraction": 0.04, "continuum_residual_snr": 0.4,
        "inputs": [{"array": "12m", "ms": f"/data/{target}_12m_1.ms", "spw": 0, "final_kms": dv, "median_weight": 9.1},
                   {"array": "7m", "ms": f"/data/{target}_7m_1.ms", "spw": 0, "final_kms": dv, "median_weight": 1.05}],
        "statwt_fitspw": "", "warnings": [], "seconds": 12.0}, inputs=[f"/data/{target}_12m_1.ms"],
        elapsed=12.0, finished=t_end - 400)
    per = nchan // n_chunks
    for i in range(n_chunks):
        start = i * per
        chunk = {"root": str(idir / f"chunks/{stem_i}_ch{start:04d}"), "nchan": per, "start": start,
                 "imsize": [n, n], "cell_arcsec": pix, "beam_major_arcsec": beam_int * (1 + 0.01 * i),
                 "beam_minor_arcsec": beam_int * 0.8, "beam_pa_deg": 10.0, "noise_jy": 0.004, "stages": {},
                 "seconds": 5.0}
        _record(idir, f"{grp}.dirty_chunk", "imaging", chunk, map_index=i, elapsed=5.0 + 0.3 * i,
                finished=t_end - 300 + 6 * i)
        ms_loops = [{"stage": "multiscale", "loop": j, "model_flux": 10 * (1 - 0.5 ** (j + 1)),
                     "frac_delta_flux": (0.5 ** (j + 1)) / (1 - 0.5 ** (j + 1)) if j else "inf",
                     "noise_jy": 0.004, "threshold_jy": 0.016, "reason": "converged" if j == 4 else "",
                     "stop": j == 4, "residual_rms_jy": None} for j in range(5)]
        cap = loop_cap and i == n_chunks - 1
        nss = 20 if cap else 3
        ss_loops = [{"stage": "singlescale", "loop": j, "model_flux": 11 - 0.8 ** j,
                     "frac_delta_flux": 0.3 * 0.9 ** j if cap else 0.3 * 0.05 ** j, "noise_jy": 0.004,
                     "reason": ("max_loops" if cap else "converged") if j == nss - 1 else "",
                     "stop": j == nss - 1, "residual_rms_jy": None} for j in range(nss)]
        ss_loops[-1]["residual_rms_jy"] = 0.0041
        ss_loops[-1]["peak_residual_jy"] = 0.004 * (3.1 + 0.2 * i)
        chunk = dict(chunk, stages={"multiscale": ms_loops, "singlescale": ss_loops},
                     singlescale_mask_pixels=int(0.05 * n * n * per), model_flux_jy=11.0,
                     seconds=(60.0 if cap else 20.0 + i))
        _record(idir, f"{grp}.clean_chunk", "imaging", chunk, map_index=i,
                elapsed=chunk["seconds"], finished=t_end - 200 + 25 * i + chunk["seconds"])
    _record(pdir, f"{grp}.export_cube", "postprocess", {"fits": cube_i, "step": "export_fits"},
            finished=t_end - 100)
    _record(pdir, "feather_12m_7m_tp_co21.feather", "postprocess", {
        "step": "feather_cube", "output": str(pdir / f"{stem_f}.image"),
        "numbers": {"sdfactor": 1.0, "interf_flux_jykms": f_int, "sd_flux_jykms": f_sd,
                    "feathered_flux_jykms": f_fe, "feathered_over_sd": f_fe / f_sd}},
        inputs=[sd_path], finished=t_end - 90)
    _record(pdir, "feather_12m_7m_tp_co21.export_cube", "postprocess", {"fits": cube_f, "step": "export_fits"},
            finished=t_end - 80)
    _record(root / "singledish" / target, "total_power.baseline", "total_power", {
        "antennas": [{"antenna": f"PM0{i}", "baseline_rms": 0.05 * (1 + 0.05 * i), "radiometer_rms": 0.047}
                     for i in range(1, 5)]}, finished=t_end - 500)
    dgrp = "derived_12m_7m_tp_co21"
    base = {"res_tag": "", "cube": cube_f, "coverage": None, "skipped": False}
    _record(ddir, f"{dgrp}.convolve", "derived", base, map_index=0, finished=t_end - 60)
    _record(ddir, f"{dgrp}.noise", "derived", dict(base, noise=noise_p, noise_result={"median_noise": sigma}),
            map_index=0, finished=t_end - 50)
    _record(ddir, f"{dgrp}.strict_mask", "derived",
            dict(base, noise=noise_p, strictmask=strict_p,
                 strictmask_result={"fraction": float(strict.mean())}), map_index=0, finished=t_end - 40)
    _record(ddir, f"{dgrp}.broad_mask", "derived", {"broadmask": broad_p, "template": strict_p, "inputs": []},
            finished=t_end - 30)
    _record(ddir, f"{dgrp}.moments", "derived",
            {"res_tag": "", "products": {"strictmom0": {"map": mom0_p, "error": None}}, "skipped": {},
             "warnings": []}, map_index=0, finished=t_end - 20)
    return SyntheticTarget(target=target, workdirs=[str(d) for d in dirs.values()] + [str(root / "singledish" / target)],
                           cube=cube_f, interf_cube=cube_i, singledish=sd_path, noise=noise_p,
                           strictmask=strict_p, broadmask=broad_p, mom0=mom0_p)


def _jy_per_k_pix(pix_arcsec: float) -> float:
    k_b = 1.380649e-23
    jy_sr = 2 * k_b * RESTFRQ**2 / C**2 / 1e-26
    return jy_sr * (pix_arcsec / 3600 * math.pi / 180) ** 2
