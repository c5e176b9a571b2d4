# Production image for cem-warehouse: Airflow 3 + dbt + Great Expectations + the cem_warehouse package.
#
# Installs the same pinned set as `make install` (requirements.lock via uv, then the project with
# --no-deps). The apache/airflow image is not used: it carries its own constraint set, and ours is
# the one the tests run against. Layers go from least to most often changed: OS user, locked
# dependencies, project metadata + package, then DAGs / dbt project / expectations.
#
#   docker build -t cem-warehouse .
#   docker compose up -d --build          (see docs/operations/docker-compose.md)

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ARG UV_VERSION=0.13.9
ARG AIRFLOW_UID=50000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    AIRFLOW_HOME=/opt/airflow \
    CEM_PROJECT_DIR=/opt/cem \
    CEM_HOME=/opt/airflow/cem \
    DBT_TARGET_PATH=/opt/airflow/cem/dbt/target \
    DBT_LOG_PATH=/opt/airflow/cem/dbt/logs \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/cem/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/cem/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=false \
    DO_NOT_TRACK=1 \
    CEM_DBT_MANIFEST=/opt/cem/dbt_manifest/manifest.json

# Non-root runtime user. Group 0 (like the official Airflow image) so that an arbitrary
# `user: "<uid>:0"` in docker-compose can still write AIRFLOW_HOME.
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /home/airflow --create-home \
        --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/cem /opt/airflow/auth /opt/cem \
    && chown -R "${AIRFLOW_UID}:0" /opt/airflow /opt/cem \
    && chmod -R g+rwX /opt/airflow /opt/cem

# Dependency layer: rebuilt only when the lock changes. Compiled to bytecode here: with
# PYTHONDONTWRITEBYTECODE=1 nothing is cached at run time, and every task process would compile
# Airflow, dbt and GX from source again.
COPY requirements.lock /opt/cem/requirements.lock
RUN pip install "uv==${UV_VERSION}" \
    && uv pip install --system --compile-bytecode -r /opt/cem/requirements.lock

WORKDIR /opt/cem

# Project package. Editable, like the Makefile, so the plugins/ bind mount in docker-compose
# is the code that runs. setuptools comes from the lock, hence --no-build-isolation.
COPY --chown=${AIRFLOW_UID}:0 pyproject.toml README.md ./
COPY --chown=${AIRFLOW_UID}:0 plugins/ ./plugins/
RUN uv pip install --system --no-deps --no-build-isolation -e .

# Configuration-like content last: changes most often, cheapest layers.
COPY --chown=${AIRFLOW_UID}:0 dags/ ./dags/
COPY --chown=${AIRFLOW_UID}:0 dbt_project/ ./dbt_project/
COPY --chown=${AIRFLOW_UID}:0 expectations/ ./expectations/
# The transform DAG is rendered from the dbt manifest: parse the project into the image.
# (dbt models changed in the mounted dbt_project/ need `docker compose build` to re-parse.)
RUN mkdir -p /opt/cem/dbt_manifest && python -m cem_warehouse.transform.manifest \
    && chown -R ${AIRFLOW_UID}:0 /opt/cem/dbt_manifest "${CEM_HOME}"

USER airflow
WORKDIR /opt/airflow

# Each docker-compose service names its own `airflow <component>` command.
CMD ["airflow", "version"]
