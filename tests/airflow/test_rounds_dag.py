"""Round 2 (mom1wprior) and round 3 (velocity field, flat masks, flat moments) in the target DAGs
of the demo key set (include/keys), and the case without the prior's config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_KEYS = ROOT / "include" / "keys"

pytestmark = pytest.mark.airflow


@pytest.fixture
def demo_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path / "demo"))
    return tmp_path / "demo"


def _upstream(task):
    return {u.task_id for u in task.upstream_list}


def test_demo_dag_has_round2_and_round3_tasks(demo_root):
    from phangs_operators.dag_factory import build_dags

    dag = build_dags(DEMO_KEYS, targets=["ngc9999"])["phangs_ngc9999"]
    derived = str(demo_root / "derived" / "ngc9999")
    for cfg in ("12m_7m", "12m_7m_tp"):
        r2 = dag.get_task(f"derived_{cfg}_co21.moments_round2")
        flat = dag.get_task(f"derived_{cfg}_co21.flat_products")
        # the moment key of the demo takes the prior from 12m+7m+tp at 15"
        assert r2.partial_kwargs["vfield_prior"] == f"{derived}/ngc9999_12m+7m+tp_co21_15as_strict_mom1.fits"
        assert "derived_12m_7m_tp_co21.moments" in _upstream(r2)
        assert f"derived_{cfg}_co21.moments_round2" in _upstream(flat)
        assert flat.trigger_rule == "none_failed" and flat.doc_md
        assert flat.flatstrictmask_kw == {"window": "50.0km/s"}  # window_key, as PHANGS when the kw is empty
        assert flat.vfields[0] == f"{derived}/ngc9999_{cfg.replace('_', '+')}_co21_mom1wprior.fits"
    # 12m+7m links 12m+7m+tp: its velocity field also uses the 12m+7m+tp maps
    flat = dag.get_task("derived_12m_7m_co21.flat_products")
    assert "derived_12m_7m_tp_co21.moments_round2" in _upstream(flat)
    assert any("12m+7m+tp_co21" in p for p in flat.vfields)
    # the 12m moment list of the demo has no round-2/3 moments, nor has 7m
    assert "derived_12m_co21.moments_round2" not in dag.task_dict
    assert "derived_7m_co21.flat_products" not in dag.task_dict
    # round-1 moments only get the round-1 definitions
    assert {m["round"] for m in dag.get_task("derived_12m_7m_co21.moments").partial_kwargs["moments"]} == {1}
    publish = dag.get_task("publish_12m_7m_co21")
    assert {"derived_12m_7m_co21.moments_round2", "derived_12m_7m_co21.flat_products"} <= _upstream(publish)


def test_without_the_prior_config_round2_runs_without_the_prior(demo_root, tmp_path):
    """ngc9997 has only 12m data: with a derived key asking 12m for round 2/3 there is no
    12m+7m+tp to make the prior, so round 2 waits only on its own moments (and runs without
    the prior test)."""
    from phangs_operators.dag_factory import build_dags

    keys = tmp_path / "keys"
    shutil.copytree(DEMO_KEYS, keys)
    with (keys / "derived_key.txt").open("a") as fh:
        fh.write("\n12m         co21    moments         ['mom1wprior','flatstrictmom0','flatbroadmom0']\n")
    dag = build_dags(keys, targets=["ngc9997"])["phangs_ngc9997"]
    r2 = dag.get_task("derived_12m_co21.moments_round2")
    assert _upstream(r2) == {"derived_12m_co21.moments"}
    flat = dag.get_task("derived_12m_co21.flat_products")
    assert "derived_12m_co21.moments_round2" in _upstream(flat)
    assert all("_12m_co21" in p for p in flat.vfields)  # the linked configs have no data here
    assert not any("12m+7m" in t for t in dag.task_dict)


_ROUNDS_DAG_FILE = """
import os

import pendulum
from airflow.sdk import DAG

from phangs_operators.operators.derived import (
    BroadMaskOperator,
    ConvolveCubeOperator,
    FlatProductsOperator,
    Mom1WithPriorOperator,
    MomentsOperator,
    NoiseCubeOperator,
    StrictMaskOperator,
)
from phangs_operators.routines.cubes import PHANGS_MOMENTS


def mdef(name):
    d = PHANGS_MOMENTS[name]
    return {"name": d.name, "algorithm": d.algorithm, "mask": d.mask, "ext": d.ext, "ext_error": d.ext_error,
            "round": d.round, "kwargs": dict(d.kwargs), "maps_to_pass": list(d.maps_to_pass),
            "other_exts": dict(d.other_exts)}


