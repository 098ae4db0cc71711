"""FITS essentials of a product for the catalog (an ObsCore-like searchable subset).

Only the header is read (``astropy.io.fits.getheader``), so this is cheap for large cubes.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FITS_FIELDS", "fits_essentials"]

log = logging.getLogger(__name__)

#: catalog columns filled by :func:`fits_essentials` (all ``None`` for non-FITS files)
FITS_FIELDS = (
    "bunit", "shape", "bmaj_arcsec", "bmin_arcsec", "bpa_deg", "pixel_arcsec", "chan_width_kms",
    "vel_min_kms", "vel_max_kms", "restfreq_hz", "ra_deg", "dec_deg", "ra_min_deg", "ra_max_deg",
    "dec_min_deg", "dec_max_deg", "footprint",
)


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def fits_essentials(path: str | Path) -> dict[str, Any]:
    """Beam, pixel size, spectral axis, units, shape and sky footprint of a FITS image/cube.

    Parameters
    ----------
    path : str or Path
        FITS file (primary HDU). Files not ending in ``.fits``/``.fits.gz`` give all ``None``.

    Returns
    -------
    dict
        Keys of :data:`FITS_FIELDS`: ``bunit``; ``shape`` (numpy order, slowest axis first,
        list of int); ``bmaj_arcsec``, ``bmin_arcsec`` [arcsec], ``bpa_deg`` [deg];
        ``pixel_arcsec`` [arcsec] (geometric mean of the two sky axes); ``chan_width_kms``,
        ``vel_min_kms``, ``vel_max_kms`` [km/s] (radio convention when the axis is frequency
        and a rest frequency is known); ``restfreq_hz`` [Hz]; ``ra_deg``, ``dec_deg``
        [deg] of the image centre; ``ra_min/max_deg``, ``dec_min/max_deg`` [deg] of the
        corners (no RA wrap handling) and ``footprint`` (list of 4 [ra, dec] corners).
        Fields that cannot be derived are ``None``; a header that cannot be read logs a
        warning and gives all ``None``.
    """
    out: dict[str, Any] = dict.fromkeys(FITS_FIELDS)
    name = Path(path).name.lower()
    if not (name.endswith(".fits") or name.endswith(".fits.gz")):
        return out
    from astropy import units as u
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        hdr = fits.getheader(path)
    except Exception as exc:  # noqa: BLE001 - catalog metadata is best effort
        log.warning("cannot read the FITS header of %s: %s", path, exc)
        return out
    naxis = int(hdr.get("NAXIS", 0))
    out["shape"] = [int(hdr.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1)]
    out["bunit"] = str(hdr["BUNIT"]).strip() if "BUNIT" in hdr else None
    bmaj, bmin = _float(hdr.get("BMAJ")), _float(hdr.get("BMIN"))
    out["bmaj_arcsec"] = bmaj * 3600.0 if bmaj is not None else None
    out["bmin_arcsec"] = bmin * 3600.0 if bmin is not None else None
    out["bpa_deg"] = _float(hdr.get("BPA"))
    restfreq = _float(hdr.get("RESTFRQ", hdr.get("RESTFREQ")))
    out["restfreq_hz"] = restfreq
    if naxis < 2:
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(hdr)
    except Exception as exc:  # noqa: BLE001
        log.warning("cannot parse the WCS of %s: %s", path, exc)
        return out
    if wcs.has_celestial:
        cel = wcs.celestial
        nx = int(hdr.get(f"NAXIS{wcs.wcs.lng + 1}", 0))
        ny = int(hdr.get(f"NAXIS{wcs.wcs.lat + 1}", 0))
        scales = proj_plane_pixel_scales(cel)
        out["pixel_arcsec"] = float(np.sqrt(abs(scales[0] * scales[1]))) * 3600.0
        if nx > 0 and ny > 0:
            corners = cel.calc_footprint(axes=(nx, ny))
            out["footprint"] = [[float(a), float(b)] for a, b in corners]
            out["ra_min_deg"], out["ra_max_deg"] = float(corners[:, 0].min()), float(corners[:, 0].max())
            out["dec_min_deg"], out["dec_max_deg"] = float(corners[:, 1].min()), float(corners[:, 1].max())
            ra, dec = cel.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
            out["ra_deg"], out["dec_deg"] = float(ra), float(dec)
    if wcs.has_spectral:
        spec = wcs.spectral
        ispec = wcs.wcs.spec
        nchan = int(hdr.get(f"NAXIS{ispec + 1}", 0))
        if nchan > 0:
            values = np.asarray(spec.pixel_to_world_values(np.arange(nchan)), dtype=float)
            ctype = spec.wcs.ctype[0].upper()
            unit = u.Unit(spec.world_axis_units[0] or "")
            vel: np.ndarray | None = None
            if ctype.startswith(("VRAD", "VELO", "VOPT")) and unit.is_equivalent(u.km / u.s):
                vel = (values * unit).to_value(u.km / u.s)
            elif ctype.startswith("FREQ") and restfreq and unit.is_equivalent(u.Hz):
                vel = (values * unit).to_value(u.km / u.s, equivalencies=u.doppler_radio(restfreq * u.Hz))
            if vel is not None and np.all(np.isfinite(vel)):
                out["vel_min_kms"], out["vel_max_kms"] = float(vel.min()), float(vel.max())
                out["chan_width_kms"] = float(np.abs(np.diff(vel)).mean()) if nchan > 1 else None
    return out
