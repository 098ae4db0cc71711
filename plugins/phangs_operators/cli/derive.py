"""``phangs derive``: the derived-products stage (noise, masks, moments) for one cube."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phangs_operators.errors import CubeError


def _json_dict(option: str, text: str | None) -> dict:
    if not text:
        return {}
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CubeError(f"{option}: not valid JSON ({exc.msg} at column {exc.colno}): "
                        f"{text!r}") from exc
    if not isinstance(val, dict):
        raise CubeError(f"{option}: expected a JSON object, got {type(val).__name__}")
    return val


def register(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(
        name, help=help_text,
        description=(
            "Derived products of a science-ready cube with the PHANGS-ALMA numerics: noise "
            "cube, strict and broad masks, moment maps with error maps; optionally convolved "
            "cubes (with coverage) and their products at extra resolutions. Files are named "
            "<stem>_noise.fits, <stem>_strictmask.fits, <stem>_broadmask.fits, "
            "<stem>{ext}.fits / <stem>{ext_error}.fits (e.g. <stem>_strict_mom0.fits) and "
            "<stem>_<res>... for each resolution. All files appear together at the end; on "
            "error nothing is written."),
    )
    p.add_argument("cube", type=Path, help="input cube (FITS, K, velocity axis, beam)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--noise-kw", help="JSON dict, e.g. '{\"spec_box\": 5, \"iterations\": 3}'")
    p.add_argument("--strictmask-kw", help="JSON dict, e.g. '{\"hi_thresh\": 4.0}'")
    p.add_argument("--broadmask-kw", help="JSON dict, e.g. '{\"grow_xy\": 1}'")
    p.add_argument("--convolve-kw", help="JSON dict, e.g. '{\"tol\": 0.1}'")
    p.add_argument("--resolutions", help="comma list, e.g. 4arcsec,150pc (pc needs "
                   "--distance-mpc)")
    p.add_argument("--distance-mpc", type=float, help="target distance [Mpc]")
    p.add_argument("--moments", type=Path, metavar="KEYFILE",
                   help="moment key (default: the PHANGS moment key)")
    p.add_argument("--linked-mask", action="append", type=Path, default=[],
                   help="strict mask of a linked config to add to the broad mask (repeatable)")
    p.add_argument("--vfield-prior", type=Path, help="prior velocity field for mom1wprior")
    p.add_argument("--vfield", type=Path, help="velocity field for flat masks / flat moments")
    p.add_argument("--root", help="file-name root (default: cube stem without "
                   "_pbcorr_trimmed_k)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phangs_operators.routines.cubes.moments import PHANGS_MOMENTS, read_moment_key
    from phangs_operators.routines.cubes.stage import parse_resolutions, run_derived_stage

    noise_kw = _json_dict("--noise-kw", args.noise_kw)
    strict_kw = _json_dict("--strictmask-kw", args.strictmask_kw)
    broad_kw = _json_dict("--broadmask-kw", args.broadmask_kw)
    conv_kw = _json_dict("--convolve-kw", args.convolve_kw)
    resolutions = parse_resolutions(args.resolutions) if args.resolutions else []
    defs = (list(read_moment_key(args.moments).values()) if args.moments
            else list(PHANGS_MOMENTS.values()))
    res = run_derived_stage(
        args.cube, args.out, noise_kw=noise_kw, strictmask_kw=strict_kw,
        broadmask_kw=broad_kw, convolve_kw=conv_kw, resolutions=resolutions,
        distance_mpc=args.distance_mpc, moment_defs=defs, linked_mask_fits=args.linked_mask,
        vfield_prior_fits=args.vfield_prior, vfield_fits=args.vfield, root=args.root)
    print(f"wrote {len(res.files)} files to {res.out_dir}")
    for tag, why in res.skipped.items():
        print(f"skipped {tag}: {why}")
    for text in res.warnings:
        if "is smaller than the native beam" not in text:  # already listed as skipped
            print(f"warning: {text}")
    native = res.resolutions.get("native", {}).get("moments", {})
    for name, prod in native.items():
        if prod.get("total_flux_jy_kms") is not None:
            print(f"{name}: total flux {prod['total_flux_jy_kms']:.4g} Jy km/s")
    return 0
