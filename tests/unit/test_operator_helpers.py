"""Pure helpers of the operators: product classification, file collection, chunk planning."""

from __future__ import annotations

import pytest

from phangs_operators.dag_factory import configs_served, dag_id_for, task_id_for
from phangs_operators.operators.publish import collect_files, describe


@pytest.mark.parametrize("name, res, expected", [
    ("t_12m+7m_co21_pbcorr_trimmed_k.fits", "", ("pbcorr_trimmed_k", "cube")),
    ("t_12m+7m_co21_trimmed_pb.fits", "", ("trimmed_pb", "pb")),
    ("t_12m+7m_co21_150pc_strictmask.fits", "150pc", ("strictmask", "mask")),
    ("t_12m+7m_co21_broadmask.fits", "", ("broadmask", "mask")),
    ("t_12m+7m_co21_strict_emom0.fits", "", ("strict_emom0", "emoment")),
    ("t_12m+7m_co21_broad_tpeak12p5.fits", "", ("broad_tpeak12p5", "moment")),
    ("t_12m+7m_co21_10as_noise.fits", "10as", ("noise", "noise")),
    ("t_12m+7m_co21_10as.fits", "10as", ("convolved", "cube")),
    ("t_12m+7m_co21_10as_coverage2d.fits", "10as", ("coverage2d", "coverage")),
])
def test_describe_gives_distinct_stage_and_kind(name, res, expected):
    assert describe("/x/" + name, "t", "12m+7m", "co21", res) == expected


def test_collect_files_walks_records_and_skips_skipped_resolutions():
    records = [
        {"fits": "/p/a_k.fits", "files": ["/p/a_k.fits", "/p/a_pb.fits"]},
        [{"res_tag": "", "cube": "/d/a.fits", "noise": "/d/a_noise.fits", "strictmask": "/d/a_strictmask.fits"},
         {"res_tag": "1kpc", "skipped": True, "cube": "/d/a_1kpc.fits"}],
        {"broadmask": "/d/a_broadmask.fits"},
        [{"res_tag": "10as", "maps": ["/d/a_10as_strict_mom0.fits", "/d/a_10as_strict_emom0.fits"]}],
        {"dry_run": True, "outputs": ["/never.fits"]},
    ]
    files = collect_files(records)
    paths = [p for p, _ in files]
    assert paths == ["/p/a_k.fits", "/p/a_pb.fits", "/d/a.fits", "/d/a_noise.fits", "/d/a_strictmask.fits",
                     "/d/a_broadmask.fits", "/d/a_10as_strict_mom0.fits", "/d/a_10as_strict_emom0.fits"]
    assert dict(files)["/d/a_10as_strict_mom0.fits"] == "10as"
    assert "/d/a_1kpc.fits" not in paths and "/never.fits" not in paths


def test_ids_from_phangs_names():
    assert task_id_for("12m+7m+tp") == "12m_7m_tp"
    assert dag_id_for("ngc3627") == "phangs_ngc3627"


def test_plan_chunks_operator_caps_the_number_of_mapped_instances():
    from phangs_operators.operators.imaging import PlanChunksOperator

    op = PlanChunksOperator(task_id="plan", nchan={"nchan": 1000}, chunk_size=1, workdir="/tmp/x", max_chunks=200)
    chunks = op.run_routine({})
    assert len(chunks) <= 200
    assert sum(c["nchan"] for c in chunks) == 1000
    assert [c["start"] for c in chunks] == sorted(c["start"] for c in chunks)
    with pytest.raises(Exception, match="nchan=0"):
        PlanChunksOperator(task_id="p2", nchan=0, chunk_size=4, workdir="/tmp/x").run_routine({})


def test_configs_served_includes_the_feather_config():
    class P:
        interf_configs_by_name = {"12m+7m": 1}

        def feather_config_for(self, c):
            return "12m+7m+tp"

    assert configs_served(P(), "12m+7m") == ["12m+7m", "12m+7m+tp"]
