"""PHANGS clean-up of exported FITS headers (astropy only, no CASA).

``exportfits`` writes cards that confuse users or leak observing details; PHANGS
``export_and_cleanup`` removes them, drops the history, records the data range, rounds a
nearly round beam and stamps the pipeline. :func:`clean_header` is that rule set, plus the
spectral-axis and telescope normalisation the science-ready cubes need (``CTYPE3 VRAD``,
``CUNIT3 m/s``, ``SPECSYS LSRK``, ``TELESCOP ALMA``).
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.io import fits

from phangs_operators.routines.post.maths import beam_is_round

log = logging.getLogger(__name__)

__all__ = ["REMOVED_CARDS", "PIPELINE_COMMENT", "clean_header"]

#: cards removed from every exported cube (PHANGS ``export_and_cleanup``)
REMOVED_CARDS = (
    "BLANK",
    "DATE-OBS",
    "OBSERVER",
    "O_BLANK",
    "O_BSCALE",
    "O_BZERO",
    "OBSRA",
    "OBSDEC",
    "OBSGEO-X",
    "OBSGEO-Y",
    "OBSGEO-Z",
    "DISTANCE",
)

PIPELINE_COMMENT = "Produced with the phangs-airflow re-implementation of the PHANGS-ALMA pipeline"


def _spectral_axis(hdr: fits.Header) -> int | None:
    for i in range(1, int(hdr.get("NAXIS", 0)) + 1):
        ctype = str(hdr.get(f"CTYPE{i}", "")).upper()
        if ctype.startswith(("VRAD", "FREQ", "VELO", "VOPT", "FELO", "ZOPT", "VELOCITY")):
            return i
    return None


def clean_header(
    hdr: fits.Header,
    data: np.ndarray | None = None,
    *,
    object_name: str | None = None,
    round_beam: bool = True,
    roundbeam_tol: float = 0.01,
    telescope: str | None = "ALMA",
    remove_cards: tuple[str, ...] = (),
    add_cards: dict[str, object] | None = None,
    pipeline_version: str | None = None,
) -> list[str]:
    """Clean ``hdr`` in place; returns a list of human-readable notes (what changed).

    Parameters
    ----------
    hdr : astropy.io.fits.Header
        Header written by ``exportfits`` (modified in place).
    data : numpy.ndarray, optional
        The data, for ``DATAMIN``/``DATAMAX`` (NaN-aware).
    object_name : str, optional
        ``OBJECT`` card (PHANGS: the target name in upper case).
    round_beam : bool
        Set ``BMIN = BMAJ`` and ``BPA = 0`` when ``|BMAJ - BMIN| / BMAJ <= roundbeam_tol``.
    telescope : str or None
        ``TELESCOP`` value (a 12m+7m concat is written as ``ACA``/mixed by CASA); None keeps it.
    remove_cards : tuple of str
        Extra cards to remove.
    add_cards : dict, optional
        Extra cards to set.
    pipeline_version : str, optional
        Appended to the provenance COMMENT.
    """
    notes: list[str] = []
    for card in (*REMOVED_CARDS, *remove_cards):
        while card in hdr:
            del hdr[card]
    n_hist = len(hdr.get("HISTORY", []))
    if n_hist:
        del hdr["HISTORY"]
        notes.append(f"removed {n_hist} HISTORY cards")
    if object_name:
        hdr["OBJECT"] = object_name.upper()
    if telescope:
        if hdr.get("TELESCOP") not in (None, telescope):
            notes.append(f"TELESCOP {hdr['TELESCOP']} -> {telescope}")
        hdr["TELESCOP"] = telescope
    for key, value in (add_cards or {}).items():
        hdr[key] = value
    if data is not None and np.isfinite(data).any():
        hdr["DATAMAX"] = float(np.nanmax(data))
        hdr["DATAMIN"] = float(np.nanmin(data))
    if round_beam and "BMAJ" in hdr and "BMIN" in hdr:
        bmaj, bmin = float(hdr["BMAJ"]), float(hdr["BMIN"])
        if bmaj != bmin:
            if beam_is_round(bmaj, bmin, roundbeam_tol):
                hdr["BMIN"] = bmaj
                hdr["BPA"] = 0.0
                notes.append("beam rounded")
            else:
                notes.append(f"beam not round: |bmaj-bmin|/bmaj = {abs(bmaj - bmin) / bmaj:.4f}")
    spec = _spectral_axis(hdr)
    if spec is not None:
        ctype = str(hdr[f"CTYPE{spec}"]).upper()
        if ctype.startswith("VELO") and "RADIO" in str(hdr.get("VELREF", "")).upper():
            hdr[f"CTYPE{spec}"] = "VRAD"
        if str(hdr.get(f"CUNIT{spec}", "")).strip().lower() in ("km/s", "km s-1"):
            hdr[f"CRVAL{spec}"] = float(hdr[f"CRVAL{spec}"]) * 1e3
            hdr[f"CDELT{spec}"] = float(hdr[f"CDELT{spec}"]) * 1e3
            hdr[f"CUNIT{spec}"] = "m/s"
        if "SPECSYS" not in hdr:
            hdr["SPECSYS"] = "LSRK"
    comment = PIPELINE_COMMENT + (f" version {pipeline_version}" if pipeline_version else "")
    hdr["COMMENT"] = comment
    return notes
