"""Synthetic sky, interferometer-like and total-power cubes for the post-processing tests.

The sky is a sum of round Gaussian components (flux density S [Jy], FWHM [arcsec]) with a
Gaussian line profile; images of it through any Gaussian beam are analytic, so the "true"
flux of every product is known. Arrays are ``[x, y, (stokes,) chan]`` like CASA ``getchunk``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from phangs_operators.routines.post import maths

FWHM2SIG = 1.0 / math.sqrt(8.0 * math.log(2.0))
RESTFREQ = 230.538e9
C_KMS = 299792.458


@dataclass
class Sky:
    """Gaussian components: (dx_arcsec, dy_arcsec, flux_jy, fwhm_arcsec)."""

    components: list[tuple[float, float, float, float]] = field(
        default_factory=lambda: [(0.0, 0.0, 3.0, 30.0), (12.0, -8.0, 0.8, 4.0), (-14.0, 10.0, 0.5, 6.0)]
    )
    v_centre_kms: float = 300.0
    v_sigma_kms: float = 6.0
    ra_deg: float = 180.0
    dec_deg: float = -30.0

    def profile(self, v_kms: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((v_kms - self.v_centre_kms) / self.v_sigma_kms) ** 2)

    def total_flux_jykms(self, v_kms: np.ndarray) -> float:
        dv = abs(v_kms[1] - v_kms[0])
        return float(sum(c[2] for c in self.components) * self.profile(v_kms).sum() * dv)

    def image(self, x_as: np.ndarray, y_as: np.ndarray, bmaj: float, bmin: float) -> np.ndarray:
        """Sky convolved with a beam (PA 0: major along y) in Jy/beam, on offsets [arcsec]."""
        out = np.zeros(np.broadcast(x_as, y_as).shape)
        sx_b, sy_b = bmin * FWHM2SIG, bmaj * FWHM2SIG
        for dx, dy, flux, fwhm in self.components:
            s = fwhm * FWHM2SIG
            sx, sy = math.hypot(s, sx_b), math.hypot(s, sy_b)
            out += flux * (sx_b * sy_b) / (sx * sy) * np.exp(-0.5 * (((x_as - dx) / sx) ** 2 + ((y_as - dy) / sy) ** 2))
        return out


def velocity_axis(nchan: int, v0: float = 291.25, dv: float = 2.5) -> np.ndarray:
    return v0 + dv * np.arange(nchan)


def freq_of(v_kms: np.ndarray) -> np.ndarray:
    return RESTFREQ * (1.0 - v_kms / C_KMS)


def make_csys(ct, nx: int, ny: int, pixel_as: float, v_kms: np.ndarray, sky: Sky, crpix=None, ref=None):
    """CASA coordinate system RA, Dec, Stokes, Freq (LSRK), pixel ``pixel_as``."""
    cs = ct.coordsys().newcoordsys(direction=True, spectral=True, stokes=["I"])
    cs.setunits(type="direction", value="rad rad")
    ra, dec = ref if ref is not None else (sky.ra_deg, sky.dec_deg)
    cs.setreferencevalue(type="direction", value=[math.radians(ra), math.radians(dec)])
    cs.setincrement(type="direction", value=[-math.radians(pixel_as / 3600), math.radians(pixel_as / 3600)])
    cp = crpix if crpix is not None else ((nx - 1) / 2.0, (ny - 1) / 2.0)
    cs.setreferencepixel(value=[cp[0], cp[1], 0, 0])
    cs.setspectral(refcode="LSRK", restfreq=f"{RESTFREQ}Hz")
    f = freq_of(v_kms)
    cs.setreferencevalue(type="spectral", value=float(f[0]))
    cs.setincrement(type="spectral", value=float(f[1] - f[0]))
    rec = cs.torecord()
    cs.done()
    return rec


def write_image(ct, path: Path, data: np.ndarray, csys: dict, *, unit="Jy/beam", beams=None, valid=None) -> Path:
    """``data`` [x, y, 1, chan]; ``beams`` (major, minor, pa) or a per-channel list."""
    ia = ct.image()
    ia.fromarray(outfile=str(path), pixels=np.nan_to_num(data).astype(np.float32), csys=csys, overwrite=True)
    ia.setbrightnessunit(unit)
    if beams is not None:
        if isinstance(beams, list):
            for ch, b in enumerate(beams):
                ia.setrestoringbeam(major=f"{b[0]}arcsec", minor=f"{b[1]}arcsec", pa=f"{b[2]}deg", channel=ch,
                                    polarization=0)
        else:
            ia.setrestoringbeam(major=f"{beams[0]}arcsec", minor=f"{beams[1]}arcsec", pa=f"{beams[2]}deg")
    if valid is not None:
        ia.calcmask("T", name="mask0", asdefault=True)
        ia.putregion(pixelmask=valid, usemask=False)
    ia.done()
    return path


def offsets(nx: int, ny: int, pixel_as: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets [arcsec] east (x, RA decreasing with pixel) and north of the grid centre, [x, y]."""
    x = -(np.arange(nx) - (nx - 1) / 2.0) * pixel_as
    y = (np.arange(ny) - (ny - 1) / 2.0) * pixel_as
    return x[:, None], y[None, :]


