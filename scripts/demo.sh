#!/usr/bin/env bash
# `make demo`: simulate the tiny ALMA data set and run the whole pipeline for every target
# of the demo key set (include/keys) through Airflow, on the embedded default: SQLite
# metadata DB, a local folder as the product store and a SQLite catalog.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PHANGS_DEMO_ROOT="$(mkdir -p "${1:-$ROOT/.demo}" && cd "${1:-$ROOT/.demo}" && pwd)"
ENV="$ROOT/scripts/airflow_env.sh"
step() { printf '\n== %s\n' "$*"; }

step "simulating the tiny ALMA data set into $PHANGS_DEMO_ROOT/data"
if [[ -f "$PHANGS_DEMO_ROOT/data/manifest.json" ]]; then
    echo "already there (delete $PHANGS_DEMO_ROOT/data to simulate again)"
else
    "$ENV" phangs simulate "$PHANGS_DEMO_ROOT/data" --preset tiny --seed 42
fi

step "checking the demo key set"
"$ENV" phangs keys check "$ROOT/include/keys"

step "preparing the Airflow metadata database (SQLite)"
"$ENV" airflow db migrate >/dev/null
"$ENV" airflow pools set casa "$(nproc)" "concurrent CASA processes" >/dev/null

targets=$("$ENV" python -c "
from phangs_operators.dag_factory import build_dags
from phangs_operators.keys import load_project
import os
p = load_project(os.environ['PHANGS_KEY_DIR'])
print(' '.join(t for t in p.whole_targets() if p.ms_entries(t) or p.is_mosaic(t)))")
status=0
for t in $targets; do
    step "running the pipeline DAG of $t (phangs run $t = dag.test of phangs_$t)"
    # the demo shows the QA findings in the report without failing the run (--min-score 0)
    if ! "$ENV" phangs run "$t" --min-score 0; then
        echo "!! the DAG of $t failed; task logs: $PHANGS_DEMO_ROOT/airflow/logs/dag_id=phangs_$t" >&2
        status=1
    fi
done

step "outputs"
echo "products (local product store):  $PHANGS_DEMO_ROOT/products"
echo "catalog (SQLite):                $PHANGS_DEMO_ROOT/catalog.db   ->  phangs catalog list"
echo "working files:                   $PHANGS_DEMO_ROOT/{imaging,postprocess,derived}"
echo "Airflow task logs:               $PHANGS_DEMO_ROOT/airflow/logs"
for t in $targets; do
    echo "QA report of $t:            $PHANGS_DEMO_ROOT/derived/$t/qa_report/report.html"
done
echo "Airflow UI:                      make airflow   (http://127.0.0.1:8080, admin/admin)"
"$ENV" phangs catalog list 2>/dev/null | tail -n 25 || true
exit $status
