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
# worker also collects the suite and starts its own Postgres. Once the CLI tests ran in-process (a third less CPU),
# 3 workers left a core idle about half the time: on a 2-core machine at load 3, `make test` took 2m35 on 4
# workers and 4m08 on 3 (main then: 3m17 on 4, 3m49 on 3). Worksteal evens out the slow tests.
# `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= 4

# The suite starts hundreds of Python processes (workers, `chatbox` commands, connector programs): with
# PYTHONDONTWRITEBYTECODE set (this machine's environment sets it), each compiled chatbox and the tests from source again
# (collection alone took 4.3 s of CPU per worker instead of 2.3 s). Bytecode goes to the ignored __pycache__/.
test: $(STAMP) postgres-binaries lint types
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15

# Refresh the pins after changing dependencies in pyproject.toml.
lock: | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > requirements.lock

openapi: $(STAMP)
	$(PY) -m chatbox.cli.openapi_export docs/openapi.json

# AWS (infra/README.md). Need the AWS SAM CLI and a python3.12 (PYTHON312) first; not part of `make test`.
# The layers are built here, not by `sam build`: template.yaml's layers ship build/layers/<name>/ as they are.
PYTHON312 ?= python3.12
LAYER_DIR ?= build/layers
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34), arm64: every manylinux tag up to 2.34. With
# manylinux2014 alone pip falls back to older releases (psycopg-binary 3.2 for the 3.3 CI tested).
LAYER_PLATFORMS := manylinux_2_34_aarch64 manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64
# Lambda's unzipped limit is 250 MB (a function carries its layers plus its own handler folder); ours is 100 MB
# with bytecode, per function.
LAYER_MAX_MB ?= 100

sam-build: layer
	sam build --template-file template.yaml

# The layers infra/layers.toml declares (a base every function gets, FastAPI for the HTTP functions, the platform
# SDKs, mcp, alembic), each from requirements.lock (-c; infra/check_layer.py fails a drift) as CPython 3.12 wheels
# with python3.12 bytecode (unchecked-hash), into build/layers/<name>/python. The build prints each function's size
# (its layers plus its folder) and fails when one is over LAYER_MAX_MB.
layer: $(STAMP)
	$(PY) infra/build_layers.py "$(LAYER_DIR)" --python312 "$(PYTHON312)" --max-mb $(LAYER_MAX_MB) \
		$(addprefix --platform ,$(LAYER_PLATFORMS))

deploy:  # make deploy ENV=dev (infra/params/dev.json); SAM=samlocal for LocalStack
	infra/deploy.sh $(or $(ENV),dev)

coldstart: $(STAMP)
	$(PY) bench/coldstart.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
