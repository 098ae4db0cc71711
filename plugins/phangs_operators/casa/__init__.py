"""The CASA environment of phangs-airflow.

Every CASA call of the project goes through this module so that it runs

* offline, configured by the shipped ``casasiteconfig.py`` (selected through
  ``CASASITECONFIG`` before the first ``import casatools``);
* single-threaded (``OMP_NUM_THREADS=1``: libgomp deadlocks after fork and two threads
  are 4-7x slower on a busy two-core worker);
* in its own scratch working directory (tclean, feather and imregrid write
  ``TempLattice*`` into the cwd) with its own log file (``casalog.setlogfile``);
* without writing anything into ``$HOME`` or the repository (matplotlib, which casatasks
  imports, is pointed at a scratch ``MPLCONFIGDIR``).

casatools is imported lazily, inside :func:`casatools` / :func:`casatasks`, never at module
import time, so DAG files that import operators stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SITECONFIG = Path(__file__).resolve().with_name("casasiteconfig.py")


def configure_environment() -> None:
    """Set the process environment CASA needs; idempotent, no import of casatools.

    Existing values set by the operator (Dockerfile, worker environment) win.
    """
    os.environ.setdefault("CASASITECONFIG", str(SITECONFIG))
    os.environ["OMP_NUM_THREADS"] = "1"
    scratch = Path(tempfile.gettempdir())
    os.environ.setdefault("MPLCONFIGDIR", str(scratch / "phangs-mplconfig"))
    os.environ.setdefault("CASA_LOG_DIR", str(scratch / "phangs-casa-logs"))
    Path(os.environ["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)
    Path(os.environ["CASA_LOG_DIR"]).mkdir(parents=True, exist_ok=True)


def casatools() -> ModuleType:
    """Import and return :mod:`casatools` with the project's configuration."""
    configure_environment()
    import casatools as _ct  # noqa: PLC0415 - lazy on purpose

    return _ct


def casatasks() -> ModuleType:
    """Import and return :mod:`casatasks` with the project's configuration."""
    casatools()
    import casatasks as _cta  # noqa: PLC0415 - lazy on purpose

    global _LOG_CONFIGURED
    if not _LOG_CONFIGURED:
        _cta.casalog.ompSetNumThreads(1)
        _cta.casalog.showconsole(False)
        _LOG_CONFIGURED = True
    return _cta


_LOG_CONFIGURED = False


@contextlib.contextmanager
def casa_session(workdir: str | os.PathLike[str], logfile: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Run the body inside ``workdir`` (created) with the CASA log redirected to ``logfile``.

    The previous working directory and log file are restored afterwards, also on error.
    Yields the absolute working directory.
    """
    casalog = casatasks().casalog
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_path = Path(logfile).resolve() if logfile else work / "casa.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    previous_log = casalog.logfile()
    previous_cwd = os.getcwd()
    casalog.setlogfile(str(log_path))
    os.chdir(work)
    log.debug("CASA session in %s, log %s", work, log_path)
    try:
        yield work
    finally:
        os.chdir(previous_cwd)
        if previous_log:
            casalog.setlogfile(previous_log)
