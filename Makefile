# The two commands: `make serve` and `make test`. Each does all of its own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
SCALE ?= 0.1

.PHONY: serve test install install-test demo lint bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	# TPC-DS data for the parity suite: DuckDB 1.5.5 + its tpcds extension from PyPI, in .venv-tpcds
	$(BIN)/python -c "from tests.breadth_data import tpcds_python; tpcds_python()"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	@if [ -z "$$(ls -A $(DATA) 2>/dev/null | grep -v '^\.')" ]; then \
		$(BIN)/colonnade demo --data $(DATA) --scale $(SCALE); \
	else echo "$(DATA)/ already has tables; skipping demo generation"; fi

serve: demo
	$(BIN)/colonnade serve --data $(DATA)

# Byte-compiled once here: the suite starts ~500 Python processes (servers, CLI calls, engine
# workers), and where PYTHONDONTWRITEBYTECODE is set each would compile the project's modules anew.
test: install-test chromium
	$(BIN)/python -m compileall -q engine api bench
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's chromium (Playwright cannot download browsers here).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

$(VENV)/.installed-lint: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[lint]'
	touch $@

# What CI checks besides behaviour: lint, formatting, types (engine/ and api/, [tool.mypy]).
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmark, set-up included: TPC-H SF1, ROAPI in a side venv, wrk, then every comparison as
# interleaved A/B pairs (about 35 min on a quiet 2-core machine; bench/README.md) -> BENCHMARKS.md, bench/plots/*.png,
# README "## Benchmarks". BENCH_ARGS="--only concurrency --pairs 3" for a part of it.
BENCH_SCALE ?= 1
BENCH_ARGS ?=
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-bench
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	test -x bench/.venv-roapi/bin/roapi || ($(PYTHON) -m venv bench/.venv-roapi && bench/.venv-roapi/bin/pip install --quiet roapi)
	@echo "load before the run: $$(cat /proc/loadavg)"
	$(BIN)/python -m bench.harness --scale $(BENCH_SCALE) --out bench/results $(BENCH_ARGS)
	$(BIN)/python -m bench.report bench/results/results.json

clean:
	rm -rf $(VENV) .venv-tpcds .pytest_cache
