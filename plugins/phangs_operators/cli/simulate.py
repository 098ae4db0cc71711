"""``phangs simulate``: deterministic simulated ALMA data for the demo project and tests."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DESCRIPTION = """\
Simulate the demo project's ALMA data with the casatools simulator: a rotating CO(2-1) disk
(ngc9999: 12m 19-pointing + 7m 7-pointing mosaics; ngc9997: one 12m pointing of the same sky)
and a second galaxy observed as two overlapping mosaic parts (ngc9998_1, ngc9998_2; 12m + 7m)
for linear mosaicking, with a 20 mJy continuum nucleus, thermal noise, TOPO spectral windows
and XX/YY correlations, plus 28.5" total-power cubes (3-D FITS, Jy/beam, 4" pixels).

Writes OUTDIR/ms/<project>/*.ms, OUTDIR/singledish/*.fits, OUTDIR/model/*.image and
OUTDIR/manifest.json (ground truth: files, antennas, fields, channels, model fluxes).
The same --seed gives identical data.  The demo key set (include/keys) finds the data through
${PHANGS_DEMO_ROOT}: simulate into $PHANGS_DEMO_ROOT/data.
"""


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        name,
        help=help_text,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "outdir",
        metavar="OUTDIR",
        type=Path,
        help="output directory (created; a previous simulation is replaced)",
    )
    p.add_argument(
        "--preset",
        choices=("tiny", "bench"),
        default="tiny",
        help="tiny: CI-sized, ~10 s, ~25 MB (default); bench: full arrays, 2.5 km/s channels, 3-5 min, ~2.2 GB",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed of all noise (default 42)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print a short summary (or the manifest with ``--json``)."""
    from phangs_operators.routines.simulate import simulate  # noqa: PLC0415 - imports CASA lazily

    # casatasks 6.7 modules compile with SyntaxWarnings ("is not" with a literal): not ours
    warnings.filterwarnings("ignore", category=SyntaxWarning)

    log.info("simulating preset %s (seed %d) into %s", args.preset, args.seed, args.outdir)
    manifest = simulate(args.outdir, preset=args.preset, seed=args.seed)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    out = Path(args.outdir).resolve()
    print(
        f"simulated preset {manifest['preset']} (seed {manifest['seed']}) in {manifest['timings_s']['total']:.1f} s"
    )
    for _, ms in sorted(manifest["measurement_sets"].items()):
        print(
            f"  {ms['path']}: {ms['array']} {ms['kind']}, {ms['n_antennas']} antennas, "
            f"{ms['n_fields']} field(s), {ms['n_channels']} ch x {ms['channel_width_hz'] / 1e6:.4f} MHz TOPO"
        )
    for _, sd in sorted(manifest["singledish"].items()):
        shape = "x".join(str(n) for n in sd["shape"][::-1])
        print(
            f'  {sd["path"]}: TP {shape}, beam {sd["beam_fwhm_arcsec"]}", {sd["line_flux_jykms"]:.1f} Jy km/s'
        )
    print(f"manifest: {out / 'manifest.json'}")
    return 0
