"""The DAGs built from the real PHANGS-ALMA key set contain exactly the (target, config,
product) combinations the original pipeline's loops run (reference §10, §11.G)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from phangs_operators.keys import load_project

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_KEYS = ROOT.parent / "shared" / "reference" / "phangs-alma_keys"

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def reference():
    assert REFERENCE_KEYS.is_dir(), f"reference key set missing: {REFERENCE_KEYS}"
    from phangs_operators.dag_factory import build_dags

    logging.getLogger("phangs_operators.dag_factory").setLevel(logging.ERROR)
    return load_project(REFERENCE_KEYS), build_dags(REFERENCE_KEYS)


def _stage_tasks(dags):
    for dag in dags.values():
        for task in dag.tasks:
            if task.task_id.endswith("stage_visibilities"):
                yield dag, task


def test_staging_and_imaging_combinations_match_the_original_loops(reference):
    project, dags = reference
    built = {(t.target, t.config, t.product) for _, t in _stage_tasks(dags)}
    expected = {c.as_tuple() for c in project.imaging_combinations()}
    assert built == expected
    per_config = Counter(config for _, config, _ in {(t, c, "") for t, c, _ in built})
    assert per_config["12m+7m"] == 109
    assert per_config["12m"] == 110
    assert per_config["7m"] == 135


def test_one_dag_per_whole_target_with_data(reference):
    project, dags = reference
    with_data = [t for t in project.whole_targets()
                 if any(project.ms_entries(p) for p in (project.mosaic_parts(t) if project.is_mosaic(t) else [t]))]
    assert sorted(dags) == sorted(f"phangs_{t}" for t in with_data)


def test_mosaic_waits_on_all_parts(reference):
    project, dags = reference
    mosaic = next(m for m in project.mosaics() if f"phangs_{m}" in dags)
    dag = dags[f"phangs_{mosaic}"]
    linmos = [t for t in dag.tasks if t.task_id.endswith("linear_mosaic")]
    assert linmos
    for task in linmos:
        upstream_parts = {u.task_id.split(".")[0] for u in task.upstream_list}
        assert upstream_parts == set(project.mosaic_parts(mosaic)), task.task_id


def test_feather_needs_interferometric_cube_and_single_dish(reference):
    project, dags = reference
    dag = dags["phangs_ngc0628"]
    feather = dag.get_task("feather_12m_7m_tp_co21.feather")
    assert feather.upstream_list[0].task_id == "12m_7m_co21.pbcor_round"
    assert feather.singledish_fits.endswith(project.singledish_file("ngc0628", "co21"))


def test_broad_mask_waits_on_linked_configs(reference):
    project, dags = reference
    dag = dags["phangs_ngc0628"]
    broad = dag.get_task("derived_12m_7m_co21.broad_mask")
    linked = {u.task_id.split(".")[0] for u in broad.upstream_list}
    for cfg in project.mask_configs("12m+7m", "co21"):
        assert f"derived_{cfg.replace('+', '_')}_co21" in linked
