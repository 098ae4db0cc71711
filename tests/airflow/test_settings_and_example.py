"""airflow_settings.yaml is applied idempotently with Airflow's own import commands, and the
example DAG (operators reused without key files) runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.airflow


def test_airflow_settings_apply_is_idempotent(airflow_db, monkeypatch):
    from phangs_operators.cli.airflow_settings import apply, convert

    env = {"PHANGS_S3_ACCESS_KEY": "ak", "PHANGS_S3_SECRET_KEY": "sk", "PHANGS_S3_ENDPOINT": "http://127.0.0.1:9",
           "PHANGS_CATALOG_HOST": "127.0.0.1", "PHANGS_CATALOG_USER": "u", "PHANGS_CATALOG_PASSWORD": "p"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = ROOT / "airflow_settings.yaml"
    converted = convert(settings)
    assert json.loads(converted["connections"]["phangs_products"]["extra"])["endpoint_url"] == "http://127.0.0.1:9"
    for _ in range(2):
        out = apply(settings)
        assert any("phangs_products" in line for line in out)
    pools = subprocess.run([sys.executable, "-m", "airflow", "pools", "get", "casa", "-o", "json"],
                           capture_output=True, text=True, check=True)
    assert int(json.loads(pools.stdout.strip().splitlines()[-1])[0]["slots"]) == 2
    var = subprocess.run([sys.executable, "-m", "airflow", "variables", "get", "phangs_key_dir"],
                         capture_output=True, text=True, check=True)
    assert var.stdout.strip().splitlines()[-1] == "/opt/airflow/include/keys"


def test_airflow_settings_missing_variable_is_named(monkeypatch, tmp_path):
    from phangs_operators.cli.airflow_settings import SettingsError, convert

    monkeypatch.delenv("PHANGS_S3_SECRET_KEY", raising=False)
    with pytest.raises(SettingsError, match="PHANGS_S3_SECRET_KEY"):
        convert(ROOT / "airflow_settings.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("airflow: [1, 2\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        convert(bad)


@pytest.mark.casa
def test_example_dag_images_one_ms_in_chunks(airflow_db, tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_EXAMPLE_WORKDIR", str(tmp_path / "example"))
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "examples"))
    assert bag.import_errors == {}
    dag = bag.dags["phangs_example_image_one_ms"]
    ms = tiny_demo.ms["ngc9997_12m_single.ms"]
    run = dag.test(run_conf={"ms": str(ms), "nchan": 6, "chunk_size": 3, "imsize": 64, "cell_arcsec": 0.6})
    assert str(run.state).endswith("success")
    cube = tmp_path / "example" / "example_cube.image"
    assert cube.is_dir()
    from phangs_operators.casa import casatools

    ia = casatools().image()
    ia.open(str(cube))
    try:
        shape = ia.shape()
    finally:
        ia.close()
    assert shape[0] == 64 and shape[-1] == 6
