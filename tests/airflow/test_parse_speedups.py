"""The parse-time measures of the DAG factory and PhangsBaseOperator change nothing in the DAG:
operators built through the fast constructor path equal those built through Airflow's plain
``apply_defaults`` path, the DAG class' hash is consistent with its equality, and the garbage
collector is restored after a build."""

from __future__ import annotations

import gc
import inspect
import re

import pendulum
import pytest

pytestmark = pytest.mark.airflow


def _state(op):
    """Everything an operator holds, with memory addresses removed."""
    out = {}
    for key, value in sorted(vars(op).items()):
        if key in ("_log",):
            continue
        if key == "_BaseOperator__init_kwargs":  # the same arguments; the levels add them in another order
            value = sorted(value.items())
        out[key] = re.sub(r"0x[0-9a-f]+", "0x", repr(value))
    return out


def _build(dag_cls, default_args):
    from airflow.sdk import TaskGroup

    from phangs_operators.operators.base import PhangsBaseOperator
    from phangs_operators.operators.derived import (
        BroadMaskOperator,
        ConvolveCubeOperator,
        FlatProductsOperator,
    )

    class NoInitOperator(PhangsBaseOperator):  # a subclass without its own __init__
        """A step without arguments of its own."""

        stage = "derived"

    names = {"target": "t", "config": "7m", "product": "co21"}
    with dag_cls(dag_id="speedups", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
                 default_args=default_args) as dag:
        group = TaskGroup("grp")
        conv = ConvolveCubeOperator(task_id="convolve", cube="/x/c.fits", res_tag="4as", arcsec=4.0, names=names,
                                    out_dir="/x", workdir="/x", task_group=group, force="{{ params.force }}")
        broad = BroadMaskOperator(task_id="broad", strict_masks=[conv.output], cubes=conv.output, names=names,
                                  workdir="/x", task_group=group, retries=5, params={"p": 1})
        flat = FlatProductsOperator(task_id="flat", resolutions=conv.output, broad_mask=broad.output, vfields=["/v"],
                                    moments=[], names=names, workdir="/x", trigger_rule="none_failed")
        plain = NoInitOperator(task_id="plain", workdir="/x", serves_configs=["7m"])
        mapped = ConvolveCubeOperator.partial(task_id="mapped", cube=conv.output, names=names, workdir="/x",
                                              task_group=group).expand_kwargs([{"res_tag": ""}])
    return dag, [conv, broad, flat, plain, mapped.unmap({"res_tag": "10as", "arcsec": 10.0})]


@pytest.mark.parametrize("default_args", [{"owner": "phangs", "retries": 1},
                                          {"owner": "someone", "queue": "q", "force": True, "params": {"d": 2}}])
def test_fast_constructor_equals_airflow_apply_defaults(monkeypatch, default_args):
    from airflow.sdk import DAG, BaseOperator

    from phangs_operators.operators import base

    _, fast = _build(DAG, default_args)
    fast_states = [_state(op) for op in fast]
    # the plain Airflow path: every __init__ level wrapped by apply_defaults, super().__init__ as usual
    from phangs_operators.operators import derived

    for cls in (base.PhangsBaseOperator, derived._DerivedOperator):
        monkeypatch.setattr(cls, "__init__", cls.__dict__["__init__"].airflow_init)
    monkeypatch.setattr(base, "_init_base_operator", lambda self, kwargs: BaseOperator.__init__(self, **kwargs))
    monkeypatch.delattr(base.PhangsBaseOperator, "__setattr__")  # Airflow's own attribute setter
    _, plain = _build(DAG, default_args)
    assert [_state(op) for op in plain] == fast_states
    by_id = {op.task_id: op for op in fast}
    assert by_id["grp.broad"].retries == 5 and by_id["grp.convolve"].upstream_task_ids == set()
    assert by_id["grp.broad"].upstream_task_ids == {"grp.convolve"}
    assert by_id["grp.convolve"].owner == default_args["owner"]
    # a PhangsBaseOperator argument given in default_args reaches the operator, as before
    assert by_id["plain"].force is default_args.get("force", False)
    assert by_id["flat"].queue == default_args.get("queue", "default")


def test_signature_cache_is_what_inspect_computes():
    from phangs_operators.operators.base import PhangsBaseOperator
    from phangs_operators.operators.derived import FlatProductsOperator, Mom1WithPriorOperator

    for cls in (FlatProductsOperator, Mom1WithPriorOperator):
        raw = cls.__init__.__wrapped__
        cached = cls.__init__.__signature__
        del raw.__signature__
        try:
            assert cached == inspect.signature(raw)
        finally:
            raw.__signature__ = cached
    assert "workdir" in inspect.signature(PhangsBaseOperator.__init__).parameters


def test_target_dag_hash_is_consistent_with_equality():
    from airflow.sdk import DAG

    from phangs_operators.dag_factory import _target_dag_class

    cls = _target_dag_class()
    assert issubclass(cls, DAG)
    dag, ops = _build(cls, {"owner": "phangs"})
    other, _ = _build(cls, {"owner": "phangs"})
    assert dag == dag and hash(dag) == hash(other)
    assert len({dag, dag}) == 1
    changed, _ = _build(cls, {"owner": "phangs"})
    changed.dag_id = "other"
    assert dag != changed
    assert {t.task_id for t in dag.tasks} >= {"grp.convolve", "grp.broad", "flat", "plain"}


@pytest.mark.parametrize("enabled", [True, False])
def test_build_dags_restores_the_garbage_collector(tmp_path, monkeypatch, enabled):
    from pathlib import Path

    from phangs_operators.dag_factory import build_dags

    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path))
    keys = Path(__file__).resolve().parents[2] / "include" / "keys"
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        dags = build_dags(keys, targets=["ngc9997"])
        assert gc.isenabled() is enabled
        assert list(dags) == ["phangs_ngc9997"]
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("airflow_setattr", [False, True])
def test_attribute_setting_after_construction_behaves_as_airflow(monkeypatch, airflow_setattr):
    """The cached-converter ``__setattr__``: converters still run, a template field set to an
    XComArg after construction still makes the dependency, ``__init_kwargs`` follows."""
    from datetime import timedelta

    from airflow.sdk import DAG

    from phangs_operators.operators import base

    if airflow_setattr:
        monkeypatch.delattr(base.PhangsBaseOperator, "__setattr__")
    dag, ops = _build(DAG, {"owner": "phangs"})
    conv, broad, plain = ops[0], ops[1], ops[3]
    broad.retry_delay = 12.0  # BaseOperator converts seconds to a timedelta
    assert broad.retry_delay == timedelta(seconds=12)
    broad.retries = "3"
    assert broad.retries == 3
    out = conv.output
    assert "grp.convolve" not in plain.upstream_task_ids
    plain.workdir = out  # a template field set after construction
    assert "grp.convolve" in plain.upstream_task_ids
    assert plain._BaseOperator__init_kwargs["workdir"] is out
    broad.note = "not an argument"
    assert broad.note == "not an argument" and "note" not in broad._BaseOperator__init_kwargs
