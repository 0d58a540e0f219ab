# The two commands of the README: `make serve` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STORE ?= sqlite:///chargeledger.db

.PHONY: setup serve test lint bench mutation fuzz chromium haproxy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# A regular (non-editable) install: tests and the type checker see exactly what users install.
setup: $(BIN)/python
	$(BIN)/pip install --quiet '.[dev]'

serve: setup
	$(BIN)/chargeledger serve --store $(STORE)

# The console's browser tests drive Debian's chromium (Playwright cannot download browsers
# here): installed when missing (CI runs as root).
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# tests/test_haproxy.py runs Debian's HAProxy in front of two nodes (docs/operations.md):
# installed when missing, as chromium.
HAPROXY := /usr/sbin/haproxy
haproxy:
	@test -x $(HAPROXY) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy; }

# -ra lists every skip and xfail with its reason; a skip, or PostgreSQL unreachable, fails the
# run (tests/conftest.py; CHARGELEDGER_TEST_ALLOW_SKIPS=1 is the developer's opt-out).
test: setup chromium haproxy
	$(BIN)/ruff check core plugins schemas projections tests benchmarks
	$(BIN)/ruff format --check core plugins schemas projections tests benchmarks
	$(BIN)/mypy -p chargeledger.core -p chargeledger.plugins -p chargeledger.projections -p chargeledger.schemas
	$(BIN)/python -m pytest -q -ra

# About 35 minutes; writes benchmarks/results/ and the tables of docs/performance.md. The
# ocpp-rpc peer needs Node.js and npm: run.py installs it (npm ci in benchmarks/peer_ocpp_rpc/)
# when missing. ChargeLedger on PostgreSQL runs on fresh schemas of BENCH_POSTGRES. Every step
# at small sizes, writing nothing into docs (a few minutes):
#   make bench BENCH_SUITE='--quick --out build/bench/latest.json' BENCH_SECURITY=--quick \
#     BENCH_REPLAY='--frames 20000 --import-lines 2000'   (security.* in benchmarks/results/ too)
BENCH_POSTGRES ?= postgresql://postgres@127.0.0.1:5432/postgres
BENCH_SUITE ?= --profile saturation:1000 --profile connect-storm:10000 --write-docs
BENCH_SECURITY ?= --write-docs
BENCH_REPLAY ?=
bench: setup
	$(BIN)/pip install --quiet '.[bench]'
	$(BIN)/python benchmarks/run.py --postgres $(BENCH_POSTGRES) $(BENCH_SUITE)
	$(BIN)/python benchmarks/run.py --security $(BENCH_SECURITY)
	$(BIN)/python benchmarks/audit_replay.py $(BENCH_REPLAY)

# Mutation testing (not in CI; about an hour for all five modules on 2 busy cores). cosmic-ray
# mutates the source files in place, but the tests import the installed chargeledger.*: the
# symlink tree under build/mutation/ maps chargeledger.core -> core/ etc. and goes first on
# PYTHONPATH, so each mutant is what the tests import (no reinstall per mutant; no bytecode
# is written, so a same-size mutant in the same second never runs a stale .pyc). One session
# per module, each against the tests that exercise it (tests/mutation/<module>.toml).
# `make mutation MUTATION_MODULES=frames` runs one. Reports: build/mutation/<module>.txt.
# MUTATION_ONLY=1 runs only the known survivors of a module that lists them
# (tests/mutation/<module>-survivors.txt, kept by tests/mutation/keep.py).
MUTATION_MODULES ?= frames decide writer gateway transactions
MUTATION_DIR := $(CURDIR)/build/mutation
MUTATION_ENV := PATH=$(CURDIR)/$(BIN):$$PATH PYTHONPATH=$(MUTATION_DIR) PYTHONDONTWRITEBYTECODE=1

mutation: setup
	$(BIN)/pip install --quiet '.[mutation]'
	git diff --quiet -- core projections || { echo "commit or stash core/ and projections/ first"; exit 1; }
	mkdir -p $(MUTATION_DIR)/chargeledger
	for d in core plugins projections schemas tests; do ln -sfn ../../../$$d $(MUTATION_DIR)/chargeledger/$$d; done
	find core plugins projections schemas tests -name __pycache__ -prune -exec rm -rf {} +
	set -e; for m in $(MUTATION_MODULES); do \
	  session=$(MUTATION_DIR)/$$m.sqlite; rm -f $$session; \
	  $(MUTATION_ENV) $(BIN)/cosmic-ray baseline tests/mutation/$$m.toml; \
	  $(BIN)/cosmic-ray init tests/mutation/$$m.toml $$session; \
	  $(BIN)/cr-filter-operators $$session tests/mutation/$$m.toml; \
	  if [ -n "$(MUTATION_ONLY)" ] && [ -f tests/mutation/$$m-survivors.txt ]; then \
	    $(BIN)/python tests/mutation/keep.py $$session tests/mutation/$$m-survivors.txt; fi; \
	  $(MUTATION_ENV) nice -n 15 $(BIN)/cosmic-ray exec tests/mutation/$$m.toml $$session; \
	  $(BIN)/cr-report --show-diff --surviving-only $$session > $(MUTATION_DIR)/$$m.txt; \
	  tail -n 3 $(MUTATION_DIR)/$$m.txt; \
	done
	git diff --quiet -- core projections || { echo "a mutant was left in the source: git checkout core projections"; exit 1; }

# Fuzzing (not in CI): atheris (libFuzzer) over frame parsing and payload validation, then over
# a real gateway's opening handshake on loopback. A crash or a hang (-timeout, seconds per input)
# stops the run and leaves the input in build/fuzz/crash-* or timeout-*; the corpora grow in
# build/fuzz/ from one run to the next. Figures: docs/testing.md.
FUZZ_FRAME_RUNS ?= 1000000
FUZZ_HANDSHAKE_RUNS ?= 20000
FUZZ_FLAGS := -artifact_prefix=build/fuzz/ -print_final_stats=1

fuzz: setup
	$(BIN)/pip install --quiet '.[fuzz]'
	mkdir -p build/fuzz
	nice -n 15 $(BIN)/python -m tests.fuzz.fuzz_frames -runs=$(FUZZ_FRAME_RUNS) -timeout=10 $(FUZZ_FLAGS) build/fuzz/frames
	nice -n 15 $(BIN)/python -m tests.fuzz.fuzz_handshake -runs=$(FUZZ_HANDSHAKE_RUNS) -timeout=30 $(FUZZ_FLAGS) build/fuzz/handshake
