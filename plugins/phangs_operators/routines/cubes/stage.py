"""The whole derived-products stage for one cube (what ``phangs derive`` runs).

native cube -> noise -> strict mask; for each resolution: convolve (+ coverage) -> noise ->
strict mask (coverage prior); broad mask (all strict masks + linked masks); round-1 moments at
every resolution; optional round 2 (``mom1wprior`` with a prior) and round 3 (flat masks and
flat moments from a velocity field). All files are staged and published together at the end:
an error leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from phangs_operators.errors import CubeError
from phangs_operators.routines.cubes.convolution import (
    CONVOLVE_KW,
    convolve_cube,
    physical_to_angular_arcsec,
)
from phangs_operators.routines.cubes.io import (
    OutputTransaction,
    ResultBase,
    output_transaction,
    read_cube,
    read_map,
    read_mask_cube,
)
from phangs_operators.routines.cubes.masks import (
    BROAD_KW,
    STRICT_KW,
    flat_mask_array,
    make_broad_mask,
    mask_header,
    parse_window_kms,
    reproject_map,
    strict_mask_array,
    velocity_map_kms,
    write_mask,
)
from phangs_operators.routines.cubes.moments import (
    PHANGS_MOMENTS,
    MomentDef,
    make_mom1wprior,
    make_moments,
)
from phangs_operators.routines.cubes.noise import NOISE_KW, noise_model, write_noise

logger = logging.getLogger(__name__)

__all__ = ["DerivedStageResult", "Resolution", "derived_name", "parse_resolutions",
           "run_derived_stage"]


@dataclass
class Resolution:
    """A resolution tag of the derived key: angular [arcsec] or physical [pc]."""

    tag: str
    value: float
    kind: str  # 'ang' | 'phys'


def _tag_number(x: float) -> str:
    s = f"{x:g}"
    return s.replace(".", "p")


def parse_resolutions(spec: str | list[str]) -> list[Resolution]:
    """Parse ``'4arcsec,150pc,7.5as,1kpc'`` into PHANGS tags (``4as``, ``150pc``, ``7p5as``,
    ``1kpc``)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for raw in items:
        s = raw.strip().lower()
        if not s:
            continue
        m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*(arcsec|as|\"|pc|kpc)", s)
        if not m:
            raise CubeError(f"resolution {raw!r}: expected e.g. 4arcsec, 7.5as, 150pc or 1kpc")
        val, unit = float(m.group(1)), m.group(2)
        if val <= 0:
            raise CubeError(f"resolution {raw!r} must be positive")
        if unit in ("arcsec", "as", '"'):
            out.append(Resolution(f"{_tag_number(val)}as", val, "ang"))
        elif unit == "kpc":
            out.append(Resolution(f"{_tag_number(val)}kpc", val * 1000.0, "phys"))
        else:
            out.append(Resolution(f"{_tag_number(val)}pc", val, "phys"))
    return out


def derived_name(root: str, product: str, res: str = "") -> str:
    """PHANGS stage-4 file name ``{root}[_{res}]{product}.fits``; ``product`` is an ext such
    as ``_noise`` or ``_strict_mom0`` ('' for the cube itself)."""
    name = root + (f"_{res}" if res else "") + product + ".fits"
    return name.replace("__", "_").replace("__", "_").replace("_.", ".")


