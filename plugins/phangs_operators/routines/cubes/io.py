"""FITS input/output for the derived-products stage: validated cube reading, atomic writing.

Every reader raises :class:`~phangs_operators.errors.CubeError` naming the file; every writer
writes under a temporary name in the destination directory and renames at the end, so a
product is either complete or absent (:class:`OutputTransaction` extends this to a group of
files).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from phangs_operators.errors import CubeError
from phangs_operators.jsonable import jsonable

logger = logging.getLogger(__name__)

__all__ = [
    "CubeInfo",
    "OutputTransaction",
    "ResultBase",
    "atomic_writeto",
    "read_cube",
    "read_map",
    "read_mask_cube",
    "same_grid",
]

#: COMMENT cards put on every derived product.
PIPELINE_COMMENT = "Produced with phangs-airflow (PHANGS-ALMA derived products re-implementation)"


@dataclass
class ResultBase:
    """Base of the routine result dataclasses: ``to_dict()`` gives JSON-serialisable values."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclass
class CubeInfo:
    """A validated spectral cube (v, y, x) read from FITS.

    Attributes
    ----------
    path : Path
        The file.
    data : numpy.ndarray
        The data (float32, possibly big-endian: a read-only memory map when the file allows
        it; routines convert it block by block).
    header : astropy.io.fits.Header
        The primary header (3-D).
    wcs : astropy.wcs.WCS
        Its 3-D WCS.
    beam_arcsec : tuple of float
        (BMAJ, BMIN) [arcsec] and :attr:`bpa_deg`.
    velocity_kms : numpy.ndarray
        Channel velocities [km/s] (radio convention for frequency axes).
    """

    path: Path
    data: np.ndarray
    header: fits.Header
    wcs: WCS
    beam_arcsec: tuple[float, float]
    bpa_deg: float
    velocity_kms: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def pixel_area_arcsec2(self) -> float:
        """Area of one pixel [arcsec^2]."""
        return float(proj_plane_pixel_area(self.wcs.celestial)) * 3600.0**2

    @property
    def pixels_per_beam(self) -> float:
        """Gaussian beam area pi*bmaj*bmin/(4 ln 2) in pixels."""
        bmaj, bmin = self.beam_arcsec
        return float(np.pi * bmaj * bmin / (4.0 * np.log(2.0)) / self.pixel_area_arcsec2)

    def kelvin_per_unit(self) -> np.ndarray:
        """Per-channel factor converting the data unit to K (1 for K; Rayleigh-Jeans
        ``radio_beam.Beam.jtok`` at each channel's radio-convention frequency for Jy/beam).

        Raises
        ------
        CubeError
            A unit that is neither a temperature nor a surface brightness per beam.
        """
        bunit = str(self.header.get("BUNIT", "K")).strip() or "K"
        try:
            unit = u.Unit(bunit.replace("JY", "Jy"), parse_strict="raise")
        except ValueError as exc:
            raise CubeError(f"{self.path}: unknown BUNIT {bunit!r}") from exc
        nchan = self.shape[0]
        if unit.is_equivalent(u.K):
            return np.full(nchan, unit.to(u.K))
        if unit.is_equivalent(u.Jy / u.beam):
            from radio_beam import Beam

            restfrq = self.header.get("RESTFRQ", self.header.get("RESTFREQ"))
            if not restfrq:
                raise CubeError(f"{self.path}: {bunit} cube without RESTFRQ; cannot convert to K")
            freq = float(restfrq) * (1.0 - self.velocity_kms / 299792.458)
            beam = Beam(major=self.beam_arcsec[0] * u.arcsec, minor=self.beam_arcsec[1] * u.arcsec,
                        pa=self.bpa_deg * u.deg)
            jtok = beam.jtok(freq * u.Hz).to_value(u.K)
            return np.asarray(jtok, dtype=np.float64) * unit.to(u.Jy / u.beam)
        raise CubeError(f"{self.path}: BUNIT {bunit!r} is neither K nor Jy/beam")

    @property
    def channel_width_kms(self) -> float:
        """Median absolute channel width [km/s] (the PHANGS ``channel_width``)."""
        if self.velocity_kms.size < 2:
            return float("nan")
        return float(np.abs(np.median(np.diff(self.velocity_kms))))


