# The two commands of the README: `make serve` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STORE ?= sqlite:///chargeledger.db

.PHONY: setup serve test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# A regular (non-editable) install: tests and the type checker see exactly what users install.
setup: $(BIN)/python
	$(BIN)/pip install --quiet '.[dev]'

serve: setup
	$(BIN)/chargeledger serve --store $(STORE)

# -ra lists every skip and xfail with its reason; a skip, or PostgreSQL unreachable, fails the
# run (tests/conftest.py; CHARGELEDGER_TEST_ALLOW_SKIPS=1 is the developer's opt-out).
test: setup
	$(BIN)/ruff check core plugins schemas projections tests benchmarks
	$(BIN)/ruff format --check core plugins schemas projections tests benchmarks
	$(BIN)/mypy -p chargeledger.core -p chargeledger.plugins -p chargeledger.projections -p chargeledger.schemas
	$(BIN)/python -m pytest -q -ra

# About 20 minutes; writes benchmarks/results/ and the tables of docs/performance.md.
bench: setup
	$(BIN)/pip install --quiet '.[bench]'
	$(BIN)/python benchmarks/run.py --profile saturation:1000 --profile connect-storm:10000 --write-docs
	$(BIN)/python benchmarks/audit_replay.py
