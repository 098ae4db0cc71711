"""Collect the QA records of a target's working directories and find its FITS products.

Records are ``{workdir}/qa/*.json`` (written by :class:`~phangs_operators.operators.base.
PhangsBaseOperator`). Products are found from the records' results (the paths the derived,
feather and export steps returned), never by guessing names, except the interferometer-only
cube of a feathered config, which is the feathered cube's name without ``+tp``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from phangs_operators.qa.checks import ProductSet, is_feather_record, subject_of

log = logging.getLogger(__name__)

#: key in a record result that marks the QA report task's own record (not collected)
REPORT_MARK = "qa_report_html"


def load_records(workdirs: Iterable[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """All QA records under ``<workdir>/qa/`` of each workdir, plus problems found.

    Each record gets ``_file`` (its path) and ``_mtime`` (its modification time, s since the
    epoch: the task's finish time). Unreadable files are reported, not raised.
    """
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for wd in workdirs:
        qa_dir = Path(wd) / "qa"
        if not qa_dir.is_dir():
            continue
        for f in sorted(qa_dir.glob("*.json")):
            rf = f.resolve()
            if rf in seen:
                continue
            seen.add(rf)
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{f}: unreadable QA record ({exc})")
                continue
            if not isinstance(rec, dict) or "task_id" not in rec:
                problems.append(f"{f}: not a QA record (no task_id)")
                continue
            if isinstance(rec.get("result"), Mapping) and REPORT_MARK in rec["result"]:
                continue
            rec["_file"] = str(f)
            rec["_mtime"] = f.stat().st_mtime
            records.append(rec)
    return records, problems


def _result(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    r = rec.get("result")
    return r if isinstance(r, Mapping) else {}


def _stem(path: str) -> str:
    name = Path(path).name
    name = name[:-5] if name.endswith(".fits") else name
    for suffix in ("_pbcorr_trimmed_k", "_trimmed_k", "_k"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def discover_products(records: Sequence[Mapping[str, Any]]) -> list[ProductSet]:
    """Native-resolution product sets (cube, noise, masks, moments, TP, interferometer cube).

    Fields read: derived records ``result.{res_tag, cube, noise, strictmask, broadmask,
    products: {name: {map, error}}}``; export records ``result.fits``; feather records
    ``inputs`` (the TP FITS) and ``result.numbers``.
    """
    sets: dict[str, ProductSet] = {}
    by_group: dict[str, ProductSet] = {}

    def get(cube: str) -> ProductSet:
        key = _stem(cube)
        if key not in sets:
            sets[key] = ProductSet(name=key, cube=cube)
        return sets[key]

    # 1. derived records: per task group, native resolution only
    for rec in records:
        if rec.get("stage") != "derived":
            continue
        r = _result(rec)
        if r.get("res_tag") not in (None, "") or r.get("skipped"):
            continue
        grp = subject_of(rec)
        cube = r.get("cube")
        if isinstance(cube, str) and cube.endswith(".fits"):
            ps = get(cube)
            by_group[grp] = ps
            for key in ("noise", "strictmask"):
                if isinstance(r.get(key), str):
                    setattr(ps, key, r[key])
    for rec in records:
        if rec.get("stage") != "derived":
            continue
        r = _result(rec)
        ps = by_group.get(subject_of(rec))
        if ps is None:
            continue
        if isinstance(r.get("broadmask"), str):
            ps.broadmask = r["broadmask"]
        if r.get("res_tag") in (None, "") and isinstance(r.get("products"), Mapping):
            for name, val in r["products"].items():
                path = val.get("map") if isinstance(val, Mapping) else val
                if isinstance(path, str):  # moment key names: strictmom0, broadmom0, ...
                    ps.moments[str(name).replace("_", "")] = path
    # 2. exported cubes without derived products
    exports: dict[str, str] = {}
    for rec in records:
        fits = _result(rec).get("fits")
        if rec.get("stage") == "postprocess" and isinstance(fits, str) and fits.endswith(".fits"):
            exports[subject_of(rec)] = fits
            get(fits)
    # 3. feathering: the TP FITS and the interferometer-only cube
    for rec in records:
        if not is_feather_record(rec):
            continue
        sd = next((p for p in rec.get("inputs") or [] if isinstance(p, str) and p.endswith(".fits")), None)
        feathered = exports.get(subject_of(rec))
        if feathered is None:
            continue
        ps = get(feathered)
        ps.singledish = sd
        stem = Path(feathered).name
        if "+tp_" in stem:
            cand = Path(feathered).with_name(stem.replace("+tp_", "_", 1))
            ps.interf_cube = str(cand)
    return sorted(sets.values(), key=lambda p: p.name)


def data_used(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per staging task: configuration group, product kind and the measurement sets used."""
    out = []
    for rec in records:
        if rec.get("stage") != "staging":
            continue
        r = _result(rec)
        arrays: dict[str, set[str]] = {}
        for i in r.get("inputs") or []:
            if isinstance(i, Mapping):
                arrays.setdefault(str(i.get("array", "?")), set()).add(Path(str(i.get("ms", "?"))).name)
        if not arrays:
            for p in rec.get("inputs") or []:
                arrays.setdefault("?", set()).add(Path(str(p)).name)
        out.append({"group": subject_of(rec), "product": r.get("product"), "out_ms": r.get("out_ms"),
                    "nchan": r.get("nchan"), "chan_width_kms": r.get("chan_width_kms"),
                    "inputs": {k: sorted(v) for k, v in sorted(arrays.items())}})
    return out
