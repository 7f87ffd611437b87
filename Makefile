# usersignals — every entry point a newcomer, CI or an operator needs.
# `make demo` and `make test` work on a fresh clone: they install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo
PYTEST_ARGS ?=

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install system-deps test lint typecheck unit demo bench bench-quick notebook clean

install: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's Prometheus (server + promtool) and Chromium (headless report checks).
system-deps:
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 \
	   || ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian packages: prometheus chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/usersignals generate --users 3000 --days 21 --seed 7 --out $(DEMO_DIR)/events.jsonl
	$(BIN)/usersignals run $(DEMO_DIR)/events.jsonl --warehouse $(DEMO_DIR)/warehouse

bench: install
	$(BIN)/python tests/bench/run.py

bench-quick: install
	$(BIN)/python tests/bench/run.py --quick

notebook: install
	$(BIN)/python -m pip install -q jupyterlab
	USERSIGNALS_WAREHOUSE=$${USERSIGNALS_WAREHOUSE:-$(DEMO_DIR)/warehouse} $(BIN)/jupyter lab notebooks/analyst.ipynb

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis $(DEMO_DIR)
