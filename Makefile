# The two set-up commands of the README:
#   make run    build data/census.db from data/Input_Dataset.csv (SQLite) and serve the explorer and the API
#   make test   install everything the tests need and run them
# Both work on a fresh Debian 12 / Ubuntu machine with Python 3.11, as root or with sudo.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run load test browser-deps system-deps axe venv docker-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Debian packages: Chromium and its driver for PNG/JPG export and the browser
# tests; the PostgreSQL 15 server binaries for the PostgreSQL tests.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

system-deps: browser-deps
	@if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; \
	fi

# axe-core (the accessibility checker the browser tests run), from the npm registry.
AXE_VERSION := 4.11.0
tests/.axe/node_modules/axe-core/axe.min.js:
	@if ! command -v npm >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
	fi
	npm install --silent --no-save --no-package-lock --prefix tests/.axe axe-core@$(AXE_VERSION)

axe: tests/.axe/node_modules/axe-core/axe.min.js

load: venv
	$(BIN)/python -m loaders.upload

run: browser-deps load
	scripts/serve.sh

test: system-deps venv axe
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

docker-test:
	bash .ci/docker.sh

bench: venv
	$(BIN)/python -m benchmarks.ingest

clean:
	rm -rf $(VENV) data/census.db data/census.db-*
