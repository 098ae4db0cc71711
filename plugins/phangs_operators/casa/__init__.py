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

Start-up cost (every Airflow task instance is a new process): the package ``casatasks`` imports
all of its ~125 tasks in its ``__init__`` (flagdata, partition, sdatmcor, ... pull in scipy
and matplotlib), 2.0-2.7 s per process on the 2-core worker, although a step uses one to three
tasks. :func:`casatasks` therefore registers the package *without* running that ``__init__``
(:func:`_casatasks_package`: the same ``casalog`` set-up, tasks imported on first attribute
access, ``casatasks.tclean`` alone: 0.03 s). Code that does ``from casatasks import X`` or
``import casatasks.private.simutil`` after it gets the same lazy package.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
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


def _casatasks_package() -> ModuleType:
    """``casatasks`` registered in ``sys.modules`` without executing its ``__init__``.

    The package object gets what that ``__init__`` defines and the tasks rely on: ``casalog``
    (a ``casatools.logsink`` on the configured log file, made the global sink), ``version()``
    and ``version_string()``; every other attribute (a task such as ``tclean``, or a
    sub-package) is imported on first access by the module ``__getattr__`` (PEP 562), and
    ``from casatasks import imregrid`` goes through the same hook. The MPI start-up of the
    real ``__init__`` is left out: ``casampi`` is not part of this deployment.

    If ``casatasks`` is already imported (someone ran ``import casatasks`` first) that
    module is returned unchanged; ``PHANGS_CASATASKS_EAGER=1`` imports the whole package
    instead (a fallback, and the baseline of ``benchmarks/bench_orchestration.py``).
    """
    existing = sys.modules.get("casatasks")
    if existing is not None:
        return existing
    if os.environ.get("PHANGS_CASATASKS_EAGER", "").lower() in ("1", "true", "yes"):
        import casatasks as _full  # noqa: PLC0415 - the whole package, as casatasks ships it

        return _full
    spec = importlib.util.find_spec("casatasks")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("casatasks is not installed in this interpreter "
                          f"({sys.executable}); install casatasks==6.7.0.31 (requirements.txt)")
    import casatools as _ct  # noqa: PLC0415 - lazy on purpose
    from casaconfig import config  # noqa: PLC0415 - configured by the casatools import

    pkg = ModuleType("casatasks", "CASA tasks, imported one by one on first use (phangs_operators.casa)")
    pkg.__spec__ = spec
    pkg.__loader__ = spec.loader
    pkg.__file__ = spec.origin
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__package__ = "casatasks"
    release = importlib.metadata.version("casatasks")
    pkg.version = lambda: [int(p) for p in release.split(".")[:4]]
    pkg.version_string = lambda: release
    pkg.casalog = _ct.logsink(config.logfile)
    pkg.casalog.setglobal(True)

    def __getattr__(name: str):  # noqa: N807 - PEP 562 module hook
        if name.startswith("__"):
            raise AttributeError(f"module 'casatasks' has no attribute {name!r}")
        try:
            module = importlib.import_module(f"casatasks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"casatasks.{name}":
                raise AttributeError(f"module 'casatasks' has no attribute {name!r} "
                                     f"(no module casatasks.{name} in {pkg.__path__[0]})") from None
            raise
        # a task module casatasks/X.py defines the task object X; the import system bound
        # the sub-module itself to the package attribute, replace it by the task
        value = getattr(module, name, module)
        setattr(pkg, name, value)
        return value

    pkg.__getattr__ = __getattr__
    sys.modules["casatasks"] = pkg
    return pkg


def casatasks() -> ModuleType:
    """Return :mod:`casatasks` with the project's configuration.

    Tasks are imported on first use (see :func:`_casatasks_package`), so
    ``casatasks().tclean(...)`` costs the import of ``tclean`` only.
    """
    casatools()
    _cta = _casatasks_package()

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
