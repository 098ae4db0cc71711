"""What CI can check of the production packaging without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_parses_and_has_the_data_center_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    for name in ("postgres", "redis", "minio", "airflow-apiserver", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-worker-casa"):
        assert name in services, name
    casa_worker = services["airflow-worker-casa"]["command"]
    assert "casa" in casa_worker[casa_worker.index("--queues") + 1]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["OMP_NUM_THREADS"] == "1"
    # no credentials in the file: only references to the environment
    text = (ROOT / "docker-compose.yaml").read_text()
    assert not re.search(r"PASSWORD:\s*[A-Za-z0-9]{6,}\s*$", text, re.MULTILINE)


def test_dockerfile_uses_the_official_image_and_the_setup_script():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]
    instructions = [ln for ln in lines if not ln.startswith("#")]
    assert instructions[0] == "FROM apache/airflow:3.3.2-python3.11"
    text = "\n".join(instructions)
    assert "bash scripts/install.sh --system" in text  # the same script as `make setup`
    for var in ("CASASITECONFIG", "OMP_NUM_THREADS=1", "MPLCONFIGDIR", "CASA_MEASURESPATH"):
        assert var in text
    assert "trim_casadata.py" in text
    # hadolint-style checks: pinned base image, no latest tag, no sudo, no apt without cleanup
    assert ":latest" not in instructions[0]
    assert "sudo " not in text
    assert instructions[-1].startswith(("HEALTHCHECK", "CMD", "ENTRYPOINT", "ENV", "WORKDIR"))
    # every COPY source exists in the repository
    for ln in instructions:
        if ln.startswith("COPY "):
            parts = [p for p in ln.split()[1:] if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ROOT / src.rstrip("/")).exists(), src


def test_trimmed_casadata_is_small(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "trim_casadata.py"), str(tmp_path / "cd")],
                          capture_output=True, text=True, check=True)
    assert "trimmed casadata" in proc.stdout
    size = sum(f.stat().st_size for f in (tmp_path / "cd").rglob("*") if f.is_file())
    assert 1e6 < size < 30e6
    for top in ("alma", "catalogs", "demo", "ephemerides", "geodetic", "gui", "nrao"):
        assert (tmp_path / "cd" / top).is_dir()


def test_constraints_pin_the_known_good_set():
    pins = dict(ln.split("==", 1) for ln in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in ln and not ln.startswith("#"))
    assert pins["apache-airflow"] == "3.3.2"
    assert pins["casatools"] == pins["casatasks"] == "6.7.0.31"
    assert pins["celery"] == "5.6.3"
    assert pins["numpy"].startswith("2.")
