"""Build one Airflow DAG per whole target from a PHANGS key set.

The key directory is ``$PHANGS_KEY_DIR``, else the Airflow Variable ``phangs_key_dir``, else
``<repo>/include/keys``.  Everything known from the key files (targets, configs, products,
measurement sets, recipes, resolutions, moments) is resolved at parse time, which is cheap
(no CASA, no I/O beyond reading the key files once); what depends on the data (channel
count -> chunks, noise -> threshold) flows through XCom at run time.

Shape of a target DAG (PHANGS dependencies, reference §10)::

    [part]                                      one task group per mosaic part (or the target)
      [config_product]                          per interferometric (config, line product)
        stage_visibilities ─► plan_chunks ─► dirty_chunk[i] ─► chunk_threshold
            ─► clean_chunk[i] ─► gather_cube ─► pbcor_round ─► export_cube
      [config_cont]                              per (config, continuum product)
        stage_visibilities ─► clean_cube ─► pbcor_round ─► export_cube
    [linmos_config_product]                     a mosaic: waits on every part
    [feather_config_product]                    12m+7m+tp: interferometric cube + TP cube
    [derived_config_product]                    convolve[res] ─► noise[res] ─► strict_mask[res]
                                                ─► broad_mask (+ linked configs) ─► moments[res]
                                                ─► moments_round2[res] (mom1wprior; + the prior's
                                                   config, e.g. 7m+tp 15as round-1 moments)
                                                ─► flat_products (velocity field from this and the
                                                   linked configs' mom1wprior, flat masks, flat moments)
    publish_config_product                      product store + catalog, atomically

Rounds 2 and 3 exist only for the (config, product) pairs whose derived-key moment list asks
for such moments. Parse time matters (90 DAGs, ~18 000 tasks for PHANGS-ALMA, issue 8): task
groups are passed explicitly (not entered as contexts), file-system lookups are cached per
DAG, the DAG class hashes its id only, and the garbage collector is paused during the build.
"""

from __future__ import annotations

import gc
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pendulum

from phangs_operators import filenames as fn
from phangs_operators.keys import load_project
from phangs_operators.keys.model import Project
from phangs_operators.operators.base import STAGES

log = logging.getLogger(__name__)
_join = os.path.join

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KEY_DIR = REPO_ROOT / "include" / "keys"
DEFAULT_CHUNK_SIZE = 10
DAG_ID_PREFIX = "phangs_"
#: array tag of ALMA total-power measurement sets in ms_file_key (and the singledish_config name)
SINGLEDISH_ARRAY_TAG = "tp"


def key_dir_from_environment() -> Path:
    """``$PHANGS_KEY_DIR`` > Airflow Variable ``phangs_key_dir`` > ``<repo>/include/keys``."""
    env = os.environ.get("PHANGS_KEY_DIR")
    if env:
        return Path(env)
    try:  # pragma: no cover - needs a running Airflow
        from airflow.sdk import Variable

        value = Variable.get("phangs_key_dir", default=None)
        if value:
            return Path(value)
    except Exception:  # noqa: BLE001 - no DB/API at parse time is fine
        pass
    return DEFAULT_KEY_DIR


