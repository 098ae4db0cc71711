#!/usr/bin/env python3
"""Copy the part of casadata the pipeline uses into DEST (about 10 MB instead of 844 MB).

strace over simulation, staging, imaging and post-processing showed that only
geodetic/{IERSeop2000,IERSeop97,IERSpredict,Observatories,TAI_UTC} and alma/simmos are
opened; the other top-level directories must exist (possibly empty) so that CASA accepts the
tree as casarundata.  Images made with the trimmed tree are bit-identical (CASA_NOTES §3).
Usage: trim_casadata.py DEST   (then point CASA_MEASURESPATH at DEST)
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

KEEP = ["geodetic/IERSeop2000", "geodetic/IERSeop97", "geodetic/IERSpredict",
        "geodetic/Observatories", "geodetic/TAI_UTC", "alma/simmos"]
TOP = ["alma", "catalogs", "demo", "ephemerides", "geodetic", "gui", "nrao"]


def main(dest: str) -> int:
    spec = importlib.util.find_spec("casadata")
    if spec is None or spec.origin is None:
        print("casadata is not installed", file=sys.stderr)
        return 1
    src = Path(spec.origin).parent / "__data__"
    out = Path(dest)
    for top in TOP:
        (out / top).mkdir(parents=True, exist_ok=True)
    for rel in KEEP:
        s, d = src / rel, out / rel
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.exists():
            shutil.copy2(s, d)
        else:
            print(f"missing in casadata: {rel}", file=sys.stderr)
            return 1
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"trimmed casadata in {out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "casadata-min"))
