# The README's two commands are `make serve` and `make test`; both bootstrap .venv themselves.
# `serve` installs what serving needs; `test` adds the test tools (the [dev] extra).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt
SERVE_STAMP := $(VENV)/.serve-stamp
DEV_STAMP   := $(VENV)/.dev-stamp
NODE_DIR    := tests/support/node

.PHONY: serve test lint typecheck bench format deps node-deps

$(BIN)/python:
	@scripts/ensure-system-deps.sh
	$(PYTHON) -m venv $(VENV)

$(SERVE_STAMP): pyproject.toml constraints.txt scripts/ensure-system-deps.sh | $(BIN)/python
	@scripts/ensure-system-deps.sh
	@echo "Installing the service's Python dependencies into $(VENV) (first run: a minute or two)…"
	$(PIP) -e .
	@touch $(SERVE_STAMP)

$(DEV_STAMP): $(SERVE_STAMP)
	@echo "Installing the test tools into $(VENV)…"
	$(PIP) -e '.[dev]'
	@touch $(DEV_STAMP)

deps: $(DEV_STAMP)

# The AI SDK's client (the `ai` package, pinned in package-lock.json) for the approval tests;
# without npm those tests are skipped, saying why.
node-deps:
	@if [ ! -d $(NODE_DIR)/node_modules ]; then \
	  if command -v npm >/dev/null 2>&1; then \
	    echo "Installing the AI SDK client for the tests into $(NODE_DIR)…"; \
	    npm ci --prefix $(NODE_DIR) --no-audit --no-fund; \
	  else echo "npm not found: the AI SDK client tests will be skipped"; fi; \
	fi

serve: $(SERVE_STAMP)
	$(BIN)/agent-sessions serve $(ARGS)

test: $(DEV_STAMP) node-deps
	@scripts/ensure-system-deps.sh --test
	$(BIN)/python -m pytest $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python bench/api.py $(ARGS)