def task_id_for(name: str) -> str:
    """A task/group id from a PHANGS name: ``12m+7m+tp`` -> ``12m_7m_tp``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.replace("+", "_"))


def dag_id_for(target: str) -> str:
    return DAG_ID_PREFIX + task_id_for(target)


# ---------------------------------------------------------------------------------------------
# parse-time plan (pure; also used by `phangs run --dry-run` and the graph tests)
# ---------------------------------------------------------------------------------------------

def target_plan(project: Project, target: str) -> dict[str, Any]:
    """What the DAG of a whole target runs: parts, interf/feather combinations, mosaics.

    Returns ``{"parts": [...], "interf": [(part, config, product)], "feather": [...],
    "linmos": [(target, config, product)], "final": [(target, config, product)]}``; ``final``
    are the cubes that get derived products and are published.
    """
    parts = project.mosaic_parts(target) if project.is_mosaic(target) else [target]
    # a mosaic may also have measurement sets of its own (imaged like any target)
    units = parts + [target] if project.is_mosaic(target) and project.ms_entries(target) else parts
    interf = [c.as_tuple() for c in project.imaging_combinations(units)]
    feather = [c.as_tuple() for c in project.feather_combinations(units)]
    linmos: list[tuple[str, str, str]] = []
    if project.is_mosaic(target):
        per_part: dict[tuple[str, str], set[str]] = {}
        for part, config, product in interf + feather:
            per_part.setdefault((config, product), set()).add(part)
        for (config, product), have in sorted(per_part.items()):
            if set(parts) <= have:
                linmos.append((target, config, product))
        done = {(c, p) for _, c, p in linmos}
        final = linmos + [(t, c, p) for t, c, p in interf + feather if t == target and (c, p) not in done]
    else:
        final = interf + feather
    return {"parts": parts, "units": units, "interf": interf, "feather": feather, "linmos": linmos,
            "final": final}


def configs_served(project: Project, config: str) -> list[str]:
    """The config itself and every config built on it (its feather config)."""
    out = [config]
    if config in project.interf_configs_by_name:
        fc = project.feather_config_for(config)
        if fc:
            out.append(fc)
    return out


def _resolutions(project: Project, target: str, config: str, product: str) -> list[dict[str, Any]]:
    """Derived resolutions: native first, then angular (arcsec), then physical (pc -> arcsec)."""
    out: list[dict[str, Any]] = [{"res_tag": "", "arcsec": None, "pc": None}]
    if not project.is_line_product(product):
        return []
    try:
        settings = project.derived(config, product)
    except Exception:  # noqa: BLE001 - no derived settings for this pair
        return out
    for tag, arcsec in sorted(settings.ang_res.items(), key=lambda kv: kv[1]):
        out.append({"res_tag": tag, "arcsec": float(arcsec), "pc": None})
    dist = project.distance_mpc(target)
    for tag, pc in sorted(settings.phys_res.items(), key=lambda kv: kv[1]):
        if dist is None:
            log.warning("no distance for %s: skipping physical resolution %s", target, tag)
            continue
        out.append({"res_tag": tag, "arcsec": None, "pc": float(pc), "distance_mpc": float(dist)})
    return out


def _dirs(project: Project, target: str) -> dict[str, Path]:
    return {name: project.target_dir(f"{name}_root", target)
            for name in ("imaging", "postprocess", "derived")}


def _ms_paths(project: Project, target: str, tag: str,
              cache: dict[tuple[str, str], list[str]] | None = None) -> list[str]:
    """Measurement sets of (target, array tag): the existing file, else the first candidate
    path. ``cache`` keeps them for the other products and configs of the DAG (each lookup
    stats the file under every ``ms_root``)."""
    key = (target, tag)
    paths = cache.get(key) if cache is not None else None
    if paths is None:
        paths = [str(path or (project.ms_candidates(entry) or [Path(entry.filename)])[0])
                 for entry, path in project.ms_for(target, tag)]
        if cache is not None:
            cache[key] = paths
    return list(paths)


def _ms_by_array(project: Project, target: str, config: str,
                 cache: dict[tuple[str, str], list[str]] | None = None) -> dict[str, list[str]]:
    """Measurement sets of (target, config) by array tag (see :func:`_ms_paths`)."""
    out: dict[str, list[str]] = {}
    for tag in project.array_tags(config):
        paths = _ms_paths(project, target, tag, cache)
        if paths:
            out[tag] = paths
    return out


def _singledish_path(project: Project, target: str, product: str) -> Path | None:
    """The single-dish cube of the key: the existing file, else where it is expected."""
    name = project.singledish_file(target, product)
    if name is None:
        return None
    found = project.singledish_path(target, product)
    if found is not None:
        return found
    roots = project.roots.get("singledish_root") or []
    return Path(name) if Path(name).is_absolute() or not roots else roots[0] / name


def _tclean_kw(project: Project, target: str, config: str, product: str) -> dict[str, Any]:
    kw = project.clean_parameters(config, product)
    kw.pop("chanchunks", None)  # obsolete in CASA 6
    kw["phasecenter"] = project.phasecenter(target)
    scales = project.clean_scales_arcsec(config)
    if scales:
        kw["scales_arcsec"] = list(scales)
    for key, value in project.overrides(target, config, product).items():
        kw[key] = value
    return kw


def _doc_md(project: Project, target: str, plan: dict[str, Any]) -> str:
    vsys, vwidth = project.vsys_vwidth(target, check_parent=True)
    lines = [f"# PHANGS-ALMA pipeline: `{target}`", "",
             f"Phase centre `{project.phasecenter(target)}`, vsys {vsys} km/s, window {vwidth} km/s,",
             f"distance {project.distance_mpc(target)} Mpc. Key set `{project.master_key}` "
             f"(sha256 `{project.keyset_hash()[:12]}`).", ""]
    if len(plan["parts"]) > 1:
        lines += [f"Linear mosaic of parts: {', '.join(plan['parts'])}.", ""]
    lines += ["| part | array | measurement sets |", "|---|---|---|"]
    for part in plan["units"]:
        for tag in project.array_tags_for_target(part):
            names = ", ".join(e.filename for e in project.ms_entries(part, tag))
            lines.append(f"| {part} | {tag} | {names} |")
    lines += ["", "Products (target, config, product): "
              + "; ".join(f"{c} {p}" for _, c, p in plan["final"]), "",
              "Params: `configs`, `products`, `stages` select what runs; `chunk_size` sets the channel "
              "chunking; `force` re-runs finished steps; `dry_run` only logs inputs and outputs."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# DAG construction
# ---------------------------------------------------------------------------------------------

_TARGET_DAG_CLASS: type | None = None


def _target_dag_class() -> type:
    """``airflow.sdk.DAG`` with an O(1) ``__hash__``.

    Airflow hashes the DAG of both ends of every dependency it sets (``_set_relatives``), and
    ``DAG.__hash__`` hashes, among other things, the tuple of all task ids: building a DAG of
    n tasks costs O(n²) in hashing (a tenth of the parse time of the 90 PHANGS targets). The
    dag_id identifies a DAG, and equal DAGs (``DAG.__eq__`` is unchanged but for the identity
    shortcut) have equal dag_ids, so hashing the id alone is consistent with equality.
    """
    global _TARGET_DAG_CLASS
    if _TARGET_DAG_CLASS is None:
        from airflow.sdk import DAG

        class PhangsTargetDAG(DAG):
            __doc__ = DAG.__doc__

            def __hash__(self) -> int:
                return hash((type(self), self.dag_id))

            def __eq__(self, other: object) -> bool:
                # attrs compares the ``dag`` field of task groups with ==, and DAG.__eq__
                # compares all task ids: a DAG is equal to itself without that
                return self is other or DAG.__eq__(self, other)

        _TARGET_DAG_CLASS = PhangsTargetDAG
    return _TARGET_DAG_CLASS

def build_target_dag(project: Project, target: str, *, schedule: Any = None,
                     chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Build the DAG of one whole target (a mosaic includes its parts)."""
    from airflow.sdk import Param, TaskGroup

    from phangs_operators.operators.base import RunStatusOperator
    from phangs_operators.operators.derived import (
        BroadMaskOperator,
        ConvolveCubeOperator,
        FlatProductsOperator,
        Mom1WithPriorOperator,
        MomentsOperator,
        NoiseCubeOperator,
        StrictMaskOperator,
    )
    from phangs_operators.operators.imaging import (
        ChunkThresholdOperator,
        CleanCubeOperator,
        GatherCubeOperator,
        ImageChunkOperator,
        ImageGeometryOperator,
        PlanChunksOperator,
    )
    from phangs_operators.operators.postprocess import (
        ExportCubeOperator,
        FeatherOperator,
        LinearMosaicOperator,
        PbcorRoundBeamOperator,
    )
    from phangs_operators.operators.publish import PublishProductsOperator
    from phangs_operators.operators.qa import QA_TASK_ID, QAReportOperator
    from phangs_operators.operators.singledish import SingleDishCubeOperator
    from phangs_operators.operators.staging import StageVisibilitiesOperator

    plan = target_plan(project, target)
    configs = sorted({c for _, c, _ in plan["interf"] + plan["feather"]})
    products = sorted({p for _, _, p in plan["interf"] + plan["feather"]})
    params = {
        "configs": Param(configs, type="array", items={"type": "string", "enum": configs or [""]},
                         title="Configurations", description="Array configurations to process.",
                         section="What to run"),
        "products": Param(products, type="array", items={"type": "string", "enum": products or [""]},
                          title="Products", description="Line and continuum products to process.",
                          section="What to run"),
        "stages": Param(list(STAGES), type="array", items={"type": "string", "enum": list(STAGES)},
                        title="Stages", description="Pipeline stages to run; a stage left out "
                        "reuses the outputs of an earlier run.", section="What to run"),
        "chunk_size": Param(chunk_size, type="integer", minimum=1, maximum=100000,
                            title="Channels per imaging chunk",
                            description="Cubes are imaged in chunks of this many channels, in "
                            "parallel (at most 200 chunks).", section="Imaging"),
        "force": Param(False, type="boolean", title="Force re-run",
                       description="Re-run steps whose outputs already exist.", section="Run control"),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log the files every task would read and write; run nothing.",
                         section="Run control"),
        "min_score": Param(0.33, type="number", minimum=0, maximum=1, title="Minimum QA score",
                           description="The QA report task fails (red in the UI) when the worst "
                           "score of the run is below this.", section="QA"),
    }
    tags = ["phangs", target, *configs]
    dag = _target_dag_class()(
        dag_id=dag_id_for(target),
        dag_display_name=f"PHANGS {target}",
        schedule=schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=tags,
        doc_md=_doc_md(project, target, plan),
        default_args={"owner": "phangs", "retries": 1},
    )
    force = "{{ params.force }}"
    final_cubes: dict[tuple[str, str], Any] = {}  # (config, product) -> export task (final target)
    final_images: dict[tuple[str, str], Any] = {}  # (config, product) -> task making the final image
    part_post: dict[tuple[str, str, str], Any] = {}  # (part, config, product) -> pbcor_round task

    ms_cache: dict[tuple[str, str], list[str]] = {}
    cleanmasks: dict[tuple[str, str], Path | None] = {}
    with dag:
        linmos_done = {(c, p) for _, c, p in plan["linmos"]}
        for part in plan["units"]:
            dirs = _dirs(project, part)
            part_combos = [c for c in plan["interf"] if c[0] == part]
            part_group = TaskGroup(task_id_for(part), tooltip=f"mosaic part {part}") \
                if len(plan["units"]) > 1 else None
            for _, config, product in part_combos:
                serves = configs_served(project, config)
                group = TaskGroup(task_id_for(f"{config}_{product}"), parent_group=part_group,
                                  tooltip=f"{part} {config} {product}: staging and imaging")
                common = {"force": force, "serves_configs": serves, "serves_product": product,
                          "task_group": group}
                name = f"{part}_{config}_{product}"
                imaging_dir = str(dirs["imaging"])
                vsys, vwidth = project.vsys_vwidth(part, check_parent=True)
                ms_in = _ms_by_array(project, part, config, ms_cache)
                out_ms = _join(imaging_dir, fn.vis_filename(part, config, product))
                if project.is_line_product(product):
                    lp = project.line_product(product)
                    line = {"line": lp.line_tag, "vsys_kms": vsys, "vwidth_kms": vwidth,
                            "channel_kms": lp.channel_kms, "statwt_edge_kms": lp.statwt_edge_kms,
                            "fitorder": lp.fitorder, "target_field": None,
                            "lines_to_exclude": list(lp.lines_to_flag) or None}
                    stage = StageVisibilitiesOperator(
                        task_id="stage_visibilities", ms_by_array=ms_in, out_ms=out_ms,
                        target=part, config=config, product=product, line=line,
                        workdir=imaging_dir, **common)
                else:
                    cp = project.cont_product(product)
                    cont = {"vsys_kms": vsys, "vwidth_kms": vwidth, "target_field": None,
                            "lines_to_flag": list(cp.lines_to_flag) or ["co"]}
                    stage = StageVisibilitiesOperator(
                        task_id="stage_visibilities", ms_by_array=ms_in, out_ms=out_ms,
                        target=part, config=config, product=product, continuum=cont,
                        workdir=imaging_dir, **common)
                tclean_kw = _tclean_kw(project, part, config, product)
                if (part, product) not in cleanmasks:
                    cleanmasks[(part, product)] = project.cleanmask_path(part, product)
                mask = cleanmasks[(part, product)]
                geometry = ImageGeometryOperator(
                    task_id="image_geometry", ms=stage.output, workdir=imaging_dir,
                    geometry_kw={"phasecenter": project.phasecenter(part)},
                    **common)
                cube_root = _join(imaging_dir, fn.cube_filename(part, config, product, casa=True, casaext=""))
                if project.is_line_product(product):
                    planned = PlanChunksOperator(task_id="plan_chunks", nchan=stage.output,
                                                 chunk_size="{{ params.chunk_size }}",
                                                 workdir=imaging_dir, **common)
                    chunk_dir = _join(imaging_dir, "chunks")
                    chunk_common = {"ms": stage.output, "chunk_dir": chunk_dir, "name": name,
                                    "geometry": geometry.output, "tclean_kw": tclean_kw,
                                    "clean_kw": {"restfreq_ghz": lp.rest_frequency_ghz},
                                    "workdir": imaging_dir, **common}
                    dirty = ImageChunkOperator.partial(
                        task_id="dirty_chunk", mode="dirty", **chunk_common,
                    ).expand_kwargs(planned.output)
                    threshold = ChunkThresholdOperator(
                        task_id="chunk_threshold", dirty_chunks=dirty.output,
                        workdir=imaging_dir, **common)
                    clean = ImageChunkOperator.partial(
                        task_id="clean_chunk", mode="clean", threshold_jy=threshold.output,
                        mask=str(mask) if mask else None, **chunk_common,
                    ).expand_kwargs(planned.output)
                    cube = GatherCubeOperator(task_id="gather_cube", chunks=clean.output,
                                              out_root=cube_root, workdir=imaging_dir, **common)
                else:
                    cube = CleanCubeOperator(task_id="clean_cube", ms=stage.output, out_root=cube_root,
                                             geometry=geometry.output, tclean_kw=tclean_kw,
                                             mask=str(mask) if mask else None,
                                             workdir=imaging_dir, **common)
                post_root = _join(dirs["postprocess"], f"{part}_{config}_{product}")
                post = PbcorRoundBeamOperator(task_id="pbcor_round", cube=cube.output,
                                              out_root=post_root, workdir=str(dirs["postprocess"]),
                                              **common)
                part_post[(part, config, product)] = post
                if part == target and (config, product) not in linmos_done:
                    export = ExportCubeOperator(
                        task_id="export_cube", image=post.output,
                        out_fits=_join(dirs["postprocess"], fn.cube_filename(
                            part, config, product, ext="pbcorr_trimmed_k")),
                        object_name=part.upper(), continuum=not project.is_line_product(product),
                        workdir=str(dirs["postprocess"]), serves_configs=[config],
                        serves_product=product, force=force, task_group=group)
                    final_cubes[(config, product)] = export
                    final_images[(config, product)] = post

        # linear mosaics of the interferometric configs
        tdirs = _dirs(project, target)
        for _, config, product in plan["linmos"]:
            if config not in project.interf_configs_by_name:
                continue
            group = TaskGroup(task_id_for(f"linmos_{config}_{product}"),
                              tooltip=f"linear mosaic {target} {config} {product}")
            common = {"force": force, "serves_configs": configs_served(project, config),
                      "serves_product": product, "task_group": group}
            pdir = str(tdirs["postprocess"])
            mos = LinearMosaicOperator(
                task_id="linear_mosaic",
                parts=[part_post[(p, config, product)].output for p in plan["parts"]],
                out_image=_join(pdir, fn.cube_filename(target, config, product, ext="linmos", casa=True)),
                workdir=pdir, **common)
            final_images[(config, product)] = mos
            final_cubes[(config, product)] = ExportCubeOperator(
                task_id="export_cube", image=mos.output,
                out_fits=_join(pdir, fn.cube_filename(target, config, product, ext="pbcorr_trimmed_k")),
                object_name=target.upper(), continuum=not project.is_line_product(product),
                workdir=pdir, force=force, serves_configs=[config], serves_product=product,
                task_group=group)

        # total power: ALMA TP measurement sets -> the single-dish cube feathering uses
        singledish_tasks: dict[tuple[str, str], Any] = {}
        for sd_target in dict.fromkeys([target, *plan["units"]]):
            tp_ms = _ms_paths(project, sd_target, SINGLEDISH_ARRAY_TAG, ms_cache)
            if not tp_ms:
                continue
            sd_conf = project.singledish_config(SINGLEDISH_ARRAY_TAG)
            for product in project.line_products():
                out_fits = _singledish_path(project, sd_target, product)
                if out_fits is None:
                    log.warning("%s has TP measurement sets but no singledish_key entry for %s",
                                sd_target, product)
                    continue
                lp = project.line_product(product)
                vsys, vwidth = project.vsys_vwidth(sd_target, check_parent=True)
                served = [c for c in project.feather_configs()]
                jyperk = [str(Path(p).parent / "jyperk.csv") for p in tp_ms
                          if (Path(p).parent / "jyperk.csv").is_file()] or None
                sd_dir = str(Path(out_fits).parent)
                group = TaskGroup(task_id_for(f"singledish_{sd_target}_{product}") if sd_target != target
                                  else task_id_for(f"singledish_{product}"),
                                  tooltip=f"total power cube of {sd_target} {product}")
                singledish_tasks[(sd_target, product)] = SingleDishCubeOperator(
                    task_id="singledish", tp_ms=tp_ms, out_fits=str(out_fits), target=sd_target,
                    product=product, restfreq_ghz=lp.rest_frequency_ghz, vsys_kms=vsys,
                    vwidth_kms=float(sd_conf.get("vwidth_kms", vwidth)),
                    chan_dv_kms=float(sd_conf.get("chan_dv_kms", lp.channel_kms)),
                    phasecenter=project.phasecenter(sd_target),
                    bl_order=int(sd_conf.get("bl_order", 1)),
                    line_wing_kms=float(sd_conf.get("line_wing_kms", 200.0)),
                    jyperk_csv=jyperk, workdir=str(Path(sd_dir) / sd_target), force=force,
                    serves_configs=served, serves_product=product, task_group=group)

        # feathering with total power
        feather_targets = [(t, c, p) for t, c, p in plan["final"] if c in project.feather_configs_by_name]
        for ftarget, fconfig, product in feather_targets:
            iconfig = project.interf_config_for(fconfig)
            sd = _singledish_path(project, ftarget, product) or _singledish_path(
                project, plan["parts"][0], product)
            if (iconfig, product) not in final_images or sd is None:
                log.warning("%s %s %s: no interferometric cube or single-dish cube; not feathering",
                            ftarget, fconfig, product)
                continue
            pdir = str(tdirs["postprocess"])
            group = TaskGroup(task_id_for(f"feather_{fconfig}_{product}"),
                              tooltip=f"feather {ftarget} {iconfig} {product} with total power")
            common = {"force": force, "serves_configs": [fconfig], "serves_product": product,
                      "task_group": group}
            feathered = FeatherOperator(
                task_id="feather", interf=final_images[(iconfig, product)].output, singledish_fits=str(sd),
                out_image=_join(pdir, fn.cube_filename(ftarget, fconfig, product, casa=True)),
                sdfactor=float(project.singledish_config().get("sdfactor", 1.0) or 1.0),
                workdir=pdir, **common)
            sd_task = singledish_tasks.get((ftarget, product))
            if sd_task is not None:
                sd_task >> feathered
            final_cubes[(fconfig, product)] = ExportCubeOperator(
                task_id="export_cube", image=feathered.output, object_name=ftarget.upper(),
                out_fits=_join(pdir, fn.cube_filename(ftarget, fconfig, product, ext="pbcorr_trimmed_k")),
                workdir=pdir, **common)

        # derived products and publication of every final cube
        strict_tasks: dict[str, Any] = {}
        broad_pending: list[tuple[Any, str, str]] = []
        moments_tasks: dict[tuple[str, str], Any] = {}
        round2_pending: list[tuple[Any, str, str, list[dict[str, Any]]]] = []
        round2_tasks: dict[tuple[str, str], Any] = {}
        round2_defs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        flat_pending: list[tuple[Any, str, str]] = []
        derived_res: dict[tuple[str, str], list[dict[str, Any]]] = {}
        ddir = str(tdirs["derived"])
        for (config, product), export in sorted(final_cubes.items()):
            common = {"force": force, "serves_configs": [config], "serves_product": product}
            resolutions = _resolutions(project, target, config, product)
            derived_outputs: list[Any] = []
            if resolutions:
                derived_res[(config, product)] = resolutions
                defs = [_moment_def(project, m) for m in project.moment_list(config, product)]
                group = TaskGroup(task_id_for(f"derived_{config}_{product}"),
                                  tooltip=f"derived products {target} {config} {product}")
                dcommon = {**common, "task_group": group}
                names = {"target": target, "config": config, "product": product}
                conv = ConvolveCubeOperator.partial(
                    task_id="convolve", cube=export.output, out_dir=ddir, names=names,
                    convolve_kw=project.derived_kwargs(config, product, "convolve_kw"),
                    workdir=ddir, **dcommon,
                ).expand_kwargs(resolutions)
                noise = NoiseCubeOperator.partial(
                    task_id="noise", noise_kw=project.derived_kwargs(config, product, "noise_kw"),
                    names=names, out_dir=ddir,
                    workdir=ddir, **dcommon,
                ).expand(cube=conv.output)
                strict = StrictMaskOperator.partial(
                    task_id="strict_mask", names=names, out_dir=ddir,
                    strictmask_kw=project.derived_kwargs(config, product, "strictmask_kw"),
                    workdir=ddir, **dcommon,
                ).expand(cube=noise.output)
                strict_tasks[config + "/" + product] = strict
                broad = BroadMaskOperator(
                    task_id="broad_mask", strict_masks=[strict.output], cubes=noise.output,
                    broadmask_kw=project.derived_kwargs(config, product, "broadmask_kw"),
                    out_dir=ddir, names=names, workdir=ddir, **dcommon)
                broad_pending.append((broad, config, product))
                derived_outputs = [noise.output, strict.output, broad.output]
                round1 = [d for d in defs if d["round"] == 1]
                # no moments task when the derived key asks for none (PHANGS: 13co21), as the
                # original's moment loop then makes nothing either
                moments = MomentsOperator.partial(
                    task_id="moments", broad_mask=broad.output, names=names, out_dir=ddir,
                    moments=round1, workdir=ddir, **dcommon,
                ).expand(cube=strict.output) if round1 else None
                if moments is not None:
                    moments_tasks[(config, product)] = moments
                    derived_outputs.append(moments.output)
                # round 2 (mom1wprior, per resolution) and round 3 (velocity field, flat masks,
                # flat moments), only when the derived key asks for such moments
                round2 = [d for d in defs if d["round"] == 2]
                if round2 and moments is None:
                    log.warning("%s %s %s: round-2 moments %s need round-1 moments; none requested",
                                target, config, product, [d["name"] for d in round2])
                elif round2:
                    prior = next((d["other_exts"].get("vfield_prior") for d in round2
                                  if d["other_exts"].get("vfield_prior")), None)
                    r2 = Mom1WithPriorOperator.partial(
                        task_id="moments_round2", names=names, out_dir=ddir, moments=round2,
                        vfield_prior=_join(ddir, f"{target}{prior}") if prior else None,
                        trigger_rule="none_failed", map_index_template="{{ res_label }}",
                        workdir=ddir, **dcommon,
                    ).expand(round1=moments.output)
                    round2_tasks[(config, product)] = r2
                    round2_defs[(config, product)] = round2
                    round2_pending.append((r2, config, product, round2))
                    derived_outputs.append(r2.output)
                round3 = [d for d in defs if d["round"] == 3]
                if round3:
                    window = project.velocity_window(target)
                    flat_kw = {}
                    for kind in ("flatstrictmask_kw", "flatbroadmask_kw"):
                        kw = project.derived_kwargs(config, product, kind)
                        # PHANGS: an empty flat*mask_kw takes the window of the window_key
                        flat_kw[kind] = kw or ({"window": window} if window else {})
                    flat = FlatProductsOperator(
                        task_id="flat_products", resolutions=strict.output, broad_mask=broad.output,
                        vfields=[], moments=round3, names=names, out_dir=ddir, workdir=ddir,
                        trigger_rule="none_failed", **flat_kw, **dcommon)
                    flat_pending.append((flat, config, product))
                    derived_outputs.append(flat.output)
            PublishProductsOperator(
                task_id=task_id_for(f"publish_{config}_{product}"),
                files=[export.output, *derived_outputs], target=target, config=config, product=product,
                keyset_hash=project.keyset_hash(), workdir=str(tdirs["derived"]), **common)

        # round 2 needs the prior map made by another config's round-1 moments
        # ({target}_7m+tp_co21_15as_strict_mom1.fits for PHANGS): make that dependency explicit
        for r2, config, product, round2 in round2_pending:
            for d in round2:
                prior = d["other_exts"].get("vfield_prior")
                producer = _producer_of(project, target, f"{target}{prior}", derived_res) if prior else None
                if producer is not None and producer != (config, product):
                    moments_tasks[producer] >> r2
        # round 3: the velocity field combines the mom1wprior maps of this config and its linked
        # configs (native first, then every resolution)
        for flat, config, product in flat_pending:
            vfields: list[str] = []
            for cfg in dict.fromkeys([config, *project.mask_configs(config, product)]):
                if (cfg, product) not in round2_tasks:
                    continue
                ext = next((d["ext"] for d in round2_defs[(cfg, product)] if d["algorithm"] == "mom1wprior"),
                           "_mom1wprior")
                for res in derived_res[(cfg, product)]:
                    vfields.append(_join(ddir, fn.derived_filename(target, cfg, product,
                                                                   res=res["res_tag"] or None, ext=ext)))
                round2_tasks[(cfg, product)] >> flat
            flat.vfields = vfields

        # one QA report per run, over the QA records of every step of the target and its parts
        qa_dirs = sorted({str(d) for unit in [*plan["units"], target] for d in _dirs(project, unit).values()})
        publishers = [t for t in dag.tasks if t.task_id.startswith("publish_")]
        qa = QAReportOperator(task_id=QA_TASK_ID, target=target, workdirs=qa_dirs,
                              workdir=str(tdirs["derived"]), min_score="{{ params.min_score }}",
                              keyset_hash=project.keyset_hash(), catalog=True, trigger_rule="all_done",
                              force=force)
        publishers >> qa
        # the QA report runs whatever happened upstream (all_done); this watcher makes the run
        # itself fail when any step failed, so a failed step is never hidden by a green report
        watcher = RunStatusOperator(task_id="run_status", trigger_rule="one_failed", owner="phangs",
                                    retries=0)
        # every chain ends in a publish task (all_success: a failure upstream makes it
        # upstream_failed, which one_failed counts), so watching those and the QA task suffices
        [*publishers, qa] >> watcher

        # broad masks also need the strict masks of the linked configs (PHANGS mask_configs)
        for broad, config, product in broad_pending:
            for linked in project.mask_configs(config, product):
                other = strict_tasks.get(linked + "/" + product)
                if other is not None and linked != config:
                    broad.strict_masks.append(other.output)
                    other >> broad
    _attach_params(dag, params)
    return dag


