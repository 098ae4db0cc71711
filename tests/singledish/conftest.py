"""Fixtures of the total-power tests: a tiny simulated TP measurement set and its cubes.

The sky is the interferometric simulator's model of ``ngc9999`` (``simulate._write_model_image``
with the ``tiny`` preset); the TP data are simulated from that model image by
``simulate_tp.simulate_tp_ms`` (preset ``tiny``). Built once per session in a temporary
directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

RESTFREQ_GHZ = 230.538
PHASECENTER = "J2000 12h00m00.0s -30d00m00.0s"
CHANNEL_KMS = 12.5  # the demo key's co21 channel_kms
VWIDTH_KMS = 360.0


@pytest.fixture(scope="session")
def tp_sim(tmp_path_factory) -> dict[str, Any]:
    """``{'dir', 'model', 'manifest', 'ms', 'jyperk', 'grid', 'vsys'}`` of the tiny TP set."""
    from phangs_operators.casa import casa_session, casatools
    from phangs_operators.routines import simulate as sim
    from phangs_operators.routines.simulate_tp import simulate_tp_ms
    from phangs_operators.routines.singledish import product_velocity_grid

    root = tmp_path_factory.mktemp("tp_sim")
    galaxy = sim.GALAXIES["ngc9999"]
    preset = sim._presets()["tiny"]
    model = root / "model" / "ngc9999_model.image"
    model.parent.mkdir()
    with casa_session(root / "scratch", root / "casa.log"):
        model_info = sim._write_model_image(casatools(), model, galaxy, preset)
    manifest = simulate_tp_ms(root / "tp", model_image=model, vsys_kms=galaxy.vsys_kms,
                              ms_name="ngc9999_tp.ms", preset="tiny", seed=7)
    native_interf_kms = sim.C_KMS * preset.chan_width_hz / sim.CO21_REST_HZ
    grid = product_velocity_grid(galaxy.vsys_kms, VWIDTH_KMS, CHANNEL_KMS, interf_native_kms=[native_interf_kms])
    return {"dir": root, "model": model, "model_info": model_info, "manifest": manifest,
            "ms": Path(manifest["ms"]), "jyperk": Path(manifest["jyperk_csv"]), "grid": grid,
            "vsys": galaxy.vsys_kms}


def reduce(tp_sim: dict[str, Any], out: Path, **kw: Any):
    """make_singledish_cube with the tiny set's product parameters (``kw`` overrides)."""
    from phangs_operators.casa import casa_session
    from phangs_operators.routines.singledish import make_singledish_cube

    args: dict[str, Any] = {
        "restfreq_ghz": RESTFREQ_GHZ, "vsys_kms": tp_sim["vsys"], "vwidth_kms": VWIDTH_KMS,
        "chan_dv_kms": CHANNEL_KMS, "bl_order": 1, "phasecenter": PHASECENTER,
        "velocity_grid_kms": tp_sim["grid"], "workdir": out.parent / "work", "overwrite": True,
    }
    args.update(kw)
    ms_list = args.pop("ms_list", [tp_sim["ms"]])
    with casa_session(out.parent / "work", out.parent / "casa.log"):
        return make_singledish_cube(ms_list, out, **args)


@pytest.fixture(scope="session")
def cube_beam(tp_sim, tmp_path_factory):
    """The cube converted to Jy/beam with the image beam's factor."""
    out = tmp_path_factory.mktemp("sd_beam") / "ngc9999_tp_co21.fits"
    return reduce(tp_sim, out)


@pytest.fixture(scope="session")
def cube_jyperk(tp_sim, tmp_path_factory):
    """The cube calibrated with the simulated jyperk.csv."""
    out = tmp_path_factory.mktemp("sd_jyperk") / "ngc9999_tp_co21.fits"
    return reduce(tp_sim, out, jyperk_csv=tp_sim["jyperk"])
