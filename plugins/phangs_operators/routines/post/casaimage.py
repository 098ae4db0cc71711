"""Small readers and writers of CASA images for the post-processing routines.

All CASA access goes through :func:`phangs_operators.casa.casatools` (lazy import).
Angles are returned in arcsec or radians as the names say, frequencies in Hz.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phangs_operators.casa import casatools
from phangs_operators.errors import CubeError, ImagingError

log = logging.getLogger(__name__)

__all__ = [
    "ImageInfo",
    "and_masks",
    "block_boxes",
    "channel_blocks",
    "get_block",
    "get_mask",
    "opened",
    "put_mask_block",
    "valid_projections",
    "copy_image",
    "image_info",
    "publish",
    "read_cube",
    "remove_path",
    "require_image",
    "scratch_name",
]

C_KMS = 299792.458
#: pixels per block when routines stream a cube channel-block by channel-block (~32 MB float32)
BLOCK_PIXELS = 8_000_000
RAD2AS = 180.0 / np.pi * 3600.0


def require_image(path: str | os.PathLike[str], what: str = "image") -> Path:
    """Return ``path`` as a Path if it is a CASA image directory, else raise ImagingError."""
    p = Path(path)
    if not p.is_dir() or not (p / "table.dat").exists():
        raise ImagingError(f"{what} not found or not a CASA image: {p}")
    return p


def remove_path(path: str | os.PathLike[str]) -> None:
    """Delete a file or directory tree if it exists."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def scratch_name(final: str | os.PathLike[str]) -> Path:
    """Temporary sibling name of ``final`` (same filesystem, so the publish is a rename).

    The parent directory of ``final`` is created if needed.
    """
    f = Path(final)
    f.parent.mkdir(parents=True, exist_ok=True)
    return f.with_name(f".{f.name}.tmp{os.getpid()}")


