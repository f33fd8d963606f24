# Two commands for a fresh machine: `make dev` runs chatbox on its embedded default,
# `make test` runs lint, types, the import contracts and the whole suite (it starts Postgres itself).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: dev test lint types install lock openapi clean postgres-binaries sam-build deploy coldstart build-ChatboxLayer

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

# AWS (infra/README.md). Need the AWS SAM CLI and python3.12 first on PATH; not part of `make test`.
sam-build:
	sam build --template-file template.yaml

# Called by `sam build` for the ChatboxLayer (BuildMethod: makefile): the chatbox package and the
# connectors, with the layer's runtime requirements, for python3.12 on arm64 Lambda.
build-ChatboxLayer:
	mkdir -p "$(ARTIFACTS_DIR)/python"
	cp -r shared/chatbox connectors "$(ARTIFACTS_DIR)/python/"
	python -m pip install --quiet -r shared/requirements.txt -t "$(ARTIFACTS_DIR)/python" \
		--platform manylinux2014_aarch64 --implementation cp --python-version 3.12 --only-binary=:all:
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -prune -exec rm -rf {} +

deploy:  # make deploy ENV=dev (infra/params/dev.json); SAM=samlocal for LocalStack
	infra/deploy.sh $(or $(ENV),dev)

coldstart: $(STAMP)
	$(PY) bench/coldstart.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
