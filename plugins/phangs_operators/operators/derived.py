"""Stage 4 operators: convolution, noise cubes, strict/broad masks and moment maps.

They are mapped over the derived resolutions of a (config, product) (native first) and pass a
small record along the chain: ``{"res_tag": "", "cube": ..., "noise": ..., "strictmask": ...}``.
A requested resolution finer than the cube's beam is a logged skip (``"skipped": true``),
never a failure, and every later step passes it through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phangs_operators import filenames as fn
from phangs_operators.operators.base import PhangsBaseOperator, _skip_nested_apply_defaults


def _record(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return {"cube": str(value), "res_tag": ""}


def _fits(value: Any) -> str:
    if isinstance(value, Mapping):
        return value.get("fits") or value.get("cube") or value["out_fits"]
    return str(value)


def _flatten(values: Any) -> list[Any]:
    out: list[Any] = []
    for v in values if isinstance(values, (list, tuple)) else list(values):
        if isinstance(v, Mapping) or isinstance(v, str):
            out.append(v)
        else:
            out.extend(_flatten(list(v)))
    return out


class _DerivedOperator(PhangsBaseOperator):
    stage = "derived"
    ui_color = "#fff3cd"

    def __init__(self, *, names: Mapping[str, str] | None = None, out_dir: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = dict(names or {})
        self.out_dir = out_dir

    def derived_path(self, res_tag: str, ext: str) -> str:
        name = fn.derived_filename(self.names["target"], self.names["config"], self.names["product"],
                                   res=res_tag or None, ext=ext)
        return str(Path(self.out_dir or self.workdir) / name)


# a derived operator's __init__ calls this one, which then skips Airflow's repeated merge
_skip_nested_apply_defaults(_DerivedOperator)


class ConvolveCubeOperator(_DerivedOperator):
    """Convolve the science-ready cube to one angular (``arcsec``) or physical (``pc`` at
    ``distance_mpc``) resolution (round beam, PHANGS tolerance rule, coverage cube, DIST_MPC).
    The native resolution (``res_tag`` ``""``) passes the cube through.

    XCom: ``{"res_tag":, "cube":, "coverage":, "skipped":}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "cube", "out_dir")

    def __init__(self, *, cube: Any, res_tag: str = "", arcsec: float | None = None,
                 pc: float | None = None, distance_mpc: float | None = None,
                 convolve_kw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("map_index_template", "{{ res_label }}")
        super().__init__(**kwargs)
        self.cube, self.res_tag, self.arcsec, self.pc = cube, res_tag, arcsec, pc
        self.distance_mpc = distance_mpc
        self.convolve_kw = dict(convolve_kw or {})

    def outputs(self, context):
        return [self.derived_path(self.res_tag, "")] if self.res_tag else []

    def execute(self, context):
        context["res_label"] = self.res_tag or "native"
        return super().execute(context)

    def run_routine(self, context):
        cube = _fits(self.cube)
        if not self.res_tag:
            return {"res_tag": "", "cube": cube, "coverage": None, "skipped": False}
        from phangs_operators.routines.cubes import convolution  # noqa: PLC0415

        arcsec = self.arcsec
        if arcsec is None:
            arcsec = convolution.physical_to_angular_arcsec(float(self.pc), float(self.distance_mpc))
        out = self.derived_path(self.res_tag, "")
        result = convolution.convolve_cube(
            cube, out, target_beam_arcsec=float(arcsec),
            coverage_fits=self.derived_path(self.res_tag, "_coverage"),
            coverage2d_fits=self.derived_path(self.res_tag, "_coverage2d"),
            dist_mpc=self.distance_mpc, **self.convolve_kw)
        rec = result.to_dict()
        skipped = rec.get("status") == "skipped"
        if skipped:
            self.log.warning("%s: %s (%.2f arcsec) is finer than the cube's beam (%.2f arcsec): skipped",
                             cube, self.res_tag, arcsec, rec.get("native_beam_arcsec") or 0)
        return {"res_tag": self.res_tag, "cube": None if skipped else out,
                "coverage": rec.get("coverage_fits"), "coverage2d": rec.get("coverage2d_fits"),
                "skipped": skipped, "convolve": rec}


class NoiseCubeOperator(_DerivedOperator):
    """Noise cube of one resolution (PHANGS ``recipe_phangs_noise``: spec_box, iterations, box,
    substride, bandpass smoothing, zero-centred MAD). XCom: the record plus ``"noise"``."""

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "cube")

    def __init__(self, *, cube: Any, noise_kw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cube = cube
        self.noise_kw = dict(noise_kw or {})

    def run_routine(self, context):
        rec = _record(self.cube)
        if rec.get("skipped"):
            return rec
        from phangs_operators.routines.cubes.noise import make_noise_cube  # noqa: PLC0415

        out = self.derived_path(rec.get("res_tag") or "", "_noise")
        result = make_noise_cube(rec["cube"], out, **self.noise_kw).to_dict()
        rec["noise"] = out
        rec["noise_result"] = result
        median = result.get("median_noise")
        if median is None or not math.isfinite(float(median)):
            # e.g. a map smaller than the noise box at a coarse resolution: nothing to mask
            self.log.warning("%s: the noise is undefined everywhere (map too small for the noise box at "
                             "this resolution?); no masks or moments at resolution %r", out,
                             rec.get("res_tag") or "native")
            rec["skipped"] = True
            rec["skip_reason"] = "noise undefined everywhere"
        return rec


class StrictMaskOperator(_DerivedOperator):
    """Strict mask of one resolution (hi/lo thresholds and channels, region rejection, coverage
    prior, xy/v growth). XCom: the record plus ``"strictmask"``."""

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "cube")

    def __init__(self, *, cube: Any, strictmask_kw: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cube = cube
        self.strictmask_kw = dict(strictmask_kw or {})

    def run_routine(self, context):
        rec = _record(self.cube)
        if rec.get("skipped"):
            return rec
        from phangs_operators.routines.cubes.masks import make_strict_mask  # noqa: PLC0415

        out = self.derived_path(rec.get("res_tag") or "", "_strictmask")
        result = make_strict_mask(rec["cube"], rec["noise"], out, coverage_fits=rec.get("coverage"),
                                  **self.strictmask_kw)
        rec["strictmask"] = out
        rec["strictmask_result"] = result.to_dict()
        return rec


class BroadMaskOperator(_DerivedOperator):
    """Broad mask: union of the strict masks of every resolution of this config and of its
    linked ``mask_configs``, reprojected by nearest pixel onto the native grid.
    XCom: ``{"broadmask": <native grid>, ...}``."""

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "strict_masks", "cubes")

    def __init__(self, *, strict_masks: list[Any], cubes: Any = None,
                 broadmask_kw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strict_masks = strict_masks
        self.cubes = cubes
        self.broadmask_kw = dict(broadmask_kw or {})

    def outputs(self, context):
        return [self.derived_path("", "_broadmask")]

    def run_routine(self, context):
        from phangs_operators.routines.cubes.masks import make_broad_mask  # noqa: PLC0415

        groups = list(self.strict_masks)
        own = [_record(r) for r in _flatten(groups[:1])]
        linked = [_record(r) for r in _flatten(groups[1:])]
        native = next((r for r in own if not r.get("res_tag") and r.get("strictmask")), None)
        if native is None:
            raise ValueError(f"broad mask of {self.names} needs the native-resolution strict mask; "
                             f"got {[r.get('strictmask') for r in own]}")
        others = [r["strictmask"] for r in own + linked if r.get("strictmask") and r is not native]
        out = self.derived_path("", "_broadmask")
        result = make_broad_mask(native["strictmask"], others, out, **self.broadmask_kw)
        return {"broadmask": out, "template": native["strictmask"], "inputs": others,
                "result": result.to_dict()}


class MomentsOperator(_DerivedOperator):
    """Moment maps and their uncertainty maps for one resolution, from the moment key
    definitions (mom0, mom1, mom2, ew, tpeak, vpeak, ...), with PHANGS names and headers.
    XCom: ``{"res_tag":, "maps": [paths]}``."""

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "cube", "broad_mask")

    def __init__(self, *, cube: Any, broad_mask: Any, moments: list[Mapping[str, Any]],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cube, self.broad_mask = cube, broad_mask
        self.moments = [dict(m) for m in moments]

    def run_routine(self, context):
        rec = _record(self.cube)
        if rec.get("skipped"):
            return {"res_tag": rec.get("res_tag"), "maps": [], "skipped": True}
        from phangs_operators.routines.cubes.moments import MomentDef, make_moments  # noqa: PLC0415

        broad = self.broad_mask["broadmask"] if isinstance(self.broad_mask, Mapping) else self.broad_mask
        res = rec.get("res_tag") or ""
        root = Path(self.derived_path(res, "")).name[: -len(".fits")]
        defs = [MomentDef(name=m["name"], algorithm=m["algorithm"], mask=m.get("mask"), ext=m["ext"],
                          ext_error=m.get("ext_error") or "", round=int(m.get("round", 1)),
                          kwargs=dict(m.get("kwargs") or {}), maps_to_pass=list(m.get("maps_to_pass") or []),
                          other_exts=dict(m.get("other_exts") or {}))
                for m in self.moments]
        result = make_moments(rec["cube"], rec["noise"], {"strictmask": rec["strictmask"], "broadmask": broad},
                              self.out_dir or self.workdir, defs, root=root).to_dict()
        maps = [p for prod in result.get("products", {}).values() for k, p in prod.items()
                if k in ("map", "error") and isinstance(p, str)]
        return {"res_tag": res, "maps": maps, "moments": result}


def _moment_defs(moments: Sequence[Mapping[str, Any]]):
    from phangs_operators.routines.cubes.moments import MomentDef  # noqa: PLC0415

    return [MomentDef(name=m["name"], algorithm=m["algorithm"], mask=m.get("mask"), ext=m["ext"],
                      ext_error=m.get("ext_error") or "", round=int(m.get("round", 1)),
                      kwargs=dict(m.get("kwargs") or {}), maps_to_pass=list(m.get("maps_to_pass") or []),
                      other_exts=dict(m.get("other_exts") or {}))
            for m in moments]


#: maps a round-2 mom1wprior needs when the moment key gives no ``maps_to_pass``
MOM1WPRIOR_MAPS = ("strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1", "broad_mom0", "broad_emom0")


class Mom1WithPriorOperator(_DerivedOperator):
    """Round-2 moments of one resolution (PHANGS ``task_generate_secondary_moments``):
    ``mom1wprior``, the strict mom1 filled from the broad mom1 where the broad mom0 is
    significant and the broad mom1 agrees with the prior velocity field
    (``vfield_reject_thresh``). The maps it reads (``maps_to_pass``) are the round-1 maps of the
    same resolution; the prior is the moment key's ``other_exts['vfield_prior']`` file
    (``{target}_7m+tp_co21_15as_strict_mom1.fits`` for PHANGS), made by another config's
    round-1 moments. Without that file the hybrid is made without the prior test (logged).
    XCom: ``{"res_tag":, "maps": [paths], "moments": {...}}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "round1", "out_dir")

    def __init__(self, *, round1: Any, moments: list[Mapping[str, Any]], vfield_prior: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.round1 = round1
        self.moments = [dict(m) for m in moments]
        self.vfield_prior = vfield_prior

    def _res(self) -> tuple[str, bool]:
        rec = _record(self.round1) if isinstance(self.round1, Mapping) else {"res_tag": "", "skipped": False}
        return rec.get("res_tag") or "", bool(rec.get("skipped"))

    def outputs(self, context):
        res, skipped = self._res()
        if skipped:
            return []
        return [self.derived_path(res, ext) for m in self.moments for ext in (m["ext"], m.get("ext_error"))
                if ext]

    def execute(self, context):
        context["res_label"] = self._res()[0] or "native"
        return super().execute(context)

    def run_routine(self, context):
        res, skipped = self._res()
        if skipped:
            return {"res_tag": res, "maps": [], "skipped": True}
        from phangs_operators.routines.cubes.moments import make_mom1wprior  # noqa: PLC0415

        prior = self.vfield_prior
        if prior and not Path(prior).is_file():
            self.log.warning("prior velocity field %s does not exist (its config/resolution was not made "
                             "or was skipped): mom1wprior without the prior test", prior)
            prior = None
        elif not prior:
            self.log.warning("no prior velocity field planned for %s: mom1wprior without the prior test",
                             self.names)
        maps: list[str] = []
        results: dict[str, Any] = {}
        skipped_defs: dict[str, str] = {}
        for d in _moment_defs(self.moments):
            if d.algorithm != "mom1wprior":
                skipped_defs[d.name] = f"algorithm {d.algorithm!r} is not a round-2 moment"
                continue
            passed = {ext: self.derived_path(res, "_" + ext) for ext in (d.maps_to_pass or MOM1WPRIOR_MAPS)}
            need = ("strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1")
            missing = [passed.get(e) or e for e in need if not passed.get(e) or not Path(passed[e]).is_file()]
            if missing:
                # PHANGS skips a round-2 moment whose inputs are missing (with a warning)
                skipped_defs[d.name] = f"round-1 maps missing: {missing}"
                self.log.warning("%s at %r: round-1 maps missing %s; skipped", d.name, res or "native", missing)
                continue
            optional = {k: passed.get(k) if passed.get(k) and Path(passed[k]).is_file() else None
                        for k in ("broad_mom0", "broad_emom0")}
            out_map, out_err = self.derived_path(res, d.ext), self.derived_path(res, d.ext_error)
            r = make_mom1wprior(passed["strict_mom1"], passed["strict_emom1"], passed["broad_mom1"],
                                passed["broad_emom1"], out_map, out_err, vfield_prior=prior,
                                vfield_reject_thresh=d.kwargs.get("vfield_reject_thresh", "30km/s"),
                                mom0_thresh=float(d.kwargs.get("mom0_thresh", 2.0)), **optional).to_dict()
            results[d.name] = {**r["products"].get("mom1wprior", {}), "warnings": r.get("warnings", [])}
            maps += [out_map, out_err]
        return {"res_tag": res, "maps": maps, "moments": results, "vfield_prior": prior,
                "skipped_moments": skipped_defs}


class FlatProductsOperator(_DerivedOperator):
    """Round 3 of one (config, product) (PHANGS ``task_build_vfield``,
    ``task_build_flat_strict_mask`` / ``task_build_flat_broad_mask`` and
    ``task_generate_flatmaps``), one QA record for the three steps:

    1. the velocity field ``{target}_{config}_{product}_vfield.fits``: hierarchical fill from the
       ``mom1wprior`` maps in ``vfields`` (this config native first, its other resolutions, then
       its linked ``mask_configs``; missing files are left out);
    2. per resolution a flat strict mask (|v - vfield| <= window/2, OR the strict mask) and a
       flat broad mask (OR the broad mask), tagged with the resolution;
    3. the round-3 moments (``flatstrictmom0``, ``flatbroadmom0``) with those masks.

    XCom: ``{"files": [vfield], "maps": [{"res_tag":, "maps": [...]}...]}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "resolutions", "broad_mask",
                                      "out_dir")

    def __init__(self, *, resolutions: Any, broad_mask: Any, vfields: Sequence[str],
                 moments: list[Mapping[str, Any]], flatstrictmask_kw: Mapping[str, Any] | None = None,
                 flatbroadmask_kw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolutions = resolutions
        self.broad_mask = broad_mask
        self.vfields = list(vfields)
        self.moments = [dict(m) for m in moments]
        self.flatstrictmask_kw = dict(flatstrictmask_kw or {})
        self.flatbroadmask_kw = dict(flatbroadmask_kw or {})

    def vfield_path(self) -> str:
        return self.derived_path("", "_vfield")

    def outputs(self, context):
        return [self.vfield_path()]

    def run_routine(self, context):
        from phangs_operators.routines.cubes.masks import make_flat_mask  # noqa: PLC0415
        from phangs_operators.routines.cubes.moments import make_moments  # noqa: PLC0415
        from phangs_operators.routines.cubes.vfield import make_vfield  # noqa: PLC0415

        available = [p for p in self.vfields if Path(p).is_file()]
        if not available:
            self.log.warning("no mom1wprior map of %s or its linked configs exists (%s): no velocity "
                             "field, no flat masks or flat moments", self.names, self.vfields)
            return {"skipped": True, "reason": "no mom1wprior map", "candidates": self.vfields}
        vfield = self.vfield_path()
        vres = make_vfield(available[0], available[1:], vfield).to_dict()
        broad = self.broad_mask["broadmask"] if isinstance(self.broad_mask, Mapping) else self.broad_mask
        per_res: list[dict[str, Any]] = []
        for rec in (_record(r) for r in _flatten(self.resolutions if isinstance(self.resolutions, (list, tuple))
                                                  else [self.resolutions])):
            res = rec.get("res_tag") or ""
            if rec.get("skipped") or not rec.get("strictmask"):
                per_res.append({"res_tag": res, "maps": [], "skipped": True})
                continue
            masks = {"flatstrictmask": self.derived_path(res, "_flatstrictmask"),
                     "flatbroadmask": self.derived_path(res, "_flatbroadmask")}
            mres = {
                "flatstrictmask": make_flat_mask(rec["cube"], vfield, masks["flatstrictmask"],
                                                 mask_fits=rec["strictmask"], **self.flatstrictmask_kw).to_dict(),
                "flatbroadmask": make_flat_mask(rec["cube"], vfield, masks["flatbroadmask"], mask_fits=broad,
                                                **self.flatbroadmask_kw).to_dict(),
            }
            root = Path(self.derived_path(res, "")).name[: -len(".fits")]
            moms = make_moments(rec["cube"], rec["noise"], masks, self.out_dir or self.workdir,
                                _moment_defs(self.moments), root=root).to_dict()
            files = [p for prod in moms.get("products", {}).values() for k, p in prod.items()
                     if k in ("map", "error") and isinstance(p, str)]
            per_res.append({"res_tag": res, "maps": [*masks.values(), *files],
                            "masks": {k: {"n_voxels": v.get("n_voxels"), "fraction": v.get("fraction")}
                                      for k, v in mres.items()},
                            "moments": moms.get("products", {}), "moment_warnings": moms.get("warnings", [])})
        return {"files": [vfield], "vfield": vres, "maps": per_res}
