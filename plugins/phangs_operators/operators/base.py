"""Common behaviour of the phangs operators.

An operator is thin: ``__init__`` only stores arguments (DAG parsing runs it for every DAG:
no I/O, no CASA import), ``execute`` resolves inputs, calls **one** routine, records a QA /
provenance JSON next to its outputs and returns a small XCom (paths, numbers; never arrays).

Behaviour shared by every operator, driven by the DAG run's params when present:

* ``stages``: a task whose :attr:`stage` is not selected is skipped (and so is what depends on it);
* ``force``: re-run even when the outputs of a previous run exist;
* ``dry_run``: log the files the task would read and write, touch nothing.

Restart semantics: when every declared output exists and its QA record is present, the
routine is not called again (the recorded result is returned), unless ``force``.
CASA steps (:attr:`casa_step`) default to the ``casa`` pool, retries and a timeout, and run in
their own scratch directory with their own CASA log file.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from phangs_operators import __version__
from phangs_operators.jsonable import jsonable

log = logging.getLogger(__name__)

#: pipeline stages, in order; the DAG params form offers these
STAGES = ("total_power", "staging", "imaging", "postprocess", "derived", "publish")

CASA_POOL = "casa"
# step defaults (timedelta is immutable: one object shared by all tasks)
_CASA_RETRY_DELAY, _CASA_TIMEOUT = timedelta(minutes=1), timedelta(hours=12)
_RETRY_DELAY, _TIMEOUT = timedelta(seconds=30), timedelta(hours=2)
#: Celery queue of CASA steps (``airflow celery worker --queues casa``); ignored by LocalExecutor
CASA_QUEUE = "casa"
#: operator class -> attribute names that BaseOperator converts (``_convert_<name>`` methods)
_CONVERTER_KEYS: dict[type, frozenset[str]] = {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class PhangsBaseOperator(BaseOperator):
    """Base class of every phangs operator.

    Parameters
    ----------
    workdir
        Working directory of the step (intermediate files, QA JSON, CASA logs).
    force
        Re-run even when outputs exist (templated; the DAG passes ``{{ params.force }}``).
    serves_configs, serves_product
        For runs whose params select ``configs`` / ``products``: the configs this task is
        needed for (its own and the ones built on it, e.g. ``12m+7m`` serves ``12m+7m+tp``)
        and its product. ``None`` means always needed.
    """

    template_fields: Sequence[str] = ("workdir", "force")
    #: stage this step belongs to (see :data:`STAGES`)
    stage: str = "imaging"
    #: True for steps that run CASA (pool ``casa``, scratch cwd, CASA log file)
    casa_step: bool = False
    ui_color = "#e8f1fb"

    def __init__(self, *, workdir: str, force: bool | str = False,
                 serves_configs: Sequence[str] | None = None, serves_product: str | None = None,
                 **kwargs: Any) -> None:
        self._step_defaults(kwargs)
        if getattr(self, "_hook_apply_defaults", None) is None and "_BaseOperator__init_kwargs" in self.__dict__:
            _init_base_operator(self, kwargs)  # = super().__init__(**kwargs), minus a repeated merge
        else:
            super().__init__(**kwargs)
        self.workdir = workdir
        self.force = force
        self.serves_configs = list(serves_configs) if serves_configs is not None else None
        self.serves_product = serves_product
        self.overwrite = False

    def __setattr__(self, key: str, value: Any) -> None:
        """``BaseOperator.__setattr__`` with its converter lookup cached per class.

        Airflow looks up ``_convert_<key>`` with ``getattr`` on every attribute set (~70 per
        operator while it is built): a fifth of the parse time of the PHANGS DAGs. Keys with a
        converter still go through Airflow's own method; for the others this does what it
        does after the lookup (set; keep ``__init_kwargs`` in step; XComArg dependencies of
        template fields set after construction).
        """
        cls = type(self)
        converted = _CONVERTER_KEYS.get(cls)
        if converted is None:
            converted = _CONVERTER_KEYS[cls] = frozenset(
                name[len("_convert_"):] for name in dir(cls) if name.startswith("_convert_"))
        if key in converted:
            BaseOperator.__setattr__(self, key, value)
            return
        object.__setattr__(self, key, value)
        if self._BaseOperator__from_mapped or self._lock_for_execution:
            return
        if key in self._BaseOperator__init_kwargs:
            self._BaseOperator__init_kwargs[key] = value
        if self._BaseOperator__instantiated and key in self.template_fields:
            self._set_xcomargs_dependency(key, value)

    @classmethod
    def _step_defaults(cls, kwargs: dict[str, Any]) -> None:
        """Pool, retries, timeouts and docs of a step (for ``__init__`` and ``.partial``)."""
        if cls.casa_step:
            kwargs.setdefault("pool", CASA_POOL)
            kwargs.setdefault("queue", CASA_QUEUE)  # Celery workers for CASA listen on it
            kwargs.setdefault("retries", 2)
            kwargs.setdefault("retry_delay", _CASA_RETRY_DELAY)
            kwargs.setdefault("execution_timeout", _CASA_TIMEOUT)
        else:
            kwargs.setdefault("retries", 1)
            kwargs.setdefault("retry_delay", _RETRY_DELAY)
            kwargs.setdefault("execution_timeout", _TIMEOUT)
        if not kwargs.get("doc_md"):
            kwargs["doc_md"] = cls.__doc__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _cache_init_signature(cls)

    @classmethod
    def partial(cls, **kwargs: Any):  # type: ignore[override]
        """``BaseOperator.partial`` with the step defaults (mapped tasks skip ``__init__``)."""
        cls._step_defaults(kwargs)
        return super().partial(**kwargs)

    # -- hooks for subclasses ---------------------------------------------------------
    def inputs(self, context: Mapping[str, Any]) -> list[str]:
        """Files the step reads (for dry runs, provenance and input checks)."""
        return []

    def outputs(self, context: Mapping[str, Any]) -> list[str]:
        """Files the step writes; when they all exist the step is considered finished."""
        return []

    def run_routine(self, context: Mapping[str, Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- machinery ----------------------------------------------------------------------
    def _map_suffix(self, context: Mapping[str, Any]) -> str:
        ti = context.get("ti")
        map_index = getattr(ti, "map_index", -1) if ti is not None else -1
        return f".{map_index}" if map_index is not None and map_index >= 0 else ""

    def qa_path(self, context: Mapping[str, Any]) -> Path:
        name = self.task_id.replace("/", "_") + self._map_suffix(context) + ".json"
        return Path(self.workdir) / "qa" / name

    def _selected(self, context: Mapping[str, Any]) -> str | None:
        """None when the task is selected by the run's params, else the reason to skip."""
        params = context.get("params") or {}
        stages = params.get("stages")
        if stages and self.stage not in stages:
            return f"stage {self.stage!r} not selected (stages={list(stages)})"
        configs = params.get("configs")
        if configs and self.serves_configs is not None and not set(configs) & set(self.serves_configs):
            return f"configs {self.serves_configs} not selected (configs={list(configs)})"
        products = params.get("products")
        if products and self.serves_product is not None and self.serves_product not in products:
            return f"product {self.serves_product!r} not selected (products={list(products)})"
        return None

    def execute(self, context: Mapping[str, Any]) -> Any:
        params = context.get("params") or {}
        reason = self._selected(context)
        inputs, outputs = self.inputs(context), self.outputs(context)
        qa_file = self.qa_path(context)
        recorded = qa_file.is_file() and all(Path(p).exists() for p in outputs)
        finished = bool(outputs) and recorded
        if reason:
            if recorded:  # downstream steps of a selected stage can still use these outputs
                self.log.info("%s; using the outputs of a previous run", reason)
                return json.loads(qa_file.read_text())["result"]
            raise AirflowSkipException(reason)
        force = _truthy(self.force) or _truthy(params.get("force", False))
        #: routines get ``overwrite=self.overwrite``: a forced re-run really recomputes
        self.overwrite = force
        if _truthy(params.get("dry_run", False)):
            self.log.info("dry run: %s would read %s and write %s", self.task_id, inputs, outputs)
            return {"dry_run": True, "inputs": inputs, "outputs": outputs}
        if finished and not force:
            self.log.info("outputs of %s exist (%s); not re-running (force=False)", self.task_id, outputs)
            return json.loads(qa_file.read_text())["result"]
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        if self.casa_step:
            result = self._run_casa(context)
        else:
            result = self.run_routine(context)
        elapsed = time.monotonic() - t0
        result = jsonable(result)
        self._record(context, qa_file, result, inputs, elapsed)
        self.log.info("%s finished in %.1f s", self.task_id, elapsed)
        return result

    def _run_casa(self, context: Mapping[str, Any]) -> Any:
        from phangs_operators.casa import casa_session, casatasks  # noqa: PLC0415 - CASA only at run time

        t0 = time.monotonic()
        casatasks()  # import + configuration, paid once per task process: recorded apart
        self._casa_import_s = time.monotonic() - t0
        ti = context.get("ti")
        try_number = getattr(ti, "try_number", 1) if ti is not None else 1
        tag = self.task_id.replace("/", "_").replace(".", "_") + self._map_suffix(context)
        scratch = Path(self.workdir) / "scratch" / f"{tag}.try{try_number}"
        logfile = Path(self.workdir) / "logs" / f"{tag}.casa.log"
        self.log.info("CASA scratch directory %s, CASA log %s", scratch, logfile)
        try:
            with casa_session(scratch, logfile):
                return self.run_routine(context)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _record(self, context: Mapping[str, Any], qa_file: Path, result: Any,
                inputs: list[str], elapsed: float) -> None:
        ti = context.get("ti")
        record = {
            "task_id": self.task_id,
            "dag_id": getattr(ti, "dag_id", None),
            "run_id": getattr(ti, "run_id", None),
            "map_index": getattr(ti, "map_index", None),
            "try_number": getattr(ti, "try_number", None),
            "host": socket.gethostname(),
            "stage": self.stage,
            "elapsed_s": round(elapsed, 3),
            # part of elapsed_s spent importing CASA in this process (None: not a CASA step)
            "casa_import_s": (round(self._casa_import_s, 3) if getattr(self, "_casa_import_s", None) is not None
                              else None),
            "inputs": inputs,
            "software": {"phangs_airflow": __version__},
            "result": result,
        }
        qa_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = qa_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, qa_file)


