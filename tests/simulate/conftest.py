"""Fixtures of the simulator tests; the tiny simulation itself is the session-wide
``tiny_demo`` fixture of :mod:`tests.fixtures.sim`."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_KEYS = REPO / "include" / "keys"
