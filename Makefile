# Two commands for a fresh machine: `make dev` runs chatbox on its embedded default,
# `make test` runs lint, types, the import contracts and the whole suite (it starts Postgres itself).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: dev test lint types install lock openapi clean postgres-binaries sam-build layer deploy coldstart

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Installs exactly what requirements.lock pins (what CI tested), plus chatbox itself, editable.
$(STAMP): pyproject.toml requirements.lock | $(PY)
	$(PIP) install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/chatbox dev

postgres-binaries:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "installing the PostgreSQL server for the test suite"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

types: $(STAMP)
	$(VENV)/bin/mypy

# pytest-xdist workers. The suite mostly waits (subprocess CLIs, servers, bounded polling), but each
# worker also collects the suite and starts its own Postgres. On an otherwise idle 2-core machine
# pytest took 86 s on 2 workers, 79 s on 3 and 90 s on 4 (`-n auto` is 2 there). Worksteal evens
# out the slow tests. `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= 3

test: $(STAMP) postgres-binaries lint types
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15

# Refresh the pins after changing dependencies in pyproject.toml.
lock: | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > requirements.lock

openapi: $(STAMP)
	$(PY) -m chatbox.cli.openapi_export docs/openapi.json

# AWS (infra/README.md). Need the AWS SAM CLI and a python3.12 (PYTHON312) first; not part of `make test`.
# The layer is built here, not by `sam build`: template.yaml's ChatboxLayer ships build/layer/ as it is.
PYTHON312 ?= python3.12
LAYER_DIR ?= build/layer
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34), arm64: every manylinux tag up to 2.34. With
# manylinux2014 alone pip falls back to older releases (psycopg-binary 3.2 for the 3.3 CI tested).
LAYER_PLATFORMS := manylinux_2_34_aarch64 manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64
# Lambda's unzipped limit is 250 MB (a function carries the layer plus its own handler folder). The target is
# 100 MB with bytecode; the layer is 118 MB today (bench/README.md: what would bring it under).
LAYER_MAX_MB ?= 250

sam-build: layer
	sam build --template-file template.yaml

# The runtime requirements at exactly the versions requirements.lock pins (-c), as CPython 3.12 arm64 wheels,
# beside copies of shared/chatbox and connectors/; then the drift check, bytecode and the size limit.
# Bytecode: /opt is read-only on Lambda, so without .pyc files every cold start compiles every module.
# unchecked-hash: the .pyc is used without a look at the source's mtime (zip extraction resets it).
layer: $(STAMP)
	rm -rf "$(LAYER_DIR)" && mkdir -p "$(LAYER_DIR)/python"
	$(PIP) install --quiet --no-compile --target "$(LAYER_DIR)/python" -r shared/requirements.txt -c requirements.lock \
		$(addprefix --platform ,$(LAYER_PLATFORMS)) --implementation cp --python-version 3.12 --only-binary=:all:
	$(PY) infra/check_layer.py "$(LAYER_DIR)/python" requirements.lock
	cp -r shared/chatbox connectors "$(LAYER_DIR)/python/"
	find "$(LAYER_DIR)/python" -name __pycache__ -prune -exec rm -rf {} +
	rm -f "$(LAYER_DIR)"/python/connectors/*/Dockerfile
	rm -rf "$(LAYER_DIR)"/python/bin
	$(PYTHON312) -m compileall -q -j 0 --invalidation-mode unchecked-hash \
		-s "$(LAYER_DIR)/python" -p /opt/python "$(LAYER_DIR)/python"
	@size=$$(du -sm "$(LAYER_DIR)" | cut -f1); echo "layer: $$size MB unzipped (limit $(LAYER_MAX_MB) MB)"; \
		test $$size -le $(LAYER_MAX_MB) || { echo "layer exceeds $(LAYER_MAX_MB) MB" >&2; exit 1; }

deploy:  # make deploy ENV=dev (infra/params/dev.json); SAM=samlocal for LocalStack
	infra/deploy.sh $(or $(ENV),dev)

coldstart: $(STAMP)
	$(PY) bench/coldstart.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
