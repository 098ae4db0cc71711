# phangs-airflow: the two commands of a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT := $(abspath .)
export OMP_NUM_THREADS := 1
export CASASITECONFIG := $(ROOT)/plugins/phangs_operators/casa/casasiteconfig.py
export MPLCONFIGDIR ?= $(ROOT)/.demo/mplconfig
DEMO_DIR ?= $(ROOT)/.demo
PYTEST_ARGS ?=

.PHONY: help setup demo test lint airflow constraints bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install everything (pinned by constraints.txt)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	bash scripts/install_browser.sh   # Debian chromium + chromium-driver for the QA browser test
	@touch $@

demo: setup  ## simulate the tiny data and run the whole pipeline through Airflow (SQLite, local store)
	bash scripts/demo.sh $(DEMO_DIR)

test: setup  ## run the whole test suite (needs PostgreSQL on 127.0.0.1:5432)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint:  ## ruff
	$(BIN)/ruff check plugins dags tests benchmarks

airflow: setup  ## airflow standalone on the demo project (UI on http://127.0.0.1:8080)
	bash scripts/airflow_env.sh standalone

bench: setup  ## run all benchmarks (minutes)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

constraints:  ## re-resolve constraints.txt from requirements (needs the registry)
	rm -rf /tmp/phangs-constraints-venv
	PHANGS_RESOLVE=1 bash scripts/install.sh /tmp/phangs-constraints-venv
	uv pip freeze --python /tmp/phangs-constraints-venv/bin/python | grep -v '^-e ' > constraints.txt

clean:  ## remove the demo outputs and the Airflow home
	rm -rf .demo .airflow
