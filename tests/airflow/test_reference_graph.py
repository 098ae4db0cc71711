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


def _group_tasks(dag, suffix):
    return {t.task_id.split(".")[0]: t for t in dag.tasks if t.task_id.endswith("." + suffix)}


def test_round2_and_round3_exactly_where_the_derived_key_asks(reference):
    """moments_round2 / flat_products exist for the (config, product) pairs whose moment list
    has round-2 / round-3 moments, and for no other."""
    project, dags = reference
    n_round2 = n_flat = 0
    for dag in dags.values():
        derived = {t.task_id.split(".")[0] for t in dag.tasks if t.task_id.endswith(".moments")}
        round2 = set(_group_tasks(dag, "moments_round2"))
        flat = set(_group_tasks(dag, "flat_products"))
        want2, want3 = set(), set()
        for group in derived:
            task = dag.get_task(group + ".moments")
            names = task.partial_kwargs["names"]
            rounds = {project.moment(m).round for m in project.moment_list(names["config"], names["product"])}
            if 2 in rounds:
                want2.add(group)
            if 3 in rounds:
                want3.add(group)
        assert round2 == want2, dag.dag_id
        assert flat == want3, dag.dag_id
        n_round2 += len(round2)
        n_flat += len(flat)
    # PHANGS: co21 of 12m+7m, 12m+7m+tp, 7m and 7m+tp ask for mom1wprior and the flat moments
    assert n_round2 == n_flat > 200
    dag = dags["phangs_ngc0628"]
    assert "derived_12m_co21" not in _group_tasks(dag, "moments_round2")
    assert {"derived_12m_7m_co21", "derived_7m_tp_co21"} <= set(_group_tasks(dag, "flat_products"))


def test_mom1wprior_waits_on_the_7m_tp_15as_moments(reference):
    """Round 2 of every config needs {target}_7m+tp_co21_15as_strict_mom1.fits (reference §10)."""
    project, dags = reference
    dag = dags["phangs_ngc0628"]
    for group, task in _group_tasks(dag, "moments_round2").items():
        upstream = {u.task_id for u in task.upstream_list}
        assert f"{group}.moments" in upstream
        assert "derived_7m_tp_co21.moments" in upstream, group
        assert task.partial_kwargs["vfield_prior"].endswith("/ngc0628_7m+tp_co21_15as_strict_mom1.fits")
        assert task.trigger_rule == "none_failed"
    # the 7m+tp moments do write that map: 15as is one of its resolutions, strictmom1 one of its moments
    producer = dag.get_task("derived_7m_tp_co21.convolve")
    assert "15as" in {r["res_tag"] for r in producer.expand_input.value}
    assert "strictmom1" in project.moment_list("7m+tp", "co21")


def test_every_mom1wprior_of_the_reference_set_has_its_prior_dependency(reference):
    """All 90 PHANGS targets have 7m+tp co21 (the prior's config), so every round 2 waits on it
    (the case without that config is tested on a modified demo key set, test_rounds_dag.py)."""
    _, dags = reference
    n = 0
    for dag in dags.values():
        for task in _group_tasks(dag, "moments_round2").values():
            assert "derived_7m_tp_co21.moments" in {u.task_id for u in task.upstream_list}, task.task_id
            n += 1
    assert n > 200


def test_flat_products_wait_on_the_round2_of_linked_configs(reference):
    project, dags = reference
    dag = dags["phangs_ngc0628"]
    flat = dag.get_task("derived_12m_7m_co21.flat_products")
    upstream = {u.task_id for u in flat.upstream_list}
    assert {"derived_12m_7m_co21.moments_round2", "derived_12m_7m_tp_co21.moments_round2",
            "derived_12m_7m_co21.strict_mask", "derived_12m_7m_co21.broad_mask"} <= upstream
    assert project.mask_configs("12m+7m", "co21") == ["12m+7m+tp"]
    names = [p.rsplit("/", 1)[1] for p in flat.vfields]
    # hierarchical order: this config native first, its resolutions, then the linked config
    assert names[0] == "ngc0628_12m+7m_co21_mom1wprior.fits"
    assert names.index("ngc0628_12m+7m_co21_15as_mom1wprior.fits") < names.index(
        "ngc0628_12m+7m+tp_co21_mom1wprior.fits")
    n_res = len(project.ang_res("12m+7m", "co21")) + len(project.phys_res("12m+7m", "co21")) + 1
    assert len(names) == 2 * n_res
    # the publish task of the pair gets the round-2 and round-3 outputs
    publish = dag.get_task("publish_12m_7m_co21")
    assert {"derived_12m_7m_co21.moments_round2", "derived_12m_7m_co21.flat_products"} <= {
        u.task_id for u in publish.upstream_list}
