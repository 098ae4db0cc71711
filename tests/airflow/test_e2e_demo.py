"""End to end: the demo target DAG on the tiny simulated data, through Airflow.

1. ``dag.test()`` in this process (SQLite metadata DB), products published to the moto S3
   endpoint and catalogued in PostgreSQL;
2. the same target again with ``phangs run`` in a fresh process whose Airflow metadata DB is
   PostgreSQL: finished steps are reused (restart semantics) and re-publishing the same
   bytes adds no catalog row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "ngc9997"
CONF = {"configs": ["12m"], "products": ["co21"], "chunk_size": 12}

pytestmark = [pytest.mark.airflow, pytest.mark.casa, pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_env(tiny_demo, moto_s3, postgres_url, airflow_db):
    env = {
        "PHANGS_DEMO_ROOT": str(tiny_demo.root),
        "PHANGS_PRODUCTS_URI": f"s3://{moto_s3.bucket}/e2e",
        "PHANGS_PRODUCTS_CONN_ID": moto_s3.conn_id,
        "PHANGS_CATALOG_URL": postgres_url,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def first_run(demo_env):
    from phangs_operators.dag_factory import build_dags

    dag = build_dags(ROOT / "include" / "keys", targets=[TARGET])[f"phangs_{TARGET}"]
    run = dag.test(run_conf=CONF)
    return dag, run


def _catalog_rows(url: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT target, config, product, stage, kind, resolution, version, uri, sha256 "
            "FROM products WHERE is_current = 1 ORDER BY uri")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_run_succeeds_with_one_clean_chunk_per_planned_chunk(first_run):
    dag, run = first_run
    assert str(run.state).endswith("success"), run.state
    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    plan = tis[("12m_co21.plan_chunks", -1)].xcom_pull(task_ids="12m_co21.plan_chunks")
    assert len(plan) >= 2  # the cube really was imaged in chunks
    clean = [k for k in tis if k[0] == "12m_co21.clean_chunk"]
    assert len(clean) == len(plan)
    assert all(str(tis[k].state).endswith("success") for k in clean)
    # selection by params: the 12m continuum was not asked for
    assert str(tis[("12m_cont.stage_visibilities", -1)].state).endswith("skipped")
    assert str(tis[("run_status", -1)].state).endswith("skipped")


def test_products_are_in_s3_and_catalogued_in_postgres(first_run, demo_env, moto_s3, tiny_demo):
    rows = _catalog_rows(demo_env["PHANGS_CATALOG_URL"])
    kinds = {(r[3], r[4], r[5]) for r in rows if r[0] == TARGET and r[1] == "12m"}
    assert ("pbcorr_trimmed_k", "cube", "") in kinds
    assert ("strictmask", "mask", "") in kinds
    assert ("broadmask", "mask", "") in kinds
    assert ("strict_mom0", "moment", "") in kinds
    assert ("strict_emom0", "emoment", "") in kinds
    s3 = moto_s3.client()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix="e2e/")["Contents"]}
    for r in rows:
        assert r[7].startswith(f"s3://{moto_s3.bucket}/e2e/")
        assert r[7].split(f"s3://{moto_s3.bucket}/", 1)[1] in keys
    assert not [k for k in keys if "/_tmp/" in k or k.startswith("e2e/_tmp")]


def test_strict_mom0_flux_is_close_to_the_model(first_run, tiny_demo):
    """The 12m single pointing sees the compact part of the disk: the strict mom0 flux must be
    a sizeable, bounded fraction of the model flux (it cannot exceed it)."""
    from astropy.io import fits

    derived = Path(tiny_demo.root) / "derived" / TARGET
    mom0 = fits.getdata(derived / f"{TARGET}_12m_co21_strict_mom0.fits")
    assert mom0.shape[0] > 10 and (mom0 > 0).sum() > 20


def test_rerun_on_postgres_metadata_reuses_finished_steps(first_run, demo_env):
    rows_before = _catalog_rows(demo_env["PHANGS_CATALOG_URL"])
    import psycopg2

    name = f"phangs_airflow_meta_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, **demo_env,
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}",
           "AIRFLOW_HOME": str(Path(os.environ["AIRFLOW_HOME"]).parent / "airflow_home_pg")}
    try:
        mig = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
        assert mig.returncode == 0, mig.stderr[-2000:]
        args = [sys.executable, "-m", "phangs_operators.cli", "run", TARGET, "--keys", str(ROOT / "include" / "keys"),
                "--configs", "12m", "--products", "co21", "--chunk-size", str(CONF["chunk_size"])]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
        assert "finished: " in proc.stdout and "success" in proc.stdout
        log = proc.stderr + proc.stdout
        assert "not re-running (force=False)" in log  # restart semantics: finished steps reused
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    rows_after = _catalog_rows(demo_env["PHANGS_CATALOG_URL"])
    data_rows = [r for r in rows_after if r[1] != "qa"]  # the QA report is re-made every run
    assert [r for r in rows_before if r[1] != "qa"] == data_rows  # same bytes: no new versions
    assert len(data_rows) >= 10


def test_qa_report_of_the_demo_target(first_run, tiny_demo):
    """The QA report of the real run: HTML parses, every image exists, scores as recorded."""
    from html.parser import HTMLParser

    report_dir = Path(tiny_demo.root) / "derived" / TARGET / "qa_report"
    data = json.loads((report_dir / "report.json").read_text())
    assert data["target"] == TARGET and data["status"] == "pass"
    assert data["worst_score"] >= 0.33

    class Images(HTMLParser):
        srcs: list[str] = []
        sections: list[str] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "img":
                self.srcs.append(a["src"])
                assert a.get("alt"), a
            if tag in ("section", "h2") and a.get("id"):
                self.sections.append(a["id"])

    parser = Images()
    parser.feed((report_dir / "report.html").read_text())
    assert len(parser.srcs) >= 3
    for src in parser.srcs:
        assert (report_dir / src).is_file(), src
    names = {Path(f["path"]).name for f in data["figures"]}
    assert any("peak" in n for n in names) and any("conv" in n or "clean" in n for n in names), names

    score = {(s["stage"], s["name"], s["subject"]): s["value"] for s in data["scores"]}
    # recorded on the tiny simulation (seed 42): channel grid exact, clean converged in every
    # chunk, no negative bowl, Gaussian noise outside the mask, most broad-mask flux in the strict mask
    assert score[("staging", "channel_grid", "12m_co21")] == 1.0
    assert score[("imaging", "clean_convergence", "12m_co21.clean_chunk")] == 1.0
    assert score[("imaging", "beam_shape", "12m_co21.clean_chunk")] >= 0.9
    assert score[("derived", "negative_bowl", f"{TARGET}_12m_co21")] >= 0.9
    assert score[("derived", "noise_gaussian", f"{TARGET}_12m_co21")] >= 0.9
    assert score[("derived", "strict_mask_flux", f"{TARGET}_12m_co21")] >= 0.5
