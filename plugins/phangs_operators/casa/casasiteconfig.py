# CASA site configuration shipped with phangs-airflow.
#
# Selected through the CASASITECONFIG environment variable (absolute path to this file),
# which phangs_operators.casa sets before casatools is first imported.  casaconfig exec()s
# this file at import time of casatools/casatasks.
#
# - measures (IERS, leap seconds, observatories, ALMA antenna files) come from the
#   ``casadata`` wheel, or from CASA_MEASURESPATH when set (e.g. the trimmed 10 MB tree of
#   the production image);
# - automatic downloads of measures/data are off: the pipeline runs offline;
# - the CASA log goes to $CASA_LOG_DIR/casa.log (a directory we create), never into the
#   current working directory or $HOME.  Each task switches to its own log file with
#   casalog.setlogfile() through phangs_operators.casa.casa_session().
import importlib.util as _ilu
import os as _os
import tempfile as _tempfile

_spec = _ilu.find_spec("casadata")
measurespath = _os.environ.get("CASA_MEASURESPATH") or (
    _os.path.join(_os.path.dirname(_spec.origin), "__data__") if _spec else None
)
measures_auto_update = False
data_auto_update = False
nologfile = True
nogui = True
agg = True
_logdir = _os.environ.get("CASA_LOG_DIR") or _os.path.join(_tempfile.gettempdir(), "phangs-casa-logs")
_os.makedirs(_logdir, exist_ok=True)
logfile = _os.path.join(_logdir, "casa.log")