def publish(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Rename the finished ``tmp`` to ``final``, replacing an older ``final``."""
    f = Path(final)
    remove_path(f)
    os.replace(tmp, f)
    return f


def copy_image(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a CASA image directory (a plain tree copy; CASA images are relocatable)."""
    remove_path(dst)
    shutil.copytree(src, dst)
    return Path(dst)


@dataclass
class ImageInfo:
    """Metadata of one CASA image.

    Attributes
    ----------
    path : str
    shape : tuple of int
    axis_types : list of str
        CASA coordinate types per pixel axis ('Direction', 'Stokes', 'Spectral').
    axis_names : list of str
    unit : str
        Brightness unit as stored.
    beams : numpy.ndarray or None
        ``(nchan, 3)``: major, minor [arcsec], position angle [deg], per plane (a single
        beam is repeated); None without a beam.
    per_plane_beams : bool
    pixel_arcsec : float
        ``|cdelt|`` of the first direction axis.
    freqs_hz : numpy.ndarray
        Frequency of every channel (empty without a spectral axis).
    restfreq_hz : float
    """

    path: str
    shape: tuple[int, ...]
    axis_types: list[str]
    axis_names: list[str]
    unit: str
    beams: np.ndarray | None
    per_plane_beams: bool
    pixel_arcsec: float
    freqs_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    restfreq_hz: float = 0.0

    @property
    def spectral_axis(self) -> int | None:
        return self.axis_types.index("Spectral") if "Spectral" in self.axis_types else None

    @property
    def stokes_axis(self) -> int | None:
        return self.axis_types.index("Stokes") if "Stokes" in self.axis_types else None

    @property
    def nchan(self) -> int:
        ax = self.spectral_axis
        return 1 if ax is None else int(self.shape[ax])

    @property
    def bmaj_max(self) -> float:
        if self.beams is None:
            raise CubeError(f"{self.path}: image has no restoring beam")
        return float(self.beams[:, 0].max())

    @property
    def unit_normalised(self) -> str:
        u = self.unit.strip().replace(" ", "").lower()
        return {"jy/beam": "Jy/beam", "k": "K"}.get(u, self.unit.strip())

    def velocities_kms(self) -> np.ndarray:
        """Radio velocity of every channel [km/s]."""
        if self.restfreq_hz <= 0:
            raise CubeError(f"{self.path}: no rest frequency")
        return C_KMS * (1.0 - self.freqs_hz / self.restfreq_hz)

    def channel_width_kms(self) -> float:
        v = self.velocities_kms()
        return float(abs(v[1] - v[0])) if v.size > 1 else 0.0


def _beams_from_record(rb: dict, nchan: int) -> np.ndarray | None:
    def one(b: dict) -> tuple[float, float, float]:
        qa = casatools().quanta()
        maj = qa.convert(b["major"], "arcsec")["value"]
        mnr = qa.convert(b["minor"], "arcsec")["value"]
        pa = qa.convert(b["positionangle"], "deg")["value"]
        return float(maj), float(mnr), float(pa)

    if not rb:
        return None
    if "beams" in rb:
        rows = [one(rb["beams"][f"*{i}"]["*0"]) for i in range(int(rb["nChannels"]))]
        return np.array(rows, dtype=float)
    return np.tile(np.array(one(rb), dtype=float), (max(nchan, 1), 1))


def image_info(path: str | os.PathLike[str], what: str = "image") -> ImageInfo:
    """Read the metadata of a CASA image (raises ImagingError when it is missing)."""
    p = require_image(path, what)
    ct = casatools()
    ia = ct.image()
    try:
        ia.open(str(p))
        shape = tuple(int(n) for n in ia.shape())
        cs = ia.coordsys()
        types = list(cs.axiscoordinatetypes())
        names = list(cs.names())
        unit = ia.brightnessunit()
        rb = ia.restoringbeam()
        if "Direction" not in types:
            raise CubeError(f"{p}: no direction axes")
        cs.setunits(type="direction", value="rad rad")
        incr = cs.increment()["numeric"]
        pixel_as = abs(float(incr[types.index("Direction")])) * RAD2AS
        freqs = np.zeros(0)
        restfreq = 0.0
        if "Spectral" in types:
            ax = types.index("Spectral")
            n = shape[ax]
            pix = np.zeros((len(shape), n))
            pix[ax] = np.arange(n)
            world = cs.toworldmany(pix)["numeric"]
            freqs = np.asarray(world[ax], dtype=float)
            restfreq = float(cs.restfrequency()["value"][0])
        cs.done()
    finally:
        ia.done()
    nchan = shape[types.index("Spectral")] if "Spectral" in types else 1
    beams = _beams_from_record(rb, nchan)
    return ImageInfo(
        path=str(p),
        shape=shape,
        axis_types=types,
        axis_names=names,
        unit=unit,
        beams=beams,
        per_plane_beams=bool(rb) and "beams" in rb,
        pixel_arcsec=pixel_as,
        freqs_hz=freqs,
        restfreq_hz=restfreq,
    )


def block_boxes(
    shape: tuple[int, ...], spectral_axis: int | None, max_pixels: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """(blc, trc) boxes covering an image in blocks of whole channels (bounded memory).

    ``max_pixels`` defaults to :data:`BLOCK_PIXELS` (read at call time); a block always holds
    at least one channel.
    """
    max_pixels = BLOCK_PIXELS if max_pixels is None else max_pixels
    nd = len(shape)
    if spectral_axis is None:
        return [([0] * nd, [n - 1 for n in shape])]
    per_chan = int(np.prod(shape)) // max(shape[spectral_axis], 1)
    step = max(1, max_pixels // max(per_chan, 1))
    boxes = []
    for start in range(0, shape[spectral_axis], step):
        blc = [0] * nd
        trc = [n - 1 for n in shape]
        blc[spectral_axis] = start
        trc[spectral_axis] = min(shape[spectral_axis] - 1, start + step - 1)
        boxes.append((blc, trc))
    return boxes


def channel_blocks(info: ImageInfo, max_pixels: int | None = None) -> list[tuple[list[int], list[int]]]:
    """:func:`block_boxes` of an image described by ``info``."""
    return block_boxes(info.shape, info.spectral_axis, max_pixels)


@contextlib.contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[Any]:
    """An image tool opened on ``path`` (closed on exit)."""
    ia = casatools().image()
    try:
        ia.open(str(path))
        yield ia
    finally:
        ia.done()


def get_mask(ia: Any, blc: list[int], trc: list[int]) -> np.ndarray:
    """Pixel mask (True = good) of one box, without reading the data."""
    return np.asarray(ia.getchunk(blc=blc, trc=trc, getmask=True), dtype=bool)


def get_block(ia: Any, blc: list[int], trc: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Data (float32, NaN where invalid) and validity (mask and finite) of one box."""
    data = np.asarray(ia.getchunk(blc=blc, trc=trc), dtype=np.float32)
    valid = np.asarray(ia.getchunk(blc=blc, trc=trc, getmask=True), dtype=bool) & np.isfinite(data)
    return np.where(valid, data, np.float32(np.nan)), valid


def _ensure_mask(ia: Any) -> None:
    if not ia.maskhandler("get"):
        ia.calcmask("T", name="mask0", asdefault=True)


def put_mask_block(ia: Any, valid: np.ndarray, blc: list[int], trc: list[int]) -> None:
    """Write ``valid`` as the default pixel mask of one box (a mask is created if none)."""
    _ensure_mask(ia)
    rg = casatools().regionmanager()
    try:
        ia.putregion(pixelmask=np.asarray(valid, dtype=bool), region=rg.box(blc=blc, trc=trc), usemask=False)
    finally:
        rg.done()


def valid_projections(path: str | os.PathLike[str], mask_only: bool = False) -> tuple[list[np.ndarray], int]:
    """Per-axis "any valid pixel" projections and the number of valid pixels, block by block.

    ``mask_only`` trusts the pixel mask (images written by CASA tasks) and skips reading the
    data; otherwise NaN pixels count as invalid too.
    """
    info = image_info(path)
    proj = [np.zeros(n, dtype=bool) for n in info.shape]
    count = 0
    with opened(path) as ia:
        for blc, trc in channel_blocks(info):
            valid = get_mask(ia, blc, trc) if mask_only else get_block(ia, blc, trc)[1]
            count += int(valid.sum())
            for ax in range(valid.ndim):
                other = tuple(i for i in range(valid.ndim) if i != ax)
                proj[ax][blc[ax]: trc[ax] + 1] |= valid.any(axis=other)
    return proj, count


def and_masks(target: str | os.PathLike[str], others: list[str | os.PathLike[str]]) -> int:
    """Mask ``target`` wherever it or any of ``others`` (same shape) is invalid; returns #valid.

    NaN pixels of ``target`` are masked; only the pixel masks of ``others`` are read."""
    info = image_info(target)
    count = 0
    tools = [casatools().image() for _ in others]
    try:
        for t, o in zip(tools, others, strict=True):
            t.open(str(o))
        with opened(target) as ia:
            for blc, trc in channel_blocks(info):
                _, valid = get_block(ia, blc, trc)
                for t in tools:
                    valid &= get_mask(t, blc, trc)
                put_mask_block(ia, valid, blc, trc)
                count += int(valid.sum())
    finally:
        for t in tools:
            t.done()
    return count


def read_cube(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Data (float64, NaN where masked) and validity mask of a whole image.

    For tests and small images only: the routines read cubes block by block.
    """
    ia = casatools().image()
    try:
        ia.open(str(path))
        data = np.asarray(ia.getchunk(), dtype=float)
        mask = np.asarray(ia.getchunk(getmask=True), dtype=bool)
    finally:
        ia.done()
    valid = mask & np.isfinite(data)
    return np.where(valid, data, np.nan), valid