def _attach_params(dag, params: dict[str, Any]) -> None:
    """Give the DAG and all its tasks ONE shared params dict.

    Passing ``params=`` to the DAG constructor makes Airflow deep-copy the whole params
    schema into every operator, several times (one per ``__init__`` level): for the 90
    PHANGS-ALMA targets that was two thirds of the parse time. The tasks only read params,
    so sharing one validated :class:`ParamsDict` is equivalent.
    """
    from airflow.sdk.definitions.param import ParamsDict

    shared = ParamsDict(params)
    dag.params = shared
    for task in dag.tasks:
        task.params = shared


def _producer_of(project: Project, target: str, filename: str,
                 derived_res: dict[tuple[str, str], list[dict[str, Any]]]) -> tuple[str, str] | None:
    """The (config, product) whose round-1 moments write ``filename`` (e.g. the mom1wprior
    prior ``{target}_7m+tp_co21_15as_strict_mom1.fits``), or None when no planned one does."""
    for (config, product), resolutions in derived_res.items():
        stem = f"{target}_{config}_{product}"
        if not filename.startswith(stem):
            continue
        for name in project.moment_list(config, product):
            m = project.moment(name)
            if m.round != 1:
                continue
            for res in resolutions:
                if fn.derived_filename(target, config, product, res=res["res_tag"] or None,
                                       ext=m.ext) == filename:
                    return config, product
    return None


