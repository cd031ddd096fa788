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
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	@if [ -z "$$(ls -A $(DATA) 2>/dev/null | grep -v '^\.')" ]; then \
		$(BIN)/colonnade demo --data $(DATA) --scale $(SCALE); \
	else echo "$(DATA)/ already has tables; skipping demo generation"; fi

serve: demo
	$(BIN)/colonnade serve --data $(DATA)

test: install-test chromium
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's chromium (Playwright cannot download browsers here).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

lint: install-test
	$(BIN)/pip install --quiet ruff && $(BIN)/ruff check engine api tests

clean:
	rm -rf $(VENV) .pytest_cache
