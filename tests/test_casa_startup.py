"""Start-up cost of CASA in a task process: ``casatasks()`` imports only the tasks a step uses.

Every Airflow task instance is a new process, so the ~125 task modules that
``casatasks/__init__.py`` imports (scipy.stats, matplotlib, ...) would be paid by every chunk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import numpy as np
from phangs_operators.casa import casa_session, casatasks, casatools
work, logfile = sys.argv[1], sys.argv[2]
cta = casatasks()
after_setup = sorted(m for m in sys.modules if m.startswith("casatasks."))
heavy_after_setup = [m for m in ("scipy.stats", "matplotlib.pyplot", "casatasks.private.partitionhelper",
                                 "casatasks.flagdata") if m in sys.modules]
with casa_session(work, logfile):
    ia = casatools().image()
    ia.fromarray(outfile="img.im", pixels=np.arange(64, dtype=np.float32).reshape(4, 4, 1, 4), overwrite=True)
    ia.done()
    stats = cta.imstat(imagename="img.im")
    from casatasks import imhead          # the PEP 562 hook answers `from casatasks import X`
    head = imhead(imagename="img.im", mode="list")
    import casatasks.private.imagerhelpers.input_parameters as ip  # sub-packages still import
try:
    cta.no_such_task
    missing = None
except AttributeError as exc:
    missing = str(exc)
print(json.dumps({
    "after_setup": after_setup, "heavy_after_setup": heavy_after_setup,
    "heavy_at_end": [m for m in ("scipy.stats", "casatasks.flagdata") if m in sys.modules],
    "same_module": sys.modules["casatasks"] is cta, "imstat_callable": callable(cta.imstat),
    "imstat_type": type(cta.imstat).__module__, "sum": float(stats["sum"][0]),
    "imhead_shape": [int(v) for v in head["shape"]], "version": cta.version_string(),
    "ip_module": ip.__name__, "missing": missing,
}))
"""


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASA", "MPLCONFIG"))}
    env["PYTHONPATH"] = str(ROOT / "plugins")
    env["CASA_LOG_DIR"] = str(tmp_path / "casa_logs")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    return subprocess.run([sys.executable, "-c", script, str(tmp_path / "work"), str(tmp_path / "task.log")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.casa
def test_casatasks_imports_only_the_tasks_used(tmp_path):
    proc = _run(tmp_path, SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # set-up alone imports no task and none of the heavy helpers of unrelated tasks
    assert out["after_setup"] == [], out["after_setup"]
    assert out["heavy_after_setup"] == []
    assert out["heavy_at_end"] == []  # imstat + imhead do not need flagdata / scipy.stats
    assert out["same_module"] and out["imstat_callable"]
    assert out["imstat_type"] == "casatasks.imstat"  # the task object, not the sub-module
    assert out["sum"] == pytest.approx(sum(range(64)))
    assert out["imhead_shape"] == [4, 4, 1, 4]
    assert out["version"].startswith("6.")
    assert out["ip_module"] == "casatasks.private.imagerhelpers.input_parameters"
    assert "no_such_task" in out["missing"] and "casatasks.no_such_task" in out["missing"]
    log = (tmp_path / "task.log").read_text()
    assert "imstat" in log and "imhead" in log  # casalog (the lazily made global sink) works


@pytest.mark.casa
def test_a_prior_full_import_is_reused(tmp_path):
    """``import casatasks`` before ``casatasks()``: the real package is returned, not replaced."""
    script = ("import casatools, casatasks as real, json\n"
              "from phangs_operators.casa import casatasks\n"
              "print(json.dumps({'same': casatasks() is real, 'flagdata': 'casatasks.flagdata' in __import__('sys').modules}))")
    proc = _run(tmp_path, "import os; os.environ.setdefault('CASASITECONFIG', "
                f"{str(ROOT / 'plugins/phangs_operators/casa/casasiteconfig.py')!r})\n" + script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"same": True, "flagdata": True}