def highpass(plane: np.ndarray, sigma_pixels: float, fraction: float = 1.0) -> np.ndarray:
    """Remove short spacings: multiply the FT by ``1 - fraction exp(-2 pi^2 s^2 k^2)``."""
    kx = np.fft.fftfreq(plane.shape[0])[:, None]
    ky = np.fft.fftfreq(plane.shape[1])[None, :]
    h = 1.0 - fraction * np.exp(-2.0 * math.pi**2 * sigma_pixels**2 * (kx**2 + ky**2))
    return np.fft.ifft2(np.fft.fft2(plane) * h).real


@dataclass
class InterfCube:
    image: Path
    pb: Path
    truth: np.ndarray  # sky through the interferometer beam (no filtering), [x, y, 1, chan], Jy/beam
    beams: list[tuple[float, float, float]]
    v_kms: np.ndarray
    pixel_as: float


def make_interferometer(
    ct,
    root: Path,
    sky: Sky,
    *,
    n: int = 64,
    nchan: int = 8,
    pixel_as: float = 2.0,
    bmaj: float = 6.0,
    bmin: float = 5.0,
    pb_fwhm_as: float = 110.0,
    missing_sigma_as: float = 10.0,
    missing_fraction: float = 0.7,
    noise: float = 0.002,
    v0: float = 291.25,
    centre_offset_as: tuple[float, float] = (0.0, 0.0),
    per_plane: bool = True,
    seed: int = 3,
) -> InterfCube:
    """Flat-noise ``root.image`` (Jy/beam, short spacings removed) and ``root.pb``."""
    v = velocity_axis(nchan, v0)
    lx, ly = offsets(n, n, pixel_as)
    x, y = lx + centre_offset_as[0], ly + centre_offset_as[1]
    ref = (sky.ra_deg + centre_offset_as[0] / 3600 / math.cos(math.radians(sky.dec_deg)),
           sky.dec_deg + centre_offset_as[1] / 3600)
    beams = [(bmaj + (0.05 * ch if per_plane else 0.0), bmin, 0.0) for ch in range(nchan)]
    truth = np.zeros((n, n, 1, nchan))
    obs = np.zeros_like(truth)
    rng = np.random.default_rng(seed)
    pb_plane = np.exp(-4 * math.log(2) * (lx**2 + ly**2) / pb_fwhm_as**2)
    for ch in range(nchan):
        t = sky.image(x, y, beams[ch][0], beams[ch][1]) * sky.profile(v[ch])
        truth[:, :, 0, ch] = t
        filt = highpass(t, missing_sigma_as / pixel_as, missing_fraction)
        obs[:, :, 0, ch] = (filt + rng.normal(0, noise, t.shape)) * pb_plane  # flat noise ~ image * pb
    pb = np.repeat(pb_plane[:, :, None, None], nchan, axis=3)
    csys = make_csys(ct, n, n, pixel_as, v, sky, ref=ref)
    img = write_image(ct, Path(f"{root}.image"), obs, csys, beams=beams if per_plane else beams[0])
    pbp = write_image(ct, Path(f"{root}.pb"), pb, csys, unit="")
    return InterfCube(img, pbp, truth, beams, v, pixel_as)


