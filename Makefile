# usersignals — every entry point a newcomer, CI or an operator needs.
# `make demo` and `make test` work on a fresh clone: they install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo
PYTEST_ARGS ?=

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install node-sdks system-deps test check-clean lint typecheck unit faults demo bench bench-quick notebook clean

install: $(STAMP) system-deps node-sdks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The Node SDKs the capture tests drive when Node is here (tests/capture_script.py NODE_PACKAGES;
# installed once from the npm registry, never by a test).
NODE_SDKS := posthog-node@5.74.0 @segment/analytics-node@3.1.0
NODE_DIR  := $(VENV)/capture-node
NODE_STAMP := ["posthog-node@5.74.0", "@segment/analytics-node@3.1.0"]
node-sdks: $(STAMP)
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
	   && [ "$$(cat $(NODE_DIR)/installed.json 2>/dev/null)" != '$(NODE_STAMP)' ]; then \
	  echo "installing the Node SDKs: $(NODE_SDKS)"; \
	  npm install -s --prefix $(NODE_DIR) --no-audit --no-fund --no-save $(NODE_SDKS) && \
	  printf '%s' '$(NODE_STAMP)' > $(NODE_DIR)/installed.json; \
	fi

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

# The whole suite; a test that needs prometheus, promtool or chromium fails here when the tool
# is missing (make system-deps installs them) instead of skipping. Then the checkout must be as
# clean as before: tests write only under temporary directories.
test: install lint typecheck
	USERSIGNALS_REQUIRE_TOOLS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory check-clean

# The fault suite and the fuzzers at full length (USERSIGNALS_FAULTS=long): more SIGKILLs, more
# hypothesis examples, a longer atheris run, the broker restart. `make test` runs the same tests
# in a short form.
faults: install
	USERSIGNALS_REQUIRE_TOOLS=1 USERSIGNALS_FAULTS=long $(BIN)/python -m pytest tests/faults -s $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory check-clean

check-clean:
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "check-clean: not a git checkout, nothing to compare"; \
	elif [ -n "$$(git status --porcelain)" ]; then \
	  echo "check-clean: the checkout is not clean (a test or a build step left these):"; \
	  git status --porcelain; exit 1; \
	fi

demo: install
	$(BIN)/usersignals generate --users 3000 --days 21 --seed 7 --out $(DEMO_DIR)/events.jsonl
	$(BIN)/usersignals run $(DEMO_DIR)/events.jsonl --warehouse $(DEMO_DIR)/warehouse

bench: install
	$(BIN)/python tests/bench/run.py

bench-quick: install
	$(BIN)/python tests/bench/run.py --quick

# JupyterLab is no project dependency (the tests execute the notebook with nbclient): installed
# into the venv once, when the venv has no jupyter-lab yet; the stamp goes with the venv.
JUPYTERLAB_STAMP := $(VENV)/.jupyterlab
$(JUPYTERLAB_STAMP): | $(STAMP)
	test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install -q jupyterlab
	touch $@

notebook: install $(JUPYTERLAB_STAMP)
	USERSIGNALS_WAREHOUSE=$${USERSIGNALS_WAREHOUSE:-$(DEMO_DIR)/warehouse} $(BIN)/jupyter lab notebooks/analyst.ipynb

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis $(DEMO_DIR)
