# Two commands on a fresh machine with python3 >= 3.11 and make:
#   make demo   - the whole EOD pipeline on the embedded simulator, ending with a SQL result
#   make test   - the whole test suite (what CI runs through .ci/run)
#   make report - the evening report rebuilt from the current warehouse, its path printed
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SIM_PORT ?= 8765

export VARIANCE_SOURCE ?= simulator
export VARIANCE_SIMULATOR_URL ?= http://127.0.0.1:$(SIM_PORT)
export DAGSTER_HOME ?= $(abspath data/$(VARIANCE_SOURCE)/dagster_home)

.PHONY: install demo test test-fast dev doctor report rebuild clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m variance_pipeline.demo

test: $(STAMP)
	$(PY) -m pytest

# The fast part alone (no Dagster run, CLI, real server, demo or browser; under a minute): the inner loop.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

dev: $(STAMP)
	$(PY) -m variance_pipeline.dev --port $(SIM_PORT)

# Prove the set-up (credentials, accounts, positions, metrics, one chart, the rate): read-only, writes nothing.
doctor: $(STAMP)
	$(PY) -m variance_pipeline.doctor

# Rebuild the evening report from the current warehouse (no Dagster run); prints its path.
report: $(STAMP)
	$(PY) -m variance_pipeline.reports.cli

# Every benchmarks/bench_*.py, one table, benchmarks/RESULTS.md; exits 1 when a case fails (~10 min on 2 cores).
bench: $(STAMP)
	$(PY) benchmarks/run.py

rebuild: $(STAMP)
	$(VENV)/bin/variance-warehouse rebuild

clean:
	rm -rf $(VENV) data/simulator
