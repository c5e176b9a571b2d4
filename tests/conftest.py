"""Shared fixtures: a real PostgreSQL for every test that needs one, never a mock.

``CEM_WAREHOUSE_URL`` set: tests create throw-away databases on that server.
Unset: one embedded server is started for the session in a private state folder.
Each test that asks for ``fresh_database`` gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# dbt docs sites built by tests, likewise.
if "CEM_DBT_DOCS_DIR" not in os.environ:
    os.environ["CEM_DBT_DOCS_DIR"] = tempfile.mkdtemp(prefix="cem_test_dbt_docs_")
    atexit.register(shutil.rmtree, os.environ["CEM_DBT_DOCS_DIR"], True)
# Airflow reads its home at import: give the test session a private one, never ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="cem_test_airflow_")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The dbt manifest the transform DAG is rendered from: parsed once per test session.
if "CEM_DBT_MANIFEST" not in os.environ:
    _manifest_dir = tempfile.mkdtemp(prefix="cem_test_manifest_")
    os.environ["CEM_DBT_MANIFEST"] = os.path.join(_manifest_dir, "manifest.json")
    atexit.register(shutil.rmtree, _manifest_dir, True)
# GX Data Docs built by tests go to a throw-away folder, never into the checkout's .cem;
# one per xdist worker, though the workers inherit the environment set here by the main
# process: GX rebuilds a suite's site from the validations it has just run, so two workers
# auditing the same suite removed each other's pages (a test looking for the failing
# value on its page then found the other worker's).
if os.environ.get("CEM_TEST_GX_DOCS_OWNER") != os.environ.get("PYTEST_XDIST_WORKER", "main"):
    os.environ["CEM_TEST_GX_DOCS_OWNER"] = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["CEM_GX_DOCS_DIR"] = tempfile.mkdtemp(
        prefix=f"cem_test_gx_docs_{os.environ['CEM_TEST_GX_DOCS_OWNER']}_"
    )
    atexit.register(shutil.rmtree, os.environ["CEM_GX_DOCS_DIR"], True)

from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation, configured_warehouse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server() -> Iterator[WarehouseLocation]:
    """A PostgreSQL server: the configured one, or an embedded one for this test session."""
    configured = configured_warehouse()
    if configured is not None:
        yield configured
        return
    from cem_warehouse.warehouse.embedded import EmbeddedWarehouse

    # Not under pytest's basetemp: another pytest session rotating old basetemps would delete it.
    state = Path(tempfile.mkdtemp(prefix="cem_test_pg_"))
    previous = os.environ.get("CEM_EMBEDDED_PORT")
    os.environ["CEM_EMBEDDED_PORT"] = str(free_port())
    embedded = EmbeddedWarehouse(state_dir=state)
    try:
        yield embedded.up()
    finally:
        embedded.down()
        shutil.rmtree(state, ignore_errors=True)
        if previous is None:
            os.environ.pop("CEM_EMBEDDED_PORT", None)
        else:
            os.environ["CEM_EMBEDDED_PORT"] = previous


def _create_database(server: WarehouseLocation, prefix: str) -> WarehouseLocation:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with connect(server.with_database("postgres"), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return server.with_database(name)


def _drop_database(server: WarehouseLocation, name: str) -> None:
    with connect(server.with_database("postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def fresh_database(server: WarehouseLocation) -> Iterator[WarehouseLocation]:
    """A new, empty database on the test server, dropped after the test."""
    location = _create_database(server, "cem_test")
    try:
        yield location
    finally:
        _drop_database(server, location.dbname)


@pytest.fixture
def database_factory(server: WarehouseLocation) -> Iterator:
    """Make as many fresh databases as a test needs (e.g. a warehouse and a source system)."""
    created: list[str] = []

    def make(prefix: str = "cem_test") -> WarehouseLocation:
        location = _create_database(server, prefix)
        created.append(location.dbname)
        return location

    yield make
    for name in created:
        _drop_database(server, name)


@pytest.fixture
def reported_statistics():
    """Read PostgreSQL's cumulative statistics (pg_stat_all_tables) once they hold what the
    test waits for: ``read(location, query, params, settled)`` returns the query's rows as
    soon as ``settled(rows)``, or the last rows read after 30 s, for the test to assert on.

    A backend adds its sessions' writes to those statistics when it is idle, at most once a
    second (else up to ten seconds later), or when its process exits, and a client's close
    returns before that exit. A test reading the counts just after a write can therefore
    miss it: CI once found a table's rows not yet counted after the build that wrote them
    had closed every connection.
    """

    def read(location: WarehouseLocation, query: str, params, settled) -> list[tuple]:
        deadline = time.monotonic() + 30
        with connect(location, autocommit=True) as conn:
            # In autocommit each read is a transaction of its own, so it sees fresh
            # statistics (a session keeps what it read only until its transaction ends).
            while True:
                rows = conn.execute(query, params).fetchall()
                if settled(rows) or time.monotonic() > deadline:
                    return rows
                time.sleep(0.2)

    return read


@pytest.fixture(scope="session")
def project_root() -> Path:
    from cem_warehouse.paths import project_root as root

    return root()
