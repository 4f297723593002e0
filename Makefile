# The two promises: `make demo` (set up + run the main job) and `make test` (set up + pass the tests).
# Both create or reuse .venv and reinstall only when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
export PIP_PROGRESS_BAR ?= off

.PHONY: demo test lint typecheck deadcode check browser install install-dev bench clean help web deploy-test

help:
	@echo "make demo   set up, then harvest, index and serve the demo collection on 127.0.0.1"
	@echo "make test   set up, then ruff, mypy, vulture and pytest"
	@echo "make bench  run the benchmarks in bench/ (prints JSON)"
	@echo "make deploy-test  build and run the containers with podman-compose (minutes; not in make test)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's Chromium; install it when missing and we may (root, apt available).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "warning: chromium not found and cannot be installed here; browser tests will be skipped"; fi

# The web UI's one npm dependency (OpenSeadragon, deep zoom); without npm the UI shows plain images instead.
web: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error \
		|| echo "warning: npm ci failed; the web UI falls back to plain images (no deep zoom)"; \
	else echo "warning: npm not found; the web UI falls back to plain images (no deep zoom)"; fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Dead code: vulture at its lowest confidence; what it cannot see is listed in pyproject.toml [tool.vulture].
deadcode: $(VENV)/.installed-dev
	$(BIN)/vulture

check: lint typecheck deadcode

test: $(VENV)/.installed-dev browser web check
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

demo: $(VENV)/.installed web
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/iconosearch demo

# The container deployment for real (podman + podman-compose, minutes): image build, indexer, 3 api replicas
# behind HAProxy, a replica killed under load. Not part of `make test`. Base images that cannot be pulled
# are stood in for from Debian packages (deploy/test/stand-in-images.sh).
deploy-test: $(VENV)/.installed-dev
	deploy/test/stand-in-images.sh
	$(BIN)/python deploy/test/deploy_test.py

bench: $(VENV)/.installed-dev
	@for b in bench/*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