def _cache_init_signature(cls: type) -> None:
    """Store ``inspect.signature(cls.__init__)`` on the function (parse-time speed only).

    Airflow's ``.partial()`` computes the signature of every ``__init__`` of the operator's
    classes for every mapped task it creates (``_get_operator_defaults``); ``inspect.signature``
    returns a function's ``__signature__`` when it has one, so this makes that a lookup. The
    signature is the one ``inspect`` would compute; the metaclass wrapper copies it along.
    """
    init = cls.__dict__.get("__init__")
    if init is not None and "__signature__" not in getattr(init, "__dict__", {"__signature__": None}):
        init.__signature__ = inspect.signature(init)


_cache_init_signature(PhangsBaseOperator)


_BASE_INIT = BaseOperator.__init__.__wrapped__
_BASE_INIT_PARAMS = tuple(n for n in inspect.signature(_BASE_INIT).parameters if n != "self")


def _init_base_operator(self: BaseOperator, kwargs: dict[str, Any]) -> None:
    """``BaseOperator.__init__(self, **kwargs)`` from inside an operator's ``__init__``.

    ``PhangsBaseOperator.__init__`` always runs inside Airflow's ``apply_defaults`` of the
    operator class (or of this class), which has already taken the DAG and task group from
    the context, merged the DAG's and the task's ``default_args`` and ``params`` and passed
    the merged ``default_args`` down. BaseOperator's own ``apply_defaults`` would redo that
    merge (deep-copying the DAG params) for every task; this does what that level adds on
    top of it: fill BaseOperator's arguments from ``default_args``, call the function,
    record the arguments and validate trigger arguments.
    """
    default_args = kwargs.pop("default_args", None) or {}
    for name in _BASE_INIT_PARAMS:
        if name not in kwargs and name in default_args:
            kwargs[name] = default_args[name]
    _BASE_INIT(self, **kwargs, default_args=default_args)
    self._BaseOperator__init_kwargs.update(kwargs)
    if hasattr(self, "_validate_start_from_trigger_kwargs"):
        self._validate_start_from_trigger_kwargs()