def write_tp_fits(
    path: Path,
    sky: Sky,
    *,
    n: int = 30,
    pixel_as: float = 6.0,
    beam_as: float = 28.5,
    nchan: int = 12,
    v0: float = 286.25,
    dv: float = 2.5,
    unit: str = "K",
    drop: tuple[str, ...] = (),
) -> Path:
    """3-D total-power cube (RA, Dec, VRAD m/s) in K or Jy/beam; ``drop`` removes header cards."""
    v = velocity_axis(nchan, v0, dv)
    x, y = offsets(n, n, pixel_as)
    cube = np.stack([sky.image(x, y, beam_as, beam_as) * sky.profile(vc) for vc in v])  # [chan, x, y]
    if unit == "K":
        cube = cube * maths.jytok_factor(beam_as, beam_as, float(np.mean(freq_of(v))))
    data = np.transpose(cube, (0, 2, 1)).astype(np.float32)  # FITS order [chan, y, x]
    h = fits.Header()
    h["BUNIT"] = unit
    h["BMAJ"] = beam_as / 3600
    h["BMIN"] = beam_as / 3600
    h["BPA"] = 0.0
    h["CTYPE1"], h["CRVAL1"], h["CDELT1"], h["CRPIX1"], h["CUNIT1"] = "RA---SIN", sky.ra_deg, -pixel_as / 3600, (n + 1) / 2, "deg"
    h["CTYPE2"], h["CRVAL2"], h["CDELT2"], h["CRPIX2"], h["CUNIT2"] = "DEC--SIN", sky.dec_deg, pixel_as / 3600, (n + 1) / 2, "deg"
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = "VRAD", v0 * 1e3, dv * 1e3, 1.0, "m/s"
    h["RESTFRQ"] = RESTFREQ
    h["SPECSYS"] = "LSRK"
    h["RADESYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    for card in drop:
        del h[card]
    fits.PrimaryHDU(data=data, header=h).writeto(path, overwrite=True)
    return path


def truth_on_grid(ct, path: str | Path, sky: Sky, beam_as: float) -> np.ndarray:
    """The sky through a round ``beam_as`` beam on the grid of a CASA image, [x, y, 1, chan]."""
    ia = ct.image()
    ia.open(str(path))
    shape = ia.shape()
    cs = ia.coordsys()
    cs.setunits(type="direction", value="rad rad")
    nx, ny, nchan = int(shape[0]), int(shape[1]), int(shape[3])
    pix = np.zeros((4, nx * ny))
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    pix[0], pix[1] = xx.ravel(), yy.ravel()
    world = cs.toworldmany(pix)["numeric"]
    chan = np.zeros((4, nchan))
    chan[3] = np.arange(nchan)
    freqs = cs.toworldmany(chan)["numeric"][3]
    cs.done()
    ia.done()
    rad2as = 180 / math.pi * 3600
    x = (world[0].reshape(nx, ny) - math.radians(sky.ra_deg)) * math.cos(math.radians(sky.dec_deg)) * rad2as
    y = (world[1].reshape(nx, ny) - math.radians(sky.dec_deg)) * rad2as
    v = C_KMS * (1 - freqs / RESTFREQ)
    plane = sky.image(x, y, beam_as, beam_as)
    return np.stack([plane * sky.profile(vc) for vc in v], axis=-1)[:, :, None, :]
