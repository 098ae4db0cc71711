"""tclean keyword handling and the PHANGS clean-loop schedule (pure, no CASA import).

The ``.clean`` recipe files are parsed elsewhere (``phangs_operators.keys``); the imaging
routines receive the result as a plain ``dict`` of tclean keywords. This module

* cleans such a dict for casatasks 6.7 (:func:`sanitize_tclean_kwargs`: drops the obsolete
  ``chanchunks`` and anything tclean does not know, forces ``pbmask >= pblimit``);
* holds the PHANGS convergence loop (:class:`CleanSchedule`, PHANGS_REFERENCE §2.2 and
  §11.C): ``niter = min(10 nchan 2^k, 1000 nchan)``, ``cycleniter = min(100 (1+k), 1000)``,
  stop when the model flux changes by less than 1 % (absolute change over the previous
  flux), or goes negative (multiscale stage), never before ``min_loops`` loops and never
  after ``max_loops`` loops.

Loop counting: loops are numbered from 0; ``min_loops=3`` means at least three clean calls
(loops 0, 1, 2) and ``max_loops=20`` at most twenty. The original counted the same way for
the minimum's index but allowed loop index 20 (21 calls); the issue text ("at most 20 loops")
is followed here. An empty model (flux 0 after a loop that started from 0) counts as
converged (frac 0) instead of the original's NaN that ran to the maximum (PHANGS issue #305).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

#: recipe keywords that casatasks 6.7 tclean rejects and that are dropped silently
OBSOLETE_TCLEAN_KEYS = frozenset({"chanchunks"})


#: the imaging-relevant values of PHANGS ``cube_mosaic.clean`` (used under a recipe's own values)
DEFAULT_CUBE_TCLEAN: dict[str, Any] = {
    "specmode": "cube", "outframe": "LSRK", "veltype": "radio", "gridder": "mosaic", "mosweight": True,
    "pblimit": 0.5, "normtype": "flatnoise", "deconvolver": "multiscale", "smallscalebias": 0.9,
    "restoringbeam": "common", "weighting": "briggs", "robust": 0.5, "perchanweightdensity": True, "gain": 0.1,
    "cycleniter": 200, "cyclefactor": 3.0, "minpsffraction": 0.5, "maxpsffraction": 0.8, "usemask": "user",
    "pbmask": 0.0, "stokes": "I", "projection": "SIN", "restart": True, "savemodel": "none",
}
#: the imaging-relevant values of PHANGS ``continuum_mosaic.clean``
DEFAULT_CONTINUUM_TCLEAN: dict[str, Any] = {
    **DEFAULT_CUBE_TCLEAN, "specmode": "mfs", "deconvolver": "mtmfs", "nterms": 2, "restoringbeam": [],
    "cyclefactor": 1.0,
}


def with_defaults(tclean_kw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Recipe keywords on top of the PHANGS defaults (cube or, for ``specmode='mfs'``, continuum)."""
    kw = dict(tclean_kw or {})
    base = DEFAULT_CONTINUUM_TCLEAN if kw.get("specmode") == "mfs" else DEFAULT_CUBE_TCLEAN
    return {**base, **kw}


