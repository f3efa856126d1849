# MCP Airlock. Two commands on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment (and, for tests, the npm reference servers) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
NODE_OK := node_modules/.installed

.PHONY: demo test bench lint typecheck clean

$(PY_OK): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

$(NODE_OK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Run the gateway on the embedded demo server and show what it did.
demo: $(PY_OK)
	$(BIN)/airlock demo

## Run the whole test suite (installs the reference MCP servers from npm and PyPI first).
test: $(PY_OK) $(NODE_OK)
	$(BIN)/ruff check gateway tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

## Benchmarks print figures as ratios to the direct path; they are not part of `make test`.
bench: $(PY_OK) $(NODE_OK)
	$(BIN)/python benchmarks/relay_bench.py
	$(BIN)/python benchmarks/flightlog_bench.py
	$(BIN)/python benchmarks/policy_bench.py
	$(BIN)/python benchmarks/provenance_bench.py
	$(BIN)/python benchmarks/label_scenarios.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