cube, out = os.environ["ROUNDS_CUBE"], os.environ["ROUNDS_OUT"]
kw = {"names": {"target": "gal", "config": "7m", "product": "co21"}, "out_dir": out, "workdir": out,
      "force": "{{ params.force }}"}
with DAG("rounds_dag_test", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"force": False}, default_args={"owner": "phangs"}) as dag:
    conv = ConvolveCubeOperator.partial(task_id="convolve", cube=cube, **kw).expand_kwargs(
        [{"res_tag": ""}, {"res_tag": "4as", "arcsec": 4.0}])
    noise = NoiseCubeOperator.partial(task_id="noise", **kw).expand(cube=conv.output)
    strict = StrictMaskOperator.partial(task_id="strict_mask", **kw).expand(cube=noise.output)
    broad = BroadMaskOperator(task_id="broad_mask", strict_masks=[strict.output], cubes=noise.output, **kw)
    moments = MomentsOperator.partial(
        task_id="moments", broad_mask=broad.output,
        moments=[mdef(n) for n in ("strictmom0", "strictmom1", "broadmom0", "broadmom1")], **kw,
    ).expand(cube=strict.output)
    r2 = Mom1WithPriorOperator.partial(
        task_id="moments_round2", moments=[mdef("mom1wprior")], trigger_rule="none_failed",
        vfield_prior=out + "/gal_7m+tp_co21_15as_strict_mom1.fits", map_index_template="{{ res_label }}", **kw,
    ).expand(round1=moments.output)
    flat = FlatProductsOperator(
        task_id="flat_products", resolutions=strict.output, broad_mask=broad.output,
        vfields=[out + "/gal_7m_co21_mom1wprior.fits", out + "/gal_7m_co21_4as_mom1wprior.fits"],
        moments=[mdef("flatstrictmom0"), mdef("flatbroadmom0")], flatstrictmask_kw={"window": "30km/s"},
        trigger_rule="none_failed", **kw)
    r2 >> flat

if __name__ == "__main__":
    run = dag.test()
    print("RUN", run.state, sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances()))
"""


def test_rounds_run_through_airflow_on_a_synthetic_cube(airflow_db, tmp_path):
    """``dag.test()`` of the derived chain wired as the factory wires it (convolve -> noise ->
    strict -> broad -> moments -> moments_round2 (mapped over the moments' output) ->
    flat_products (reads the mapped strict-mask output)) on a synthetic cube: the XComs of
    mapped tasks reach the round-2/3 operators at run time and the files are made."""
    import os
    import subprocess
    import sys

    import numpy as np
    from astropy.io import fits

    from phangs_operators.routines.cubes.synthetic import synthetic_cube

    data, hdr = synthetic_cube((40, 32, 32), disk_sigma_pix=6.0, noise_k=0.05)
    cube = tmp_path / "gal_7m_co21_pbcorr_trimmed_k.fits"
    fits.PrimaryHDU(data, hdr).writeto(cube)
    out = tmp_path / "derived"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "rounds_dag.py").write_text(_ROUNDS_DAG_FILE)
    env = {**os.environ, "ROUNDS_CUBE": str(cube), "ROUNDS_OUT": str(out), "OMP_NUM_THREADS": "1",
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": str(ROOT / "plugins") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(dags / "rounds_dag.py")], env=env, capture_output=True, text=True,
                          timeout=900)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RUN ")), "")
    assert proc.returncode == 0 and "success" in line.split("[")[0], (line, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "('moments_round2', 0, 'success')" in line and "('moments_round2', 1, 'success')" in line
    assert "('flat_products', -1, 'success')" in line
    names = {p.name for p in out.iterdir()}
    for res in ("", "_4as"):
        for ext in ("_mom1wprior", "_emom1wprior", "_flatstrictmask", "_flatbroadmask", "_flatstrict_mom0",
                    "_flatbroad_emom0"):
            assert f"gal_7m_co21{res}{ext}.fits" in names, (res, ext)
    assert "gal_7m_co21_vfield.fits" in names
    assert np.isfinite(fits.getdata(out / "gal_7m_co21_vfield.fits")).sum() > 100
    assert np.nansum(fits.getdata(out / "gal_7m_co21_flatbroad_mom0.fits")) > 0