def sanitize_tclean_kwargs(
    tclean_kw: Mapping[str, Any], tclean: Callable[..., Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Keep only keywords tclean accepts; return ``(kwargs, dropped_names)``.

    Parameters
    ----------
    tclean_kw : mapping
        Recipe keywords (values already typed).
    tclean : callable, optional
        The tclean task whose signature is the allow-list; without it only the obsolete
        keys are dropped.

    Notes
    -----
    ``pbmask`` is raised to ``pblimit`` when lower (PHANGS: pbmask < pblimit gives NaNs in
    cubes with an empty channel).
    """
    kw = {k: v for k, v in tclean_kw.items() if k not in OBSOLETE_TCLEAN_KEYS}
    dropped = sorted(k for k in tclean_kw if k in OBSOLETE_TCLEAN_KEYS)
    if tclean is not None:
        allowed = set(inspect.signature(tclean).parameters)
        unknown = sorted(k for k in kw if k not in allowed)
        if unknown:
            log.warning("tclean does not know %s; dropped", unknown)
        kw = {k: v for k, v in kw.items() if k in allowed}
        dropped += unknown
    if "pblimit" in kw and "pbmask" in kw:
        try:
            if float(kw["pblimit"]) > float(kw["pbmask"]):
                kw["pbmask"] = float(kw["pblimit"])
        except (TypeError, ValueError):
            pass
    return kw, dropped


@dataclass(frozen=True)
class CleanSchedule:
    """PHANGS clean-loop parameters (defaults = the ``phangsalma`` recipe).

    Attributes
    ----------
    niter_base_perchan, niter_growth, niter_saturation_perchan : float
        ``niter = min(base * nchan * growth**k, saturation * nchan)`` (geometric).
    cycleniter_base, cycleniter_growth, cycleniter_saturation : float
        ``cycleniter = min(base * (1 + growth * k), saturation)`` (linear).
    min_loops, max_loops : int
        Clean calls at least / at most.
    convergence_fracflux : float
        Stop when ``|F_k - F_{k-1}| / F_{k-1}`` is below this.
    multiscale_snr, singlescale_snr : float
        Thresholds in units of the noise (4 and 1 for cubes).
    mask_high_snr, mask_low_snr : float
        Single-scale signal mask (4/2 for cubes, 2.5/1 for continuum).
    """

    niter_base_perchan: float = 10
    niter_growth: float = 2.0
    niter_saturation_perchan: float = 1000
    cycleniter_base: float = 100
    cycleniter_growth: float = 1.0
    cycleniter_saturation: float = 1000
    min_loops: int = 3
    max_loops: int = 20
    convergence_fracflux: float = 0.01
    multiscale_snr: float = 4.0
    singlescale_snr: float = 1.0
    mask_high_snr: float = 4.0
    mask_low_snr: float = 2.0

    def niter(self, nchan: int, loop: int) -> int:
        """Total iterations released in loop ``loop`` (0-based) for ``nchan`` channels."""
        n = self.niter_base_perchan * nchan * self.niter_growth**loop
        return int(min(n, self.niter_saturation_perchan * nchan))

    def cycleniter(self, loop: int) -> int:
        """Minor-cycle iterations per major cycle in loop ``loop``."""
        return int(min(self.cycleniter_base * (1.0 + self.cycleniter_growth * loop), self.cycleniter_saturation))

    def decide(
        self, loop: int, previous_flux: float, flux: float, stop_at_negative: bool = True
    ) -> tuple[bool, str, float]:
        """Whether to stop after loop ``loop`` (0-based); returns ``(stop, reason, frac_delta)``.

        ``reason`` is one of ``'converged'``, ``'negative_flux'``, ``'max_loops'`` or ``''``
        (continue). ``frac_delta`` is ``inf`` after the first loop from an empty model.
        """
        delta = abs(flux - previous_flux)
        if previous_flux == 0.0:
            frac = 0.0 if delta == 0.0 else math.inf
        else:
            frac = delta / abs(previous_flux)
        if not math.isfinite(flux):
            return True, "nan_flux", frac
        if loop + 1 >= self.max_loops:
            return True, "max_loops", frac
        if loop + 1 < self.min_loops:
            return False, "", frac
        if stop_at_negative and flux < 0.0:
            return True, "negative_flux", frac
        if frac < self.convergence_fracflux:
            return True, "converged", frac
        return False, "", frac

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the parameters."""
        return asdict(self)


#: continuum (mfs) schedule: PHANGS uses 2.5 / 1.0 sigma for the single-scale mask
CONTINUUM_SCHEDULE = CleanSchedule(mask_high_snr=2.5, mask_low_snr=1.0)


def simulate_loop(schedule: CleanSchedule, nchan: int, fluxes: list[float], stop_at_negative: bool = True) -> list[dict]:
    """Run the schedule over a given model-flux sequence (one flux per loop); for tests and docs.

    Returns the per-loop records ``{loop, niter, cycleniter, model_flux, frac_delta, stop, reason}``
    up to and including the loop that stops (or the end of ``fluxes``).
    """
    out = []
    prev = 0.0
    for k, f in enumerate(fluxes):
        stop, reason, frac = schedule.decide(k, prev, f, stop_at_negative)
        out.append(
            {"loop": k, "niter": schedule.niter(nchan, k), "cycleniter": schedule.cycleniter(k), "model_flux": f,
             "frac_delta": frac, "stop": stop, "reason": reason}
        )
        prev = f
        if stop:
            break
    return out
