"""Simulated ALMA total-power (TP) measurement sets of the interferometric simulator's sky.

The sky is the model CASA image that :mod:`phangs_operators.routines.simulate` writes
(``model/<galaxy>_model.image``, Jy/pixel, LSRK).  It is observed like an ALMA TP on-the-fly
map with the casatools simulator in single-dish mode:

* antennas from ``alma/simmos/aca.tp.cfg`` (12 m dishes T701-T704), autocorrelations only,
  XX/YY, one TOPO spectral window covering the line and wide line-free margins;
* a raster at lambda/(3D) spacing over a square larger than the interferometric field, row by
  row (boustrophedon), repeated ``n_coverages`` times; an OFF integration far from the source
  before every raster row (STATE ``OBSERVE_TARGET#OFF_SOURCE``, SIG False, REF True);
* the predicted "Jy per primary beam" are put on the brightness-temperature scale with the
  primary-beam solid angle of the simulator's single-dish beam; the raw data are then
  ``gain_a * (Tsys + T_sky + baseline + noise)`` (ON) and ``gain_a * (Tsys + noise_off)``
  (OFF), with a linear baseline of random offset and slope injected in every ON spectrum, so
  ``sdcal(calmode='ps,tsys,apply')`` (a ``SYSCAL`` table with the Tsys is written) is needed
  to get back to Kelvin;
* a ``jyperk.csv`` as ALMA delivers it (``MS,Antenna,Spwid,Polarization,Factor``).

The noise quoted in the manifest (``noise_k``) is the rms per channel of a calibrated ON
spectrum (ON noise; the OFF integrations are ``off_noise_factor`` times quieter).

Everything is deterministic for a given ``seed`` (numpy ``default_rng((seed, k))``).
casatools is used only through :mod:`phangs_operators.casa`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.errors import SimulationError
from phangs_operators.routines.simulate import (
    antennas_from_config,
    offset_direction,
    topo_frequency,
    write_lsrk_image,
)

log = logging.getLogger(__name__)

C_KMS = 299792.458
K_BOLTZMANN = 1.380649e-23
#: ALMA TP dish diameter [m]
TP_DISH_M = 12.0
#: solid angle of the simulator's single-dish primary beam at 230.538 GHz [arcsec^2] (measured:
#: predict of a flat 1 Jy/arcsec^2 sky; scales as nu^-2)
SM_PB_AREA_ARCSEC2_230 = 681.0
SM_PB_REF_HZ = 230.538e9
#: FWHM of the tsdimaging beam (GJINC, cell lambda/(3D), the reduction's default) times the sky
#: frequency [arcsec * Hz] (measured: 28.953" at 230.1535 GHz; the beam scales as lambda)
TP_IMAGE_BEAM_ARCSEC_HZ = 28.953 * 230.1535e9
#: TP spectral window name (ALMA style)
TP_SPW_NAME = "ALMA_RB_06#BB_1#SW-01#FULL_RES"
#: name of the optional line-free spw (``extra_spw``)
EXTRA_SPW_NAME = "ALMA_RB_06#BB_2#SW-01#FULL_RES"
#: intents of ON and OFF integrations
ON_INTENT = "OBSERVE_TARGET#ON_SOURCE"
OFF_INTENT = "OBSERVE_TARGET#OFF_SOURCE"
#: model pixel used for the single-dish predict [arcsec] (2" is 4x faster than 1", same flux)
TP_MODEL_CELL_ARCSEC = 2.0

TP_PRESETS: dict[str, dict[str, Any]] = {
    # CI: 2 antennas, one coverage of a 110" square, ~110 channels
    "tiny": {"n_antennas": 2, "map_size_arcsec": 130.0, "n_coverages": 1, "chan_per_model_chan": 1,
             "span_kms": 1100.0, "integration_s": 1.0, "noise_k": 0.0005},
    # benchmarks: 4 antennas, 2 coverages of a 150" square, model channels halved
    "bench": {"n_antennas": 4, "map_size_arcsec": 150.0, "n_coverages": 2, "chan_per_model_chan": 2,
              "span_kms": 1100.0, "integration_s": 1.0, "noise_k": 0.002},
}


def jy_per_k(beam_fwhm_arcsec: float | None = None, freq_hz: float = SM_PB_REF_HZ,
             area_arcsec2: float | None = None) -> float:
    """Rayleigh-Jeans Jy per K of a Gaussian beam (or of a solid angle): ``2 k nu^2 Omega / c^2``.

    Parameters
    ----------
    beam_fwhm_arcsec : float, optional
        FWHM of a circular Gaussian beam [arcsec].
    freq_hz : float
        Frequency [Hz].
    area_arcsec2 : float, optional
        Solid angle [arcsec^2] (instead of a beam).
    """
    if area_arcsec2 is None:
        if beam_fwhm_arcsec is None:
            raise SimulationError("jy_per_k needs a beam FWHM or a solid angle")
        area_arcsec2 = math.pi / (4.0 * math.log(2.0)) * beam_fwhm_arcsec**2
    omega = area_arcsec2 * (math.pi / 180.0 / 3600.0) ** 2
    return 2.0 * K_BOLTZMANN * freq_hz**2 * omega / (C_KMS * 1e3) ** 2 / 1e-26


def raster_offsets(map_size_arcsec: float, step_arcsec: float) -> np.ndarray:
    """Boustrophedon raster (east, north) offsets [arcsec], shape (nrow, ncol, 2)."""
    n = int(math.floor(map_size_arcsec / step_arcsec)) + 1
    axis = (np.arange(n) - (n - 1) / 2.0) * step_arcsec
    east = np.tile(axis, (n, 1))
    east[1::2] = east[1::2, ::-1]  # scan back and forth
    north = np.repeat(axis[:, np.newaxis], n, axis=1)
    return np.stack([east, north], axis=-1)


# ---------------------------------------------------------------------------------------------
# model image for the single-dish predict
# ---------------------------------------------------------------------------------------------


def _read_model(ct: Any, model_image: Path) -> dict[str, Any]:
    """Pixels (nx, ny, nchan) in Jy/pixel and the axes of a 4-D model image."""
    ia = ct.image()
    try:
        ia.open(str(model_image))
        pix = ia.getchunk(dropdeg=False)  # (nx, ny, nstokes, nchan)
        cs = ia.coordsys()
        rec = cs.torecord()
        cs.done()
        summ = ia.summary(list=False)
    finally:
        ia.close()
        ia.done()
    incr = summ["incr"]
    refval = summ["refval"]
    refpix = summ["refpix"]
    units = summ["axisunits"]
    if len(pix.shape) != 4 or units[0] != "rad":
        raise SimulationError(f"model image {model_image}: expected RA, Dec, Stokes, Freq axes in rad/Hz")
    nchan = pix.shape[3]
    freqs = refval[3] + (np.arange(nchan) - refpix[3]) * incr[3]
    restfreq = float(rec["spectral2"]["restfreq"]) if "spectral2" in rec else SM_PB_REF_HZ
    return {
        "pixels": np.asarray(pix[:, :, 0, :], dtype=np.float64),
        "cell_arcsec": abs(incr[1]) * 180.0 / math.pi * 3600.0,
        "ra_rad": float(refval[0]), "dec_rad": float(refval[1]),
        "refpix_xy": (float(refpix[0]), float(refpix[1])),
        "freqs_hz": freqs, "restfreq_hz": restfreq,
    }


def _overlap_matrix(old_edges: np.ndarray, new_edges: np.ndarray) -> np.ndarray:
    """W[j, i] = fraction of new channel j covered by old channel i (edges ascending)."""
    lo = np.maximum(new_edges[:-1, None], old_edges[None, :-1])
    hi = np.minimum(new_edges[1:, None], old_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(new_edges)[:, None]


def _write_tp_model(ct: Any, model: dict[str, Any], out: Path, freqs_hz: np.ndarray,
                    pad_arcsec: float) -> dict[str, float]:
    """Block-sum the model to ~2" pixels, pad it, resample it onto ``freqs_hz`` (LSRK).

    The continuum (the model's first channel, where no line emission is) is kept flat over
    the whole band; the line part is resampled flux-conservingly; beyond the model's band
    only the continuum remains.
    """
    pix = model["pixels"]
    cont = pix[:, :, 0].copy()
    line = pix - cont[:, :, None]
    f = max(1, int(round(TP_MODEL_CELL_ARCSEC / model["cell_arcsec"])))
    nx, ny = (pix.shape[0] // f) * f, (pix.shape[1] // f) * f
    line = line[:nx, :ny].reshape(nx // f, f, ny // f, f, -1).sum(axis=(1, 3))
    cont = cont[:nx, :ny].reshape(nx // f, f, ny // f, f).sum(axis=(1, 3))
    cell = model["cell_arcsec"] * f
    pad = int(math.ceil(pad_arcsec / cell))
    line = np.pad(line, ((pad, pad), (pad, pad), (0, 0)))
    cont = np.pad(cont, ((pad, pad), (pad, pad)))
    # spectral resampling (both axes ascending in frequency)
    mf = model["freqs_hz"]
    if mf[1] < mf[0]:
        mf, line = mf[::-1], line[:, :, ::-1]
    dm = mf[1] - mf[0]
    old_edges = np.concatenate([mf - dm / 2.0, [mf[-1] + dm / 2.0]])
    dn = freqs_hz[1] - freqs_hz[0]
    new_edges = np.concatenate([freqs_hz - dn / 2.0, [freqs_hz[-1] + dn / 2.0]])
    w = _overlap_matrix(old_edges, new_edges)  # overlap-weighted mean of the flux density
    nxp, nyp = line.shape[:2]
    resampled = (line.reshape(nxp * nyp, -1) @ w.T).reshape(nxp, nyp, -1) + cont[:, :, None]
    # centre: the model's reference pixel (block-summed, padded)
    rx = (model["refpix_xy"][0] - (f - 1) / 2.0) / f + pad
    ry = (model["refpix_xy"][1] - (f - 1) / 2.0) / f + pad
    write_lsrk_image(ct, out, resampled[:, :, None, :], refpix_xy=(rx, ry), ra_rad=model["ra_rad"],
                     dec_rad=model["dec_rad"], freq0_hz=float(freqs_hz[0]),
                     cell_rad=cell / 3600.0 * math.pi / 180.0, dnu_hz=float(dn),
                     restfreq_hz=model["restfreq_hz"])
    dv = C_KMS * dn / model["restfreq_hz"]
    return {"line_flux_jykms": float(resampled.sum(axis=(0, 1)).sum() * dv - cont.sum() * dv * freqs_hz.size),
            "cell_arcsec": cell}


# ---------------------------------------------------------------------------------------------
# the measurement set
# ---------------------------------------------------------------------------------------------


def _tp_antennas(n: int) -> dict[str, Any]:
    return antennas_from_config("aca.tp.cfg", n)


def _add_syscal(ct: Any, ms: Path, tsys_k: np.ndarray, nchan: int, t_range: tuple[float, float],
                n_spw: int = 1) -> None:
    """Add a SYSCAL subtable with TSYS_SPECTRUM (per antenna and spw, both polarisations, flat)."""
    tb = ct.table()
    desc = {
        "ANTENNA_ID": {"valueType": "int", "dataManagerType": "StandardStMan", "option": 0,
                       "maxlen": 0, "comment": "Antenna id"},
        "FEED_ID": {"valueType": "int", "dataManagerType": "StandardStMan", "option": 0, "maxlen": 0,
                    "comment": "Feed id"},
        "INTERVAL": {"valueType": "double", "dataManagerType": "StandardStMan", "option": 0, "maxlen": 0,
                     "comment": "Interval", "keywords": {"QuantumUnits": np.array(["s"])}},
        "SPECTRAL_WINDOW_ID": {"valueType": "int", "dataManagerType": "StandardStMan", "option": 0,
                               "maxlen": 0, "comment": "Spectral window id"},
        "TIME": {"valueType": "double", "dataManagerType": "StandardStMan", "option": 0, "maxlen": 0,
                 "comment": "Midpoint of interval",
                 "keywords": {"QuantumUnits": np.array(["s"]),
                              "MEASINFO": {"type": "epoch", "Ref": "UTC"}}},
        "TSYS_SPECTRUM": {"valueType": "float", "dataManagerType": "StandardStMan", "option": 0,
                          "maxlen": 0, "ndim": 2, "comment": "System temperature spectrum",
                          "keywords": {"QuantumUnits": np.array(["K"])}},
    }
    path = ms / "SYSCAL"
    try:
        tb.create(str(path), desc, nrow=0)
        n_ant = tsys_k.size
        nrow = n_ant * n_spw
        tb.addrows(nrow)
        tmid = 0.5 * (t_range[0] + t_range[1])
        tb.putcol("ANTENNA_ID", np.tile(np.arange(n_ant, dtype=np.int32), n_spw))
        tb.putcol("FEED_ID", np.zeros(nrow, dtype=np.int32))
        tb.putcol("SPECTRAL_WINDOW_ID", np.repeat(np.arange(n_spw, dtype=np.int32), n_ant))
        tb.putcol("TIME", np.full(nrow, tmid))
        tb.putcol("INTERVAL", np.full(nrow, t_range[1] - t_range[0] + 10.0))
        spec = np.broadcast_to(np.tile(tsys_k, n_spw)[None, None, :], (2, nchan, nrow)).astype(np.float32)
        tb.putcol("TSYS_SPECTRUM", np.ascontiguousarray(spec))
        tb.close()
        tb.open(str(ms), nomodify=False)
        tb.putkeyword("SYSCAL", f"Table: {path}")
    finally:
        tb.close()
        tb.done()


def simulate_tp_ms(
    outdir: str | os.PathLike[str],
    *,
    model_image: str | os.PathLike[str],
    vsys_kms: float,
    ms_name: str = "tp.ms",
    preset: str = "tiny",
    date: str = "2024/04/10",
    project: str = "2024.1.99999.S",
    field_name: str = "TARGET",
    n_antennas: int | None = None,
    map_size_arcsec: float | None = None,
    n_coverages: int | None = None,
    noise_k: float | None = None,
    tsys_k: float = 100.0,
    baseline_k: float = 0.3,
    off_noise_factor: float = 0.1,
    jyperk_beam_arcsec: float | None = None,
    float_data: bool = False,
    extra_spw: bool = False,
    seed: int = 42,
) -> dict[str, Any]:
    """Simulate one ALMA TP measurement set of a model sky, plus a ``jyperk.csv``.

    Parameters
    ----------
    outdir : path
        Directory receiving ``<ms_name>`` (replaced) and ``jyperk.csv`` (the rows of this MS
        are replaced, those of other MSes kept).
    model_image : path
        CASA model image (RA, Dec, Stokes, Freq; Jy/pixel; LSRK), as ``simulate()`` writes it.
    vsys_kms : float
        Systemic velocity [km/s, LSRK radio]; the spectral window is centred on it.
    ms_name : str
        Name of the measurement set.
    preset : {'tiny', 'bench'}
        Size defaults (antennas, map size, coverages, channels, noise), see :data:`TP_PRESETS`.
    date, project, field_name : str
        Observing date (transit), project code and field name written into the MS.
    n_antennas, map_size_arcsec, n_coverages, noise_k : optional
        Override the preset: TP antennas (1-4), side of the mapped square [arcsec], number of
        raster coverages, rms per channel of a calibrated ON spectrum [K].
    tsys_k : float
        System temperature [K] (also the sky level of the raw data).
    baseline_k : float
        Scale of the injected linear baseline [K]: offset and end-to-end slope are drawn
        from N(0, baseline_k) for every ON spectrum.
    off_noise_factor : float
        Noise of the OFF integrations relative to the ON noise.
    jyperk_beam_arcsec : float, optional
        FWHM [arcsec] of the beam the Jy/K factor of ``jyperk.csv`` refers to; default: the
        beam ``tsdimaging`` gives with the reduction's defaults (:data:`TP_IMAGE_BEAM_ARCSEC_HZ`,
        29.0" at 230.15 GHz), so that the jyperk and beam-factor paths agree.
    float_data : bool
        Store the spectra in FLOAT_DATA (and drop DATA), as ``importasdm`` writes ALMA TP data.
    extra_spw : bool
        Add a line-free spectral window 2 GHz below the line spw, written first (the line spw
        is then spw 1, as in multi-spw ALMA data), with its SYSCAL and jyperk.csv rows.
    seed : int
        Seed of all random numbers.

    Returns
    -------
    dict
        Manifest fragment: ``ms``, ``jyperk_csv`` (absolute paths), antennas, spw, raster,
        ``noise_k``, ``tsys_k``, ``jyperk``, ``model_line_flux_jykms`` (on the TP model),
        ``timings_s``.

    Raises
    ------
    SimulationError
        Unknown preset, bad parameters, unreadable model image.
    """
    from phangs_operators.casa import casa_session, casatasks, casatools  # noqa: PLC0415

    if preset not in TP_PRESETS:
        raise SimulationError(f"unknown TP preset {preset!r}; choose one of {', '.join(TP_PRESETS)}")
    p = dict(TP_PRESETS[preset])
    for key, value in (("n_antennas", n_antennas), ("map_size_arcsec", map_size_arcsec),
                       ("n_coverages", n_coverages), ("noise_k", noise_k)):
        if value is not None:
            p[key] = value
    if not 1 <= int(p["n_antennas"]) <= 4:
        raise SimulationError(f"ALMA has 4 TP antennas; {p['n_antennas']} requested")
    model_path = Path(model_image)
    if not model_path.is_dir():
        raise SimulationError(f"model image {model_path} not found")
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    ct = casatools()
    cta = casatasks()
    build = Path(tempfile.mkdtemp(prefix=".simulate_tp-", dir=out))
    try:
        with casa_session(build, build / "casa.log"):
            t0 = time.perf_counter()
            model = _read_model(ct, model_path)
            restfreq = model["restfreq_hz"]
            # spectral window: TOPO, ascending, centred on vsys, model channel / chan_per_model_chan
            dn = abs(model["freqs_hz"][1] - model["freqs_hz"][0]) / int(p["chan_per_model_chan"])
            dv = C_KMS * dn / restfreq
            nchan = int(math.ceil(p["span_kms"] / dv))
            nchan += nchan % 2
            f_lsrk = restfreq * (1.0 - vsys_kms / C_KMS)
            lsrk_freqs = f_lsrk + (np.arange(nchan + 40) - (nchan + 40) // 2) * dn  # covers the spw
            ants = _tp_antennas(int(p["n_antennas"]))
            ra_deg, dec_deg = math.degrees(model["ra_rad"]), math.degrees(model["dec_rad"])
            f_topo = topo_frequency(ct, f_lsrk, ra_deg, dec_deg, date, ants["posobs"])
            freq0 = f_topo - (nchan // 2) * dn
            lam = C_KMS * 1e3 / f_topo
            step = math.degrees(lam / (3.0 * TP_DISH_M)) * 3600.0
            raster = raster_offsets(float(p["map_size_arcsec"]), step)
            tp_model = build / "tp_model.image"
            minfo = _write_tp_model(ct, model, tp_model, lsrk_freqs, pad_arcsec=p["map_size_arcsec"] / 2 + 40.0)
            timings["model"] = round(time.perf_counter() - t0, 3)

            t0 = time.perf_counter()
            raw_ms = build / "raw.ms"
            n_on, n_off = _observe(ct, raw_ms, ants, model, raster, int(p["n_coverages"]),
                                   float(p["integration_s"]), freq0, dn, nchan, date, project,
                                   field_name, tp_model, extra_spw)
            timings["predict"] = round(time.perf_counter() - t0, 3)

            t0 = time.perf_counter()
            final_tmp = build / ms_name
            cta.split(vis=str(raw_ms), outputvis=str(final_tmp), antenna="*&&&", datacolumn="data",
                      keepflags=True)
            shutil.rmtree(raw_ms, ignore_errors=True)
            rng = np.random.default_rng((int(seed), 7001))
            gains = 1000.0 * (1.0 + 0.2 * rng.standard_normal(len(ants["names"])))
            tsys = tsys_k * (1.0 + 0.1 * rng.uniform(-1, 1, len(ants["names"])))
            area = SM_PB_AREA_ARCSEC2_230 * (SM_PB_REF_HZ / f_topo) ** 2
            k_per_jypb = 1.0 / jy_per_k(freq_hz=f_topo, area_arcsec2=area)
            trange = _corrupt(ct, final_tmp, gains, tsys, k_per_jypb, float(p["noise_k"]), baseline_k,
                              off_noise_factor, rng)
            _add_syscal(ct, final_tmp, tsys, nchan, trange, n_spw=2 if extra_spw else 1)
            if float_data:
                _to_float_data(ct, final_tmp)
            timings["corrupt"] = round(time.perf_counter() - t0, 3)
        f_sky = restfreq * (1.0 - vsys_kms / C_KMS)
        if jyperk_beam_arcsec is None:
            jyperk_beam_arcsec = TP_IMAGE_BEAM_ARCSEC_HZ / f_sky
        factor = jy_per_k(jyperk_beam_arcsec, freq_hz=f_sky)
        csv_tmp = build / "jyperk.csv"
        keep: list[list[str]] = []
        if (out / "jyperk.csv").is_file():  # other MSes of the same directory keep their rows
            with open(out / "jyperk.csv", newline="") as fh:
                keep = [row for row in list(csv.reader(fh))[1:] if row and row[0] != ms_name]
        with open(csv_tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["MS", "Antenna", "Spwid", "Polarization", "Factor"])
            w.writerows(keep)
            for spw in range(2 if extra_spw else 1):
                for name in ants["names"]:
                    w.writerow([ms_name, name, spw, "I", f"{factor:.6f}"])
        final_ms = out / ms_name
        if final_ms.exists():
            shutil.rmtree(final_ms)
        os.replace(final_tmp, final_ms)
        os.replace(csv_tmp, out / "jyperk.csv")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    timings["total"] = round(time.perf_counter() - t_all, 3)
    log.info("TP MS %s: %d antennas, %d ON + %d OFF integrations, %d channels (%.1f s)",
             out / ms_name, len(ants["names"]), n_on, n_off, nchan, timings["total"])
    return {
        "ms": str(out / ms_name),
        "jyperk_csv": str(out / "jyperk.csv"),
        "array": "tp",
        "antennas": list(ants["names"]),
        "antenna_config": "aca.tp.cfg",
        "spw_name": TP_SPW_NAME,
        "line_spw": 1 if extra_spw else 0,
        "n_channels": nchan,
        "channel_width_hz": dn,
        "channel_width_kms": dv,
        "freq_range_topo_hz": [freq0, freq0 + (nchan - 1) * dn],
        "raster_step_arcsec": step,
        "raster_shape": list(raster.shape[:2]),
        "map_size_arcsec": float(p["map_size_arcsec"]),
        "n_coverages": int(p["n_coverages"]),
        "n_on_integrations": n_on,
        "n_off_integrations": n_off,
        "noise_k": float(p["noise_k"]),
        "tsys_k": [float(t) for t in tsys],
        "baseline_k": baseline_k,
        "jyperk": factor,
        "jyperk_beam_arcsec": jyperk_beam_arcsec,
        "k_per_jy_per_pb": k_per_jypb,
        "model_line_flux_jykms": minfo["line_flux_jykms"],
        "data_column": "FLOAT_DATA" if float_data else "DATA",
        "seed": int(seed),
        "timings_s": timings,
    }


def _observe(ct: Any, ms: Path, ants: dict[str, Any], model: dict[str, Any], raster: np.ndarray,
             n_cov: int, t_int: float, freq0: float, dn: float, nchan: int, date: str, project: str,
             field_name: str, tp_model: Path, extra_spw: bool = False) -> tuple[int, int]:
    """Run the simulator: OFF + raster row, for every row and coverage; returns (n_on, n_off)."""

    ra0, dec0 = math.degrees(model["ra_rad"]), math.degrees(model["dec_rad"])
    off_ra, off_dec = offset_direction(ra0, dec0, 600.0, 0.0)  # 10' east: empty sky
    directions: list[str] = []
    is_off: list[bool] = []
    for cov in range(n_cov):
        rows = raster if cov % 2 == 0 else raster[::-1, ::-1]
        for row in rows:
            directions.append(f"J2000 {math.radians(off_ra)!r}rad {math.radians(off_dec)!r}rad")
            is_off.append(True)
            for e, n in row:
                ra, dec = offset_direction(ra0, dec0, float(e), float(n))
                directions.append(f"J2000 {math.radians(ra)!r}rad {math.radians(dec)!r}rad")
                is_off.append(False)
    sm = ct.simulator()
    me = ct.measures()
    qa = ct.quanta()
    try:
        sm.open(str(ms))
        sm.setconfig(telescopename=ants["telescope"], x=ants["x"], y=ants["y"], z=ants["z"],
                     dishdiameter=ants["diam"], mount=["alt-az"], antname=ants["names"],
                     padname=ants["pads"], coordsystem="global", referencelocation=ants["posobs"])
        spws = [(EXTRA_SPW_NAME, freq0 - 2e9)] if extra_spw else []
        spws.append((TP_SPW_NAME, freq0))
        for name, f0 in spws:
            sm.setspwindow(spwname=name, freq=f"{f0:.3f}Hz", deltafreq=f"{dn:.3f}Hz",
                           freqresolution=f"{dn:.3f}Hz", nchannels=nchan, refcode="TOPO", stokes="XX YY")
        sm.setfeed(mode="perfect X Y", pol=[""])
        sm.setlimits(shadowlimit=0.01, elevationlimit="10deg")
        sm.setauto(1.0)
        sm.setfield(sourcename=field_name,
                    sourcedirection=me.direction("J2000", qa.quantity(ra0, "deg"), qa.quantity(dec0, "deg")),
                    calcode="OBJ", distance="0m")
        sm.settimes(integrationtime=f"{t_int}s", usehourangle=True, referencetime=me.epoch("UTC", date))
        n = len(directions)
        starts = [(k - n / 2.0) * t_int for k in range(n)]
        for name, _ in spws:
            sm.observemany(sourcenames=[field_name] * n, spwname=name,
                           starttimes=[f"{s}s" for s in starts], stoptimes=[f"{s + t_int}s" for s in starts],
                           directions=directions, project=project)
        sm.setdata(spwid=list(range(len(spws))), fieldid=[0])
        sm.setoptions(gridfunction="pb", ftmachine="sd", location=ants["posobs"])
        sm.predict(imagename=str(tp_model))
    finally:
        sm.close()
        sm.done()
        me.done()
        qa.done()
    # STATE: 0 = ON, 1 = OFF; rows get the state of their integration (time order)
    tb = ct.table()
    try:
        tb.open(str(ms / "STATE"), nomodify=False)
        if tb.nrows() < 2:
            tb.addrows(2 - tb.nrows())
        tb.putcol("OBS_MODE", np.array([ON_INTENT, OFF_INTENT]))
        tb.putcol("SIG", np.array([True, False]))
        tb.putcol("REF", np.array([False, True]))
        tb.close()
        tb.open(str(ms), nomodify=False)
        times = tb.getcol("TIME")
        utimes = np.unique(times)
        if utimes.size != len(is_off):
            raise SimulationError(f"simulator wrote {utimes.size} integrations, {len(is_off)} expected")
        idx = np.searchsorted(utimes, times)
        tb.putcol("STATE_ID", np.asarray(is_off, dtype=np.int32)[idx])
    finally:
        tb.close()
        tb.done()
    n_off = int(sum(is_off))
    return len(is_off) - n_off, n_off


def _corrupt(ct: Any, ms: Path, gains: np.ndarray, tsys: np.ndarray, k_per_jypb: float, noise_k: float,
             baseline_k: float, off_noise_factor: float, rng: np.random.Generator) -> tuple[float, float]:
    """Raw counts from the predicted Jy/PB: ON = g (Tsys + T + baseline + n), OFF = g (Tsys + n')."""
    tb = ct.table()
    try:
        tb.open(str(ms), nomodify=False)
        data = tb.getcol("DATA")  # (npol, nchan, nrow) complex
        ant = tb.getcol("ANTENNA1")
        state = tb.getcol("STATE_ID")
        times = tb.getcol("TIME")
        npol, nchan, nrow = data.shape
        sky_k = data.real * k_per_jypb
        off = state == 1
        x = np.linspace(-0.5, 0.5, nchan)[None, :, None]
        offset = baseline_k * rng.standard_normal((npol, 1, nrow))
        slope = baseline_k * rng.standard_normal((npol, 1, nrow))
        noise = noise_k * rng.standard_normal((npol, nchan, nrow))
        t_on = tsys[ant][None, None, :] + sky_k + offset + slope * x + noise
        t_off = tsys[ant][None, None, :] + off_noise_factor * noise
        raw = np.where(off[None, None, :], t_off, t_on) * gains[ant][None, None, :]
        tb.putcol("DATA", raw.astype(np.complex64))
        tb.putcol("WEIGHT", np.ones((npol, nrow), dtype=np.float32))
        tb.putcol("SIGMA", np.ones((npol, nrow), dtype=np.float32))
    finally:
        tb.close()
        tb.done()
    return float(times.min()), float(times.max())


def _to_float_data(ct: Any, ms: Path) -> None:
    """Move the (real) spectra from DATA into a new FLOAT_DATA column and drop DATA."""
    tb = ct.table()
    try:
        tb.open(str(ms), nomodify=False)
        desc = tb.getcoldesc("DATA")
        desc["valueType"] = "float"
        desc["comment"] = "Floating point data - for single dish"
        dminfo = {"TYPE": "StandardStMan", "NAME": "FloatDataStMan", "SPEC": {}}
        tb.addcols({"FLOAT_DATA": desc}, dminfo)
        tb.putcol("FLOAT_DATA", tb.getcol("DATA").real.astype(np.float32))
        tb.removecols(["DATA"])
    finally:
        tb.close()
        tb.done()
