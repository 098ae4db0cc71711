"""Test-session environment: isolated Airflow home, offline CASA, real services.

Runs before anything imports Airflow or CASA, so the variables below take effect.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SCRATCH = Path(tempfile.mkdtemp(prefix="phangs-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_SCRATCH / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "OMP_NUM_THREADS": "1",
        "CASASITECONFIG": str(ROOT / "plugins" / "phangs_operators" / "casa" / "casasiteconfig.py"),
        "MPLCONFIGDIR": str(_SCRATCH / "mplconfig"),
        "CASA_LOG_DIR": str(_SCRATCH / "casa_logs"),
        "MPLBACKEND": "Agg",
    }
)
sys.path.insert(0, str(ROOT / "plugins"))

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.sim"]

# The demo key set (include/keys) resolves its roots through ${PHANGS_DEMO_ROOT}.
os.environ.setdefault("PHANGS_DEMO_ROOT", str(_SCRATCH / "demo"))
os.environ.setdefault("PHANGS_KEY_DIR", str(ROOT / "include" / "keys"))


import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB (SQLite) in the session's isolated AIRFLOW_HOME."""
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return os.environ["AIRFLOW_HOME"]
