"""Fixtures of the derived-products tests: the reference synthetic cube (section 11.D of the
PHANGS reference) generated on the fly, and one shared run of the whole stage on it."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from phangs_operators.routines.cubes.stage import run_derived_stage
from phangs_operators.routines.cubes.synthetic import synthetic_cube

HERE = Path(__file__).parent
PHANGS_NOISE_KW = {"spec_box": 5, "iterations": 3}


@pytest.fixture(scope="session")
def oracle() -> dict:
    return json.loads((HERE / "oracle_values.json").read_text())


@pytest.fixture(scope="session")
def oracle_masks() -> dict[str, np.ndarray]:
    raw = json.loads((HERE / "oracle_masks.json").read_text())
    out = {}
    for key, entry in raw.items():
        bits = np.frombuffer(zlib.decompress(base64.b64decode(entry["packbits_zlib_b64"])),
                             dtype=np.uint8)
        shape = tuple(entry["shape"])
        out[key] = np.unpackbits(bits)[: int(np.prod(shape))].reshape(shape).astype(bool)
    return out


@pytest.fixture(scope="session")
def ref_cube(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("refcube") / "synth_12m+7m_co21.fits"
    data, hdr = synthetic_cube()
    fits.PrimaryHDU(data, hdr).writeto(path)
    return path


@pytest.fixture(scope="session")
def ref_stage(ref_cube, tmp_path_factory):
    """The stage at native + 4 arcsec with the PHANGS noise/strict keywords."""
    out = tmp_path_factory.mktemp("refstage")
    res = run_derived_stage(ref_cube, out, noise_kw=PHANGS_NOISE_KW, resolutions="4arcsec")
    return out, res


def write_cube(path: Path, data: np.ndarray, header: fits.Header) -> Path:
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return path
