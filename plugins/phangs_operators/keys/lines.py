"""Rest frequencies of the spectral lines PHANGS products and flagging refer to.

One table (:data:`LINE_REST_FREQUENCIES_GHZ`) holds every transition a key set may name in
``line_tag`` or ``lines_to_flag``; :data:`LINE_FAMILIES` groups transitions under a family
name (``co``, ``13co``, ``c18o``, ``hcn``, ``hcop``) so that ``lines_to_flag`` can flag every
transition of a molecule that falls in a spectral window.

Rest frequencies are Splatalogue values (GHz).  Velocities use the radio convention,
``nu = nu_0 (1 - v / c)``, with ``c = 2.9979246e5 km/s`` (the PHANGS value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from phangs_operators.errors import KeyFileError

#: speed of light in km/s, as used by the PHANGS pipeline for line windows
C_KMS = 2.9979246e5

#: transition name -> rest frequency in GHz (Splatalogue)
LINE_REST_FREQUENCIES_GHZ: dict[str, float] = {
    # 12CO
    "co10": 115.27120,
    "co21": 230.53800,
    "co32": 345.79599,
    "co43": 461.04077,
    "co54": 576.26793,
    "co65": 691.47308,
    # 13CO
    "13co10": 110.20135,
    "13co21": 220.39868,
    "13co32": 330.58797,
    "13co43": 440.76517,
    "13co54": 550.92629,
    "13co65": 661.06728,
    # C18O
    "c18o10": 109.78217,
    "c18o21": 219.56035,
    "c18o32": 329.33055,
    "c18o43": 439.08877,
    "c18o54": 548.83101,
    "c18o65": 658.55328,
    # HCN (J=1-0 and 2-1: F=2-1 component)
    "hcn10": 88.63185,
    "hcn21": 177.26111,
    "hcn32": 265.88618,
    "hcn43": 354.50548,
    "hcn54": 443.11616,
    "hcn65": 531.71639,
    "hcn76": 620.30410,
    # HCO+
    "hcop10": 89.18852,
    "hcop21": 178.37506,
    "hcop32": 267.55763,
    "hcop43": 356.73422,
    "hcop54": 445.90287,
    "hcop65": 535.06158,
    "hcop76": 624.20836,
}

#: family name -> transitions (all present in :data:`LINE_REST_FREQUENCIES_GHZ`)
LINE_FAMILIES: dict[str, tuple[str, ...]] = {
    "co": ("co10", "co21", "co32", "co43", "co54", "co65"),
    "13co": ("13co10", "13co21", "13co32", "13co43", "13co54", "13co65"),
    "c18o": ("c18o10", "c18o21", "c18o32", "c18o43", "c18o54", "c18o65"),
    "hcn": ("hcn10", "hcn21", "hcn32", "hcn43", "hcn54", "hcn65", "hcn76"),
    "hcop": ("hcop10", "hcop21", "hcop32", "hcop43", "hcop54", "hcop65", "hcop76"),
}

_NON_ALNUM = re.compile(r"[^0-9a-z]")


def normalise_line_name(name: str) -> str:
    """Lower-case a line or family name and drop non-alphanumerics (``'CO(2-1)'`` -> ``'co21'``)."""
    return _NON_ALNUM.sub("", str(name).lower())


def is_line_family(name: str) -> bool:
    """True when ``name`` is a family name such as ``'co'`` or ``'hcop'``."""
    return normalise_line_name(name) in LINE_FAMILIES


def is_known_line(name: str) -> bool:
    """True when ``name`` is a transition of the table (not a family)."""
    return normalise_line_name(name) in LINE_REST_FREQUENCIES_GHZ


def get_line_frequency_ghz(line: str) -> float:
    """Rest frequency of one transition.

    Parameters
    ----------
    line : str
        Transition name (``'co21'``); case and punctuation are ignored.

    Returns
    -------
    float
        Rest frequency in GHz.

    Raises
    ------
    KeyFileError
        The transition is not in the table.
    """
    key = normalise_line_name(line)
    try:
        return LINE_REST_FREQUENCIES_GHZ[key]
    except KeyError:
        raise KeyFileError(
            f"unknown line {line!r}: expected one of {', '.join(sorted(LINE_REST_FREQUENCIES_GHZ))}"
        ) from None


def expand_line_families(lines: Iterable[str] | str) -> list[str]:
    """Expand family names to their transitions, keeping order and dropping repeats.

    Parameters
    ----------
    lines : iterable of str or str
        Transition and/or family names, e.g. ``['co', '13co21']``.

    Returns
    -------
    list of str
        Transition names, e.g. ``['co10', ..., 'co65', '13co21']``.

    Raises
    ------
    KeyFileError
        A name is neither a known transition nor a family.
    """
    if isinstance(lines, str):
        lines = [lines]
    out: list[str] = []
    for name in lines:
        key = normalise_line_name(name)
        if key in LINE_FAMILIES:
            members = LINE_FAMILIES[key]
        elif key in LINE_REST_FREQUENCIES_GHZ:
            members = (key,)
        else:
            raise KeyFileError(
                f"unknown line or line family {name!r}: expected a transition "
                f"({', '.join(sorted(LINE_REST_FREQUENCIES_GHZ))}) or a family "
                f"({', '.join(LINE_FAMILIES)})"
            )
        for m in members:
            if m not in out:
                out.append(m)
    return out


def get_ghz_range_for_line(
    line: str | None = None,
    restfreq_ghz: float | None = None,
    vsys_kms: float | None = None,
    vwidth_kms: float | None = None,
    vlow_kms: float | None = None,
    vhigh_kms: float | None = None,
) -> tuple[float, float]:
    """Observed-frame frequency range covered by a line over a velocity interval.

    Give either ``vsys_kms`` and ``vwidth_kms`` (full width; the interval is
    ``vsys +- vwidth/2``) or ``vlow_kms`` and ``vhigh_kms`` (these win if both are given).

    Parameters
    ----------
    line : str, optional
        Transition name; used when ``restfreq_ghz`` is not given.
    restfreq_ghz : float, optional
        Rest frequency in GHz.
    vsys_kms, vwidth_kms : float, optional
        Systemic velocity and full velocity width in km/s (LSRK, radio convention).
    vlow_kms, vhigh_kms : float, optional
        Velocity interval in km/s.

    Returns
    -------
    (float, float)
        Low and high frequency in GHz, e.g. ``('co21', 657, 254)`` ->
        ``(229.935110, 230.130434)``.

    Raises
    ------
    KeyFileError
        No velocity interval, no rest frequency, or an unknown line.
    """
    if vlow_kms is not None and vhigh_kms is not None:
        v_lo, v_hi = float(vlow_kms), float(vhigh_kms)
    elif vsys_kms is not None and vwidth_kms is not None:
        v_lo = float(vsys_kms) - float(vwidth_kms) / 2.0
        v_hi = float(vsys_kms) + float(vwidth_kms) / 2.0
    else:
        raise KeyFileError("get_ghz_range_for_line needs vsys_kms+vwidth_kms or vlow_kms+vhigh_kms")
    if restfreq_ghz is None:
        if line is None:
            raise KeyFileError("get_ghz_range_for_line needs a line name or restfreq_ghz")
        restfreq_ghz = get_line_frequency_ghz(line)
    edges = (restfreq_ghz * (1.0 - v_lo / C_KMS), restfreq_ghz * (1.0 - v_hi / C_KMS))
    return (min(edges), max(edges))


def merge_ranges(ranges: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge overlapping or touching ``(low, high)`` intervals; result sorted by ``low``."""
    ordered = sorted((min(a, b), max(a, b)) for a, b in ranges)
    merged: list[tuple[float, float]] = []
    for lo, hi in ordered:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def get_ghz_ranges_for_lines(
    lines: Iterable[str] | str,
    vsys_kms: float | None = None,
    vwidth_kms: float | None = None,
    vlow_kms: float | None = None,
    vhigh_kms: float | None = None,
) -> list[tuple[float, float]]:
    """Merged frequency ranges (GHz) of several lines/families over one velocity interval.

    Families are expanded with :func:`expand_line_families`; the per-transition ranges of
    :func:`get_ghz_range_for_line` are merged with :func:`merge_ranges`.
    """
    return merge_ranges(
        get_ghz_range_for_line(
            line=name, vsys_kms=vsys_kms, vwidth_kms=vwidth_kms, vlow_kms=vlow_kms, vhigh_kms=vhigh_kms
        )
        for name in expand_line_families(lines)
    )
