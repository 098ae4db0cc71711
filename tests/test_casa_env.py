"""CASA runs offline, single-threaded, and writes nothing into $HOME or the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, sys
import numpy as np
from phangs_operators.casa import casa_session, casatools, casatasks
ct = casatools()
work, logfile = sys.argv[1], sys.argv[2]
with casa_session(work, logfile) as cwd:
    ia = ct.image()
    ia.fromarray(outfile="img.im", pixels=np.ones((16, 16, 1, 4), dtype=np.float32), overwrite=True)
    ia.done()
    stats = casatasks().imstat(imagename="img.im")
    me = ct.measures()
    obs = me.observatory("ALMA")
    out = {"cwd": str(cwd), "sum": float(stats["sum"][0]),
           "omp": os.environ["OMP_NUM_THREADS"],
           "site": os.environ["CASASITECONFIG"],
           "alma_height_m": obs["m2"]["value"]}
out["back"] = os.getcwd()
print(json.dumps(out))
"""


@pytest.mark.casa
def test_casa_writes_nothing_to_home_or_repo(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "scratch"
    logfile = tmp_path / "logs" / "task.log"
    before = set(os.listdir(ROOT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASA", "MPLCONFIG", "OMP"))}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT / "plugins")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(work), str(logfile)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sum"] == pytest.approx(16 * 16 * 4)
    assert out["omp"] == "1"
    assert out["site"].endswith("phangs_operators/casa/casasiteconfig.py")
    assert out["alma_height_m"] > 4000  # measures came from casadata, offline
    assert Path(out["cwd"]) == work.resolve()
    assert Path(out["back"]) == ROOT  # cwd restored after the session
    assert (work / "img.im").is_dir()
    assert logfile.is_file() and logfile.stat().st_size > 0
    # nothing in $HOME, nothing new in the repository's top level
    assert list(home.rglob("*")) == []
    new = set(os.listdir(ROOT)) - before
    assert not {n for n in new if n.startswith(("casa-", "TempLattice", "img.im"))}, new


def test_configure_environment_does_not_import_casa():
    code = (
        "import sys; from phangs_operators import casa; casa.configure_environment();"
        "import os; print('casatools' in sys.modules, os.environ['OMP_NUM_THREADS'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, check=True)
    assert proc.stdout.split() == ["False", "1"]