@dataclass
class DerivedStageResult(ResultBase):
    """Everything the stage wrote, per resolution, and what it skipped."""

    root: str
    out_dir: str
    files: list[str] = field(default_factory=list)
    resolutions: dict = field(default_factory=dict)
    broad_mask: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _default_root(cube_fits: Path) -> str:
    stem = cube_fits.name[:-5] if cube_fits.name.lower().endswith(".fits") else cube_fits.stem
    for suffix in ("_pbcorr_trimmed_k", "_pbcorr_round_k", "_pbcorr_trimmed"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _one_resolution(tx: OutputTransaction, cube_path: Path, out_dir: Path, root: str, res: str,
                    noise_kw: dict, strictmask_kw: dict, coverage_path: Path | None,
                    result: DerivedStageResult) -> dict:
    cube = read_cube(cube_path)
    noise, params = noise_model(cube, **noise_kw)
    noise_path = out_dir / derived_name(root, "_noise", res)
    med, mean = write_noise(noise, cube, noise_path, tx=tx)
    coverage = None
    if coverage_path is not None:
        coverage = read_cube(coverage_path, require_beam=False, require_finite=False).data
    strict = strict_mask_array(cube, noise, coverage=coverage, **strictmask_kw)
    strict_path = out_dir / derived_name(root, "_strictmask", res)
    write_mask(strict, mask_header(cube), strict_path, tx=tx)
    result.files += [str(noise_path), str(strict_path)]
    return {"cube": cube, "noise": noise, "strict": strict, "strict_path": strict_path,
            "summary": {"noise_fits": str(noise_path), "median_noise": med, "mean_noise": mean,
                        "noise_params": vars(params), "strictmask_fits": str(strict_path),
                        "strict_voxels": int(strict.sum())}}


def run_derived_stage(cube_fits: str | Path, out_dir: str | Path, *,
                      noise_kw: dict | None = None, strictmask_kw: dict | None = None,
                      broadmask_kw: dict | None = None, convolve_kw: dict | None = None,
                      resolutions: list[Resolution] | str | None = None,
                      distance_mpc: float | None = None,
                      moment_defs: list[MomentDef] | None = None,
                      linked_mask_fits: list[str | Path] | None = None,
                      vfield_prior_fits: str | Path | None = None,
                      vfield_fits: str | Path | None = None,
                      flatstrictmask_kw: dict | None = None,
                      flatbroadmask_kw: dict | None = None,
                      root: str | None = None) -> DerivedStageResult:
    """Run the derived stage for one cube and publish all files at the end.

    Parameters
    ----------
    cube_fits : str or Path
        Science-ready cube (K, velocity axis, round beam).
    out_dir : str or Path
        Output directory (created).
    noise_kw, strictmask_kw, broadmask_kw, convolve_kw : dict, optional
        Derived-key keyword dictionaries (PHANGS defaults when empty).
    resolutions : list of Resolution or str, optional
        Extra resolutions (``'4arcsec,150pc'``); physical ones need ``distance_mpc``.
    distance_mpc : float, optional
        Target distance [Mpc].
    moment_defs : list of MomentDef, optional
        Default: the PHANGS moment key.
    linked_mask_fits : list, optional
        Strict masks of linked configs (``mask_configs``) to add to the broad mask.
    vfield_prior_fits : str or Path, optional
        Prior velocity field for ``mom1wprior``; default: the moment key's
        ``other_exts['vfield_prior']`` file ``{target}{ext}`` in ``out_dir`` if it exists
        (PHANGS: ``{target}_7m+tp_co21_15as_strict_mom1.fits``), else mom1wprior is skipped.
    vfield_fits : str or Path, optional
        Velocity field for the flat masks and round-3 moments (skipped when absent).
    flatstrictmask_kw, flatbroadmask_kw : dict, optional
        ``{'window': '50km/s'}`` (default 50 km/s).
    root : str, optional
        File-name root; default the cube stem without ``_pbcorr_trimmed_k``.
    """
    cube_fits = Path(cube_fits)
    out_dir = Path(out_dir)
    noise_kw = dict(noise_kw or {})
    strictmask_kw = dict(strictmask_kw or {})
    broadmask_kw = dict(broadmask_kw or {})
    convolve_kw = dict(convolve_kw or {})
    for label, kw, known in (("broadmask_kw", broadmask_kw, BROAD_KW),
                             ("convolve_kw", convolve_kw, CONVOLVE_KW),
                             ("noise_kw", noise_kw, NOISE_KW),
                             ("strictmask_kw", strictmask_kw, STRICT_KW)):
        unknown = set(kw) - known
        if unknown:
            raise CubeError(f"{label}: unknown keyword(s) {sorted(unknown)}; known: "
                            f"{sorted(known)}")
    if isinstance(resolutions, str):
        resolutions = parse_resolutions(resolutions)
    resolutions = list(resolutions or [])
    if any(r.kind == "phys" for r in resolutions) and not distance_mpc:
        raise CubeError(f"{cube_fits}: physical resolutions need a distance (--distance-mpc)")
    moment_defs = list(moment_defs if moment_defs is not None else PHANGS_MOMENTS.values())
    root = root or _default_root(cube_fits)
    read_cube(cube_fits)  # validate before creating anything
    out_dir.mkdir(parents=True, exist_ok=True)
    result = DerivedStageResult(root=root, out_dir=str(out_dir))
    with output_transaction() as tx:
        levels: dict[str, dict] = {}
        levels[""] = _one_resolution(tx, cube_fits, out_dir, root, "", noise_kw, strictmask_kw,
                                     None, result)
        for r in resolutions:
            beam = r.value if r.kind == "ang" else physical_to_angular_arcsec(r.value,
                                                                               distance_mpc)
            out_cube = out_dir / derived_name(root, "", r.tag)
            cres = convolve_cube(cube_fits, out_cube, target_beam_arcsec=beam,
                                 dist_mpc=distance_mpc if r.kind == "phys" else None,
                                 coverage_fits=out_dir / derived_name(root, "_coverage", r.tag),
                                 coverage2d_fits=out_dir / derived_name(root, "_coverage2d",
                                                                        r.tag),
                                 tx=tx, **convolve_kw)
            if cres.status == "skipped":
                result.skipped[r.tag] = cres.warnings[0]
                result.warnings += cres.warnings
                continue
            result.files += [cres.out_fits, cres.coverage_fits, cres.coverage2d_fits]
            lvl = _one_resolution(tx, tx.pending(out_cube), out_dir, root, r.tag, noise_kw,
                                  strictmask_kw, tx.pending(Path(cres.coverage_fits)), result)
            lvl["summary"]["convolve"] = cres.to_dict()
            levels[r.tag] = lvl
        # broad mask: native template + every resolution + linked configs
        broad_path = out_dir / derived_name(root, "_broadmask")
        strict_paths = [lvl["strict_path"] for lvl in levels.values()]
        bres = make_broad_mask(tx.pending(strict_paths[0]),
                               [tx.pending(p) for p in strict_paths]
                               + [Path(p) for p in (linked_mask_fits or [])],
                               broad_path, tx=tx, **broadmask_kw)
        result.broad_mask = bres.to_dict()
        result.warnings += bres.warnings
        result.files.append(str(broad_path))
        broad = read_mask_cube(tx.pending(broad_path), levels[""]["cube"])
        # optional flat masks (velocity field)
        vfield = None
        if vfield_fits is not None:
            vdata, vhdr = read_map(vfield_fits)
            vfield = (velocity_map_kms(vdata, vhdr, vfield_fits), vhdr)
        for tag, lvl in levels.items():
            cube = lvl["cube"]
            masks = {"strictmask": lvl["strict"], "broadmask": broad}
            if vfield is not None:
                vf = reproject_map(vfield[0], vfield[1], cube.header, cube.shape[1:])
                for kind, sig, kw in (("flatstrictmask", lvl["strict"], flatstrictmask_kw),
                                      ("flatbroadmask", broad, flatbroadmask_kw)):
                    kw = dict(kw or {})
                    win = parse_window_kms(kw.get("window", kw.get("v_window", "50km/s")))
                    fm = flat_mask_array(cube, vf, win, sig)
                    fpath = out_dir / derived_name(root, "_" + kind, tag)
                    write_mask(fm, mask_header(cube), fpath, tx=tx)
                    result.files.append(str(fpath))
                    masks[kind] = fm
            mres = make_moments(cube.path, None, {}, out_dir,
                                [d for d in moment_defs if d.round in (1, 3)],
                                root=root + (f"_{tag}" if tag else ""), cube=cube,
                                noise=lvl["noise"], masks=masks, tx=tx)
            for prod in mres.products.values():
                result.files += [prod["map"], prod["error"]]
            for name, why in mres.skipped.items():
                if not why.startswith("round 2"):
                    result.skipped[f"{name}{'@' + tag if tag else ''}"] = why
            result.warnings += mres.warnings
            lvl["summary"]["moments"] = mres.products
            # round 2: mom1wprior
            for d in moment_defs:
                if d.algorithm != "mom1wprior":
                    continue
                key = f"{d.name}{'@' + tag if tag else ''}"
                prior = vfield_prior_fits
                if prior is None and d.other_exts.get("vfield_prior"):
                    # PHANGS: {target}{other_ext} in the same directory, e.g.
                    # ngc0628_7m+tp_co21_15as_strict_mom1.fits
                    guess = out_dir / f"{root.split('_')[0]}{d.other_exts['vfield_prior']}"
                    staged_guess = tx.pending(guess)
                    if staged_guess is not None:
                        prior = staged_guess
                    elif guess.exists():
                        prior = guess
                if prior is None:
                    result.skipped[key] = "no velocity-field prior given or found"
                    continue
                pre = root + (f"_{tag}" if tag else "")

                def staged(ext: str, pre: str = pre) -> Path | None:
                    p = out_dir / f"{pre}_{ext}.fits"
                    q = tx.pending(p)
                    return q if q is not None else (p if p.exists() else None)

                passed = {name: staged(name) for name in (d.maps_to_pass or [
                    "strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1", "broad_mom0",
                    "broad_emom0"])}
                need = ["strict_mom1", "strict_emom1", "broad_mom1", "broad_emom1"]
                if any(passed.get(e) is None for e in need):
                    result.skipped[key] = "strict/broad mom1 maps not produced"
                    continue
                kw = dict(d.kwargs)
                out_map = out_dir / f"{pre}{d.ext}.fits"
                out_err = out_dir / f"{pre}{d.ext_error}.fits"
                make_mom1wprior(passed["strict_mom1"], passed["strict_emom1"],
                                passed["broad_mom1"], passed["broad_emom1"], out_map, out_err,
                                broad_mom0=passed.get("broad_mom0"),
                                broad_emom0=passed.get("broad_emom0"),
                                vfield_prior=prior,
                                vfield_reject_thresh=kw.get("vfield_reject_thresh", "30km/s"),
                                mom0_thresh=kw.get("mom0_thresh", 2.0), tx=tx)
                result.files += [str(out_map), str(out_err)]
            result.resolutions[tag or "native"] = lvl["summary"]
    logger.info("derived stage for %s: %s files in %s", cube_fits, len(result.files), out_dir)
    return result
