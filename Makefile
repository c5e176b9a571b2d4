# The two set-up commands are `make demo` and `make test`; everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format airflow bench lock clean down

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cem-warehouse needs Python 3.11 or newer; set PYTHON=python3.11 (or newer) and retry.")'
	$(PYTHON) -m venv $(VENV)

# Re-installs only when the lock, the project metadata or this recipe changes.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE=1 is set (this machine, CI, our Dockerfile),
# Python never caches what it compiles, so every process (each dbt build, each Airflow task)
# compiled dbt, Airflow and GX from source again: 2-5 s per dbt start (docs/operations/marts.md).
$(STAMP): $(BIN)/python requirements.lock pyproject.toml Makefile
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/cem demo

# Two workers, a test file each at a time (module fixtures stay in one worker): most tests
# wait on PostgreSQL, dbt or Airflow processes, so two files share two cores well.
PYTEST_WORKERS := --numprocesses 2 --dist loadfile

test: install
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

test-fast: install
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Airflow UI (api-server) + scheduler + dag-processor + triggerer on localhost, with the project's DAGs.
airflow: install
	$(BIN)/cem airflow

bench: install
	$(BIN)/cem bench ingest --rows 1000000

lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip compile --python-version 3.11 --no-header requirements.in -o requirements.lock

down:
	-$(BIN)/cem warehouse down

clean: down
	rm -rf $(VENV) dbt_project/target dbt_project/logs
