"""Fixtures of the post-processing tests: tiny synthetic CASA images built with ``ia.fromarray``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postprocess import synth


@dataclass
class SingleField:
    dir: Path
    interf: synth.InterfCube
    tp_fits: Path
    sky: synth.Sky


@pytest.fixture(scope="session")
def ct():
    from phangs_operators.casa import casatools

    return casatools()


@pytest.fixture(scope="session")
def single_field(tmp_path_factory, ct) -> SingleField:
    """64 x 64 x 8 interferometer-like cube (2" pixels, per-plane beams ~6"x5", 70 % of the
    zero-spacing flux removed), its primary beam (FWHM 110"), and a TP cube (28.5", K)."""
    from phangs_operators.casa import casa_session

    d = tmp_path_factory.mktemp("single")
    sky = synth.Sky()
    with casa_session(d / "casa"):
        ic = synth.make_interferometer(ct, d / "gal_12m_co21", sky)
    tp = synth.write_tp_fits(d / "gal_tp_co21.fits", sky)
    return SingleField(d, ic, tp, sky)


@pytest.fixture(scope="session")
def mosaic_parts(tmp_path_factory, ct):
    """Two overlapping 40 x 40 x 8 parts 48" apart (full spacings, pb FWHM 60"), different beams."""
    from phangs_operators.casa import casa_session

    d = tmp_path_factory.mktemp("mosaic")
    sky = synth.Sky()
    parts = []
    with casa_session(d / "casa"):
        for i, off in enumerate([(-24.0, 0.0), (24.0, 6.0)]):
            parts.append(
                synth.make_interferometer(
                    ct, d / f"gal_{i + 1}_12m_co21", sky, n=40, centre_offset_as=off, missing_fraction=0.0,
                    pb_fwhm_as=60.0, per_plane=False, bmaj=6.0 + 0.3 * i, bmin=5.5, noise=0.001, seed=i,
                )
            )
    return d, sky, parts


@pytest.fixture(scope="session")
def mosaic_with_tp(tmp_path_factory, ct):
    """Two parts with 70 % of the short-spacing flux missing, one TP cube covering both, and
    per-part TP cubes (the same sky) for the per-part path."""
    from phangs_operators.casa import casa_session

    d = tmp_path_factory.mktemp("mosaic_tp")
    sky = synth.Sky()
    roots = []
    with casa_session(d / "casa"):
        for i, off in enumerate([(-24.0, 0.0), (24.0, 6.0)]):
            root = d / f"gal_{i + 1}_12m_co21"
            synth.make_interferometer(ct, root, sky, n=48, centre_offset_as=off, pb_fwhm_as=80.0, per_plane=False,
                                      bmaj=6.0, bmin=5.5, noise=0.001, seed=10 + i)
            roots.append(root)
    tp = synth.write_tp_fits(d / "gal_tp_co21.fits", sky, n=40)
    return d, sky, roots, tp
