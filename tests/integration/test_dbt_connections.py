"""dbt keeps each thread's connection between nodes, and each node still starts from a clean
session (cem_warehouse.transform.dbt_connections), on a real dbt run against PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation


def _project(root: Path, location: WarehouseLocation) -> None:
    """Two models on one thread: the first leaves a temporary table and a session setting
    behind, the second would fail on the first's table and reads the setting."""
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        textwrap.dedent(
            """
            name: connections_check
            version: "1.0"
            config-version: 2
            profile: connections_check
            model-paths: ["models"]
            flags:
              send_anonymous_usage_stats: false
            """
        )
    )
    (root / "profiles.yml").write_text(
        textwrap.dedent(
            """
            connections_check:
              target: check
              outputs:
                check:
                  type: postgres
                  host: "{{ env_var('CHECK_HOST') }}"
                  port: "{{ env_var('CHECK_PORT') | int }}"
                  user: "{{ env_var('CHECK_USER') }}"
                  password: "{{ env_var('CHECK_PASSWORD', '') }}"
                  dbname: "{{ env_var('CHECK_DBNAME') }}"
                  schema: public
                  threads: 1
            """
        )
    )
    (root / "models" / "first_node.sql").write_text(
        "{{ config(materialized='table', pre_hook=["
        '"create temporary table left_behind (x int)", "set work_mem = \'77MB\'"]) }}\n'
        "select pg_backend_pid() as backend_pid\n"
    )
    (root / "models" / "second_node.sql").write_text(
        "{{ config(materialized='table', pre_hook=\"create temporary table left_behind (x int)\") }}\n"
        "select pg_backend_pid() as backend_pid, current_setting('work_mem') as work_mem\n"
        "from {{ ref('first_node') }}\n"
    )


def test_the_next_node_reuses_the_connection_from_a_clean_session(fresh_database, tmp_path):
    project = tmp_path / "project"
    _project(project, fresh_database)
    env = {
        **os.environ,
        "CHECK_HOST": fresh_database.host,
        "CHECK_PORT": str(fresh_database.port),
        "CHECK_USER": fresh_database.user,
        "CHECK_PASSWORD": fresh_database.password,
        "CHECK_DBNAME": fresh_database.dbname,
        "CEM_DBT_THREADS": "1",
        "CEM_HOME": str(tmp_path / "state"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "cem_warehouse.transform.dbt_schedule",
            "run",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    # The second node's pre-hook creates the table the first one left: it fails unless the
    # first node's temporary tables were dropped when it released the connection.
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
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