def _header_beam(header: fits.Header, path: Path) -> tuple[float, float, float]:
    if "BMAJ" in header and "BMIN" in header:
        bmaj = float(header["BMAJ"]) * 3600.0
        bmin = float(header["BMIN"]) * 3600.0
        if not (np.isfinite(bmaj) and bmaj > 0 and np.isfinite(bmin) and bmin > 0):
            raise CubeError(f"{path}: invalid beam BMAJ/BMIN ({bmaj}, {bmin} arcsec)")
        return bmaj, bmin, float(header.get("BPA", 0.0))
    raise CubeError(f"{path}: no beam (BMAJ/BMIN cards missing); derived products need one")


def _velocity_axis(wcs: WCS, header: fits.Header, nchan: int, path: Path) -> np.ndarray:
    """Channel velocities in km/s from a 3-D WCS (velocity or frequency spectral axis)."""
    spec = wcs.sub([3])
    ctype = str(header.get("CTYPE3", "")).upper()
    pix = np.arange(nchan, dtype=float)
    world = spec.all_pix2world(pix, 0)[0]
    unit = spec.wcs.cunit[0]
    try:
        q = u.Quantity(world, unit)
    except Exception as exc:  # noqa: BLE001 - unknown unit in a user file
        raise CubeError(f"{path}: unusable spectral unit {unit!r}: {exc}") from exc
    if q.unit.is_equivalent(u.km / u.s):
        return q.to_value(u.km / u.s)
    if q.unit.is_equivalent(u.Hz):
        restfrq = header.get("RESTFRQ", header.get("RESTFREQ"))
        if not restfrq:
            raise CubeError(f"{path}: frequency axis {ctype} without RESTFRQ")
        return q.to_value(
            u.km / u.s, equivalencies=u.doppler_radio(float(restfrq) * u.Hz)
        )
    raise CubeError(f"{path}: axis 3 ({ctype or 'no CTYPE3'}) is not a spectral axis")


def _squeeze_header(header: fits.Header, data: np.ndarray, path: Path) -> np.ndarray:
    """Drop a degenerate 4th (Stokes) axis; returns the 3-D data."""
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise CubeError(f"{path}: 4-D cube with {data.shape[0]} Stokes planes; need one")
        data = data[0]
        for key in list(header.keys()):
            if key.endswith("4") and key[:-1] in (
                "CTYPE", "CRVAL", "CDELT", "CRPIX", "CUNIT", "CROTA", "NAXIS",
            ):
                del header[key]
        for key in ("PC1_4", "PC2_4", "PC3_4", "PC4_1", "PC4_2", "PC4_3", "PC4_4"):
            header.remove(key, ignore_missing=True)
        header["NAXIS"] = 3
    return data


