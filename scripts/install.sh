#!/usr/bin/env bash
# Create (or update) a virtualenv with everything phangs-airflow needs, in ONE resolver call
# pinned by constraints.txt.  Used by `make setup`, CI and the Dockerfile (with --system).
#   scripts/install.sh VENV_DIR        create/update VENV_DIR
#   scripts/install.sh --system        install into the current interpreter (Docker image)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.venv}"
# PHANGS_RESOLVE=1: resolve afresh from requirements*.txt (to regenerate constraints.txt)
CONSTRAINTS=(-c constraints.txt)
[[ "${PHANGS_RESOLVE:-0}" == 1 ]] && CONSTRAINTS=()
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

if [[ "$target" == "--system" ]]; then
    python -m pip install --no-cache-dir -U pip
    python -m pip install --no-cache-dir -r requirements.txt -c constraints.txt
    python -m pip install --no-cache-dir --no-deps .
    exit 0
fi

if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv (fast pip-compatible installer) for $PY" >&2
    "$PY" -m pip install --quiet uv || true
fi
if command -v uv >/dev/null 2>&1; then
    [[ -x "$target/bin/python" ]] || uv venv --quiet --python "$PY" "$target"
    # --compile-bytecode: uv writes no .pyc by default (pip does); without them every Airflow
    # task process compiles airflow + CASA again (docs/ORCHESTRATION_OVERHEAD.md)
    uv pip install --quiet --compile-bytecode --python "$target/bin/python" \
        -r requirements.txt -r requirements-dev.txt "${CONSTRAINTS[@]}"
    uv pip install --quiet --python "$target/bin/python" --no-deps -e .
else
    [[ -x "$target/bin/python" ]] || "$PY" -m venv "$target"
    "$target/bin/python" -m pip install --quiet -U pip
    "$target/bin/python" -m pip install --quiet \
        -r requirements.txt -r requirements-dev.txt "${CONSTRAINTS[@]}"
    "$target/bin/python" -m pip install --quiet --no-deps -e .
fi
CASASITECONFIG="$PWD/plugins/phangs_operators/casa/casasiteconfig.py" OMP_NUM_THREADS=1 MPLCONFIGDIR="$(mktemp -d)" \
    "$target/bin/python" -c "import airflow, casatools, spectral_cube, phangs_operators" 2>/dev/null \
    || { echo "install check failed: import of airflow/casatools/spectral_cube/phangs_operators" >&2; exit 1; }
echo "environment ready in $target"
