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

pytest_plugins = ["tests.fixtures.services"]
