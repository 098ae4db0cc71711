"""Shared CASA fixtures: the ``tiny`` simulation, staged products and the PHANGS cube recipe.

Everything is built once per test session in a temporary directory (nothing in $HOME or the
repository). The simulator is ``phangs_operators.routines.simulate`` (preset ``tiny``,
seed 42).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "include" / "keys" / "cube_mosaic.clean"
#: channel width used for the tiny staged cubes: 2 x the native 10.16 km/s (exercises the rebin)
TINY_CHANNEL_KMS = 25.0
STATWT_EDGE_KMS = 50.0


def read_clean_recipe(path: Path) -> dict[str, Any]:
    """Minimal reader of a ``.clean`` recipe (``name = literal`` lines), for the tests only.

    The project's key parser does this for the pipeline; the imaging routines take a dict.
    """
    kw: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            kw[name.strip()] = ast.literal_eval(value.strip())
    return kw


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Any]:
    """The tiny simulation: ``{'dir': Path, 'manifest': dict, 'ms': {name: Path}}``."""
    from phangs_operators.routines.simulate import simulate

    out = tmp_path_factory.mktemp("tiny_sim")
    manifest = simulate(out, preset="tiny", seed=42)
    ms = {name: out / info["path"] for name, info in manifest["measurement_sets"].items()}
    return {"dir": out, "manifest": manifest, "ms": ms}


@pytest.fixture(scope="session")
def cube_recipe() -> dict[str, Any]:
    """tclean keywords of the demo project's ``cube_mosaic.clean`` (``chanchunks`` included)."""
    kw = read_clean_recipe(RECIPE)
    assert "chanchunks" in kw  # the recipe still carries it; the routines must drop it
    return kw


@pytest.fixture(scope="session")
def stage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("staged")


@pytest.fixture(scope="session")
def staged_mosaic(tiny, stage_dir):
    """ngc9999 12m+7m co21 staged (line product), with its StagingResult."""
    from phangs_operators.routines import vis

    galaxy = tiny["manifest"]["targets"]["ngc9999"]
    res = vis.stage_line_product(
        {"12m": [tiny["ms"]["ngc9999_12m_mosaic.ms"]], "7m": [tiny["ms"]["ngc9999_7m_mosaic.ms"]]},
        stage_dir / "ngc9999_12m+7m_co21.ms",
        line="co21", vsys_kms=galaxy["vsys_kms"], vwidth_kms=galaxy["vwidth_kms"], channel_kms=TINY_CHANNEL_KMS,
        target_field="NGC9999", statwt_edge_kms=STATWT_EDGE_KMS, fitorder=0, lines_to_flag=["co21"],
        workdir=stage_dir / "work",
    )
    return res


@pytest.fixture(scope="session")
def staged_single(tiny, stage_dir):
    """ngc9997 12m single pointing co21 staged (line product)."""
    from phangs_operators.routines import vis

    t = tiny["manifest"]["targets"]["ngc9997"]
    return vis.stage_line_product(
        {"12m": [tiny["ms"]["ngc9997_12m_single.ms"]]}, stage_dir / "ngc9997_12m_co21.ms",
        line="co21", vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"], channel_kms=TINY_CHANNEL_KMS,
        target_field="ngc9997",  # PHANGS target name; the field is 'NGC9997' (matched case-insensitively)
        statwt_edge_kms=STATWT_EDGE_KMS, workdir=stage_dir / "work",
    )
