#!/usr/bin/env bash
# Environment of the embedded default deployment (SQLite metadata DB, local folder product
# store, SQLite catalog) under $PHANGS_DEMO_ROOT (default: <repo>/.demo), then run a command:
#   scripts/airflow_env.sh standalone        the Airflow UI + scheduler on http://127.0.0.1:8080
#   scripts/airflow_env.sh <any command>     e.g. airflow dags list, phangs run ngc9999
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PHANGS_DEMO_ROOT="${PHANGS_DEMO_ROOT:-$ROOT/.demo}"
export PHANGS_KEY_DIR="${PHANGS_KEY_DIR:-$ROOT/include/keys}"
export PHANGS_PRODUCTS_URI="${PHANGS_PRODUCTS_URI:-file://$PHANGS_DEMO_ROOT/products}"
export PHANGS_CATALOG_URL="${PHANGS_CATALOG_URL:-sqlite:///$PHANGS_DEMO_ROOT/catalog.db}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PHANGS_DEMO_ROOT/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# one executor slot more than the casa pool (= cores): the next CASA task starts while the
# previous one's supervisor winds down (docs/ORCHESTRATION_OVERHEAD.md)
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-$(( $(nproc) + 1 ))}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export OMP_NUM_THREADS=1
# the task supervisor notices the exit of its task process only at its next select() timeout,
# [workers] min_heartbeat_interval (default 5 s): up to 5 s of idle executor slot per task
# (docs/ORCHESTRATION_OVERHEAD.md)
export AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="${AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL:-1}"
# an idle scheduler loop sleeps 1 s by default before it looks for freed slots again
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="${AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME:-0.2}"
export CASASITECONFIG="$ROOT/plugins/phangs_operators/casa/casasiteconfig.py"
export MPLCONFIGDIR="$PHANGS_DEMO_ROOT/mplconfig"
export CASA_LOG_DIR="$PHANGS_DEMO_ROOT/casa_logs"
export PATH="$ROOT/.venv/bin:$PATH"
mkdir -p "$AIRFLOW_HOME" "$MPLCONFIGDIR" "$CASA_LOG_DIR"
[[ -f "$AIRFLOW_HOME/passwords.json" ]] || echo '{"admin": "admin"}' > "$AIRFLOW_HOME/passwords.json"

if [[ "${1:-}" == "standalone" ]]; then
    airflow db migrate >/dev/null
    airflow pools set casa "$(nproc)" "concurrent CASA processes (one per core)" >/dev/null
    echo "Airflow UI: http://127.0.0.1:8080 (user admin, password admin); Ctrl-C stops it"
    exec airflow standalone
fi
exec "$@"
