"""dbt keeps each thread's connection between nodes, and each node still starts from a clean
session (cem_warehouse.transform.dbt_connections), on a real dbt run against PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.connection import connect


def _project(models: Path) -> None:
    """Two models on one thread: the first leaves a temporary table and a session setting
    behind, the second would fail on the first's table and reads the setting."""
    (models / "first_node.sql").write_text(
        "{{ config(materialized='table', pre_hook=["
        '"create temporary table left_behind (x int)", "set work_mem = \'77MB\'"]) }}\n'
        "select pg_backend_pid() as backend_pid\n"
    )
    (models / "second_node.sql").write_text(
        "{{ config(materialized='table', pre_hook=\"create temporary table left_behind (x int)\") }}\n"
        "select pg_backend_pid() as backend_pid, current_setting('work_mem') as work_mem\n"
        "from {{ ref('first_node') }}\n"
    )


def test_the_next_node_reuses_the_connection_from_a_clean_session(
    fresh_database, small_dbt_project, monkeypatch
):
    # run_dbt as every build calls it, on a project of its own
    _project(small_dbt_project("connections_check"))
    monkeypatch.setenv("CEM_DBT_THREADS", "1")
    # The second node's pre-hook creates the table the first one left: it fails unless the
    # first node's temporary tables were dropped when it released the connection.
    run_dbt(fresh_database, ["run"])  # raises with dbt's summary when a model fails
    with connect(fresh_database) as conn:
        default_work_mem = conn.execute("show work_mem").fetchone()[0]
        first_pid = conn.execute("select backend_pid from public.first_node").fetchone()[0]
        second_pid, work_mem = conn.execute(
            "select backend_pid, work_mem from public.second_node"
        ).fetchone()
    assert second_pid == first_pid, "the second node opened a connection of its own"
    assert work_mem == default_work_mem, "a session setting of the first node reached the second"
    # dbt still closes its connections when the run ends.
    deadline = time.monotonic() + 10
    with connect(fresh_database, autocommit=True) as conn:
        while conn.execute(
            "select count(*) from pg_stat_activity where pid = %s", (first_pid,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "dbt's connection outlived the run"
            time.sleep(0.1)