def _moment_def(project: Project, name: str) -> dict[str, Any]:
    m = project.moment(name)
    return {"name": m.name, "algorithm": m.algorithm, "mask": m.mask, "ext": m.ext,
            "ext_error": m.ext_error, "round": m.round, "kwargs": dict(m.kwargs),
            "maps_to_pass": list(m.maps_to_pass), "other_exts": dict(m.other_exts)}


def build_dags(key_dir: str | os.PathLike[str] | None = None, *,
               targets: Iterable[str] | None = None) -> dict[str, Any]:
    """All target DAGs of a key set, ``{dag_id: DAG}`` (the DAG files call this)."""
    # Building ~18 000 tasks allocates millions of long-lived objects and no garbage worth
    # collecting: with the cyclic GC on, its collections re-traverse the growing heap (about
    # 15 % of the parse time of the 90 PHANGS targets). It is paused during the build only.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        project = load_project(key_dir or key_dir_from_environment())
        wanted = list(targets) if targets is not None else project.whole_targets()
        out = {}
        for target in wanted:
            plan = target_plan(project, target)
            if not plan["interf"]:
                log.info("target %s has no measurement sets for any config: no DAG", target)
                continue
            dag = build_target_dag(project, target)
            out[dag.dag_id] = dag
    finally:
        if gc_was_enabled:
            gc.enable()
    return out
