"""QA of a target run: records -> scores (0-1 with a reason) -> static HTML + JSON report.

* :mod:`.config` - versioned default thresholds (``qa_thresholds.yaml``), per-project overrides;
* :mod:`.checks` - pure scoring functions over QA records and FITS products;
* :mod:`.collect` - QA records of a target's working directories, product discovery;
* :mod:`.plots` - matplotlib / WCSAxes figures;
* :mod:`.report` - the per-target report and the overview page of all targets.

Nothing here imports Airflow or CASA.
"""

from phangs_operators.qa.checks import Score
from phangs_operators.qa.config import QAConfig, load_config
from phangs_operators.qa.report import ReportResult, build_overview, build_report, find_reports

__all__ = ["QAConfig", "ReportResult", "Score", "build_overview", "build_report", "find_reports", "load_config"]