def read_cube(path: str | Path, *, memmap: bool = True, require_beam: bool = True,
              require_finite: bool = True) -> CubeInfo:
    """Read and validate a spectral cube.

    Parameters
    ----------
    path : str or Path
        FITS file with a 3-D (or 4-D with one Stokes plane) primary HDU, axes RA, Dec,
        velocity/frequency.
    memmap : bool
        Memory-map the data when possible (big cubes).
    require_beam : bool
        Raise if BMAJ/BMIN are missing.
    require_finite : bool
        Raise if every voxel is NaN.

    Raises
    ------
    CubeError
        Not a FITS file, not a cube, no beam, no spectral axis, or all NaN; the message names
        the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CubeError(f"{path}: no such file")
    try:
        hdul = fits.open(path, memmap=memmap, lazy_load_hdus=True)
        header = hdul[0].header.copy()
        data = hdul[0].data
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for bad files
        raise CubeError(f"{path}: not a readable FITS file ({exc})") from exc
    if data is None:
        raise CubeError(f"{path}: primary HDU has no data; not a cube")
    data = _squeeze_header(header, data, path)
    if data.ndim != 3:
        raise CubeError(f"{path}: {data.ndim}-D image; a (v, y, x) cube is needed")
    if data.shape[0] < 2:
        raise CubeError(f"{path}: only {data.shape[0]} channel; a cube needs several")
    try:
        wcs = WCS(header, naxis=3)
    except Exception as exc:  # noqa: BLE001
        raise CubeError(f"{path}: bad WCS ({exc})") from exc
    if not wcs.has_celestial:
        raise CubeError(f"{path}: no celestial (RA/Dec) axes")
    if wcs.wcs.spec != 2:
        raise CubeError(
            f"{path}: axis 3 ({header.get('CTYPE3', 'no CTYPE3')}) is not a spectral axis"
        )
    velocity = _velocity_axis(wcs, header, data.shape[0], path)
    if require_beam:
        bmaj, bmin, bpa = _header_beam(header, path)
    else:
        try:
            bmaj, bmin, bpa = _header_beam(header, path)
        except CubeError:
            bmaj = bmin = bpa = float("nan")
    if data.dtype.kind == "f" and data.dtype.itemsize != 4:
        # float64 -> float32 copy; float32 (even big-endian) stays memory-mapped and is
        # converted block by block by the routines
        data = np.asarray(data, dtype=np.float32)
    elif data.dtype.kind not in "fiub":
        raise CubeError(f"{path}: unsupported data type {data.dtype}")
    if require_finite and not _any_finite(data):
        raise CubeError(f"{path}: every voxel is NaN/inf; nothing to derive")
    return CubeInfo(path=path, data=data, header=header, wcs=wcs,
                    beam_arcsec=(bmaj, bmin), bpa_deg=bpa, velocity_kms=velocity)


def _any_finite(data: np.ndarray, block: int = 16) -> bool:
    for z0 in range(0, data.shape[0], block):
        if np.isfinite(data[z0:z0 + block]).any():
            return True
    return False


def read_mask_cube(path: str | Path, like: CubeInfo) -> np.ndarray:
    """Read a 0/1 mask cube and check it is on the grid of ``like``; returns bool (v, y, x)."""
    path = Path(path)
    info = read_cube(path, require_beam=False, require_finite=False)
    if not same_grid(info.header, like.header, info.shape, like.shape):
        raise CubeError(
            f"{path}: mask grid {info.shape} does not match the cube {like.path} {like.shape}"
        )
    out = np.empty(info.shape, dtype=bool)
    for z0 in range(0, info.shape[0], 32):
        blk = info.data[z0:z0 + 32]
        out[z0:z0 + 32] = np.isfinite(blk) & (blk > 0.5)
    return out


def read_map(path: str | Path) -> tuple[np.ndarray, fits.Header]:
    """Read a 2-D map (float64) and its header; CubeError if not 2-D."""
    path = Path(path)
    if not path.is_file():
        raise CubeError(f"{path}: no such file")
    try:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = hdul[0].data
            data = None if data is None else np.array(data, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        raise CubeError(f"{path}: not a readable FITS file ({exc})") from exc
    if data is None:
        raise CubeError(f"{path}: no data")
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise CubeError(f"{path}: {data.ndim}-D; a 2-D map is needed")
    return data, header


_GRID_KEYS = ("CTYPE", "CRVAL", "CDELT", "CRPIX", "CUNIT")


def same_grid(h1: fits.Header, h2: fits.Header, s1: tuple[int, ...], s2: tuple[int, ...],
              naxis: int = 3) -> bool:
    """True when two headers describe the same pixel grid (shape and WCS, 1e-9 relative)."""
    if tuple(s1) != tuple(s2):
        return False
    w1 = WCS(h1, naxis=naxis).to_header()
    w2 = WCS(h2, naxis=naxis).to_header()
    for ax in range(1, naxis + 1):
        for key in _GRID_KEYS:
            k = f"{key}{ax}"
            a, b = w1.get(k), w2.get(k)
            if isinstance(a, str) or isinstance(b, str):
                if str(a).strip() != str(b).strip():
                    return False
            elif a is None or b is None:
                if a is not b:
                    return False
            elif not np.isclose(float(a), float(b), rtol=1e-9, atol=1e-12):
                return False
    return True


def block_bytes(shape: tuple[int, ...], fraction: float, cap_mb: float = 64.0) -> int:
    """Size [bytes] of the float32 work blocks: ``fraction`` of the cube, at most ``cap_mb``.

    Routines create several temporaries per block, so the fraction is chosen per routine to
    keep the peak memory near the cube size whatever the cube size.
    """
    cube = 4 * int(np.prod(shape))
    return int(max(256 * 1024, min(cap_mb * 1024**2, fraction * cube)))


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_writeto(hdu: fits.PrimaryHDU | fits.HDUList, path: str | Path) -> Path:
    """Write ``hdu`` to ``path`` through a temporary file in the same directory."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        hdu.writeto(tmp, overwrite=True, output_verify="silentfix")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class OutputTransaction:
    """Stage several output files and publish them together.

    ``tx.path(final)`` returns a temporary path to write to; :meth:`commit` renames all of
    them to their final names; on :meth:`rollback` (or an exception inside ``with``) the
    temporary files are removed and nothing appears under the final names.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}

    def path(self, final: str | Path) -> Path:
        final = Path(final)
        tmp = _tmp_name(final)
        self._pending[final] = tmp
        return tmp

    def pending(self, final: str | Path) -> Path | None:
        """Temporary path already staged for ``final`` (to read back before commit)."""
        return self._pending.get(Path(final))

    def commit(self) -> list[Path]:
        done = []
        for final, tmp in self._pending.items():
            if tmp.exists():
                os.replace(tmp, final)
                done.append(final)
        self._pending.clear()
        return done

    def rollback(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()


@contextmanager
def output_transaction() -> Iterator[OutputTransaction]:
    """Context manager: commit on success, roll back on any exception."""
    tx = OutputTransaction()
    try:
        yield tx
    except BaseException:
        tx.rollback()
        raise
    tx.commit()


def write_fits(data: np.ndarray, header: fits.Header, path: str | Path,
               tx: OutputTransaction | None = None) -> Path:
    """Write ``data`` with ``header`` (atomically, or staged in ``tx``)."""
    hdu = fits.PrimaryHDU(data, header)
    if tx is None:
        return atomic_writeto(hdu, path)
    tmp = tx.path(path)
    hdu.writeto(tmp, overwrite=True, output_verify="silentfix")
    return Path(path)


def map_header(cube: CubeInfo) -> fits.Header:
    """2-D header (celestial WCS + beam + selected cards) for maps derived from ``cube``."""
    hdr = cube.wcs.celestial.to_header()
    out = fits.Header()
    out["NAXIS"] = 2
    out["NAXIS1"] = cube.shape[2]
    out["NAXIS2"] = cube.shape[1]
    out.update(hdr)
    for key in ("BMAJ", "BMIN", "BPA", "JYTOK", "VELREF", "TELESCOP", "INSTRUME", "ORIGIN",
                "OBJECT", "TIMESYS", "MJDREFI", "MJDREFF", "DATEREF", "DIST_MPC", "RESTFRQ"):
        if key in cube.header:
            out[key] = cube.header[key]
    return out


def cube_header(cube: CubeInfo, bunit: str | None = None, btype: str | None = None) -> fits.Header:
    """A clean 3-D output header based on the cube's (no BITPIX/scale cards)."""
    hdr = cube.header.copy()
    for key in ("BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM"):
        hdr.remove(key, ignore_missing=True)
    if bunit is not None:
        hdr["BUNIT"] = bunit
    if btype is not None:
        hdr["BTYPE"] = btype
    return hdr