def _skip_nested_apply_defaults(cls: type) -> None:
    """Run ``cls.__init__`` without Airflow's ``apply_defaults`` when a subclass calls it.

    Airflow's metaclass wraps every operator ``__init__`` in ``apply_defaults``, which merges
    the DAG's default_args and params again at each level of ``super().__init__()``; an
    operator derived from this class paid three merges (its own, this one and BaseOperator's)
    for every task, at parse time. When called from a subclass's ``__init__`` (the outer
    ``apply_defaults`` has started: it sets ``_BaseOperator__init_kwargs``), this level only
    fills its own keyword arguments from ``default_args`` (what its ``apply_defaults`` would
    have added) and calls the function; the outer level does the rest as before (and
    :func:`_init_base_operator` replaces BaseOperator's level). Called on its own
    (``PhangsBaseOperator(...)``, or a subclass without an ``__init__``) the usual wrapper
    runs. ``tests/airflow/test_parse_speedups.py`` checks that operators built either way are
    identical.
    """
    wrapped = cls.__dict__["__init__"]
    raw = wrapped.__wrapped__
    own = [n for n, prm in inspect.signature(raw).parameters.items() if prm.kind is prm.KEYWORD_ONLY]

    def __init__(self, **kwargs: Any) -> None:
        if "_BaseOperator__init_kwargs" not in self.__dict__:
            return wrapped(self, **kwargs)
        defaults = kwargs.get("default_args") or {}
        filled = {name: defaults[name] for name in own if name not in kwargs and name in defaults}
        kwargs.update(filled)
        raw(self, **kwargs)
        if filled:  # recorded with the operator's arguments, as apply_defaults does
            self._BaseOperator__init_kwargs.update(filled)

    __init__.__dict__.update(wrapped.__dict__)  # __signature__ and the metaclass' bookkeeping
    __init__.__wrapped__ = raw  # what apply_defaults compares to find the outermost level
    __init__.airflow_init = wrapped  # the plain Airflow path (tests compare both)
    __init__.__doc__, __init__.__qualname__ = raw.__doc__, raw.__qualname__
    cls.__init__ = __init__


_skip_nested_apply_defaults(PhangsBaseOperator)


class RunStatusOperator(BaseOperator):
    """Fails the DAG run when a step failed.

    Downstream of every task with trigger rule ``one_failed``: it runs only when something
    failed, and then fails itself, so the run is marked failed even though the QA report
    (``all_done``) succeeded. Skipped when everything went well.
    """

    ui_color = "#f8d7da"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "one_failed")
        kwargs.setdefault("doc_md", type(self).__doc__)
        super().__init__(**kwargs)

    def execute(self, context: Mapping[str, Any]) -> None:
        raise AirflowFailException("a step of this run failed: see the failed task(s) and their logs")
