"""Fixtures of the simulator tests: one tiny simulation per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_KEYS = REPO / "include" / "keys"


@dataclass(frozen=True)
class SimulatedDemo:
    """A tiny simulation laid out as the demo key set expects it.

    ``root`` is what ``PHANGS_DEMO_ROOT`` points at; the data are in ``root / 'data'``.
    """

    root: Path
    data: Path
    manifest: dict[str, Any]
    seed: int


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> SimulatedDemo:
    """``simulate(<tmp>/data, 'tiny', seed=42)``, done once per session."""
    from phangs_operators.routines.simulate import simulate

    root = tmp_path_factory.mktemp("phangs_demo")
    manifest = simulate(root / "data", preset="tiny", seed=42)
    return SimulatedDemo(root=root, data=root / "data", manifest=manifest, seed=42)
