"""Derived products of spectral cubes with the PHANGS-ALMA numerics (stage 4).

Per-step routines (file paths + keyword arguments in, a result dataclass with ``to_dict()``
out), meant to be wrapped one per Airflow task:

* :func:`~.convolution.convolve_cube` -> ``ConvolveResult``
* :func:`~.noise.make_noise_cube` -> ``NoiseResult``
* :func:`~.masks.make_strict_mask`, :func:`~.masks.make_broad_mask`,
  :func:`~.masks.make_flat_mask` -> ``MaskResult``
* :func:`~.moments.make_moments` (round 1 and 3), :func:`~.moments.make_mom1wprior` (round 2)
  -> ``MomentResult``
* :func:`~.stage.run_derived_stage`: all of it for one cube (what ``phangs derive`` runs).

Names are resolved lazily so that importing the package stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "convolve_cube": "convolution", "ConvolveResult": "convolution",
    "make_noise_cube": "noise", "NoiseResult": "noise", "mad_zero_centered": "noise",
    "make_strict_mask": "masks", "make_broad_mask": "masks", "make_flat_mask": "masks",
    "MaskResult": "masks",
    "make_moments": "moments", "make_mom1wprior": "moments", "MomentResult": "moments",
    "MomentDef": "moments", "PHANGS_MOMENTS": "moments", "read_moment_key": "moments",
    "run_derived_stage": "stage", "DerivedStageResult": "stage", "parse_resolutions": "stage",
    "derived_name": "stage",
    "read_cube": "io", "CubeInfo": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
