"""`cem run` drives the real DAGs through Airflow, and the Airflow API lists them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cem_warehouse.sources.thin_slice import write_survey_responses
from cem_warehouse.warehouse.connection import connect

pytestmark = pytest.mark.slow


def _cem(*args: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cem_warehouse.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def project_env(fresh_database, tmp_path):
    """A private state folder (Airflow home, landing files) and a warehouse of its own."""
    return {"CEM_HOME": str(tmp_path), "CEM_WAREHOUSE_URL": fresh_database.url}


def test_cem_run_loads_and_builds_then_names_the_failed_task(project_env, fresh_database, tmp_path):
    landing = tmp_path / "landing" / "surveys"
    write_survey_responses(landing / "2026-10.csv", responses=400, seed=21)

    first = _cem("run", "--logical-date", "2026-11-01", env=project_env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "ingest_surveys -> transform_cx_marts" in first.stderr
    with connect(fresh_database) as conn:
        assert conn.execute("select count(*) from raw.survey_responses").fetchone() == (400,)
        assert conn.execute("select sum(responses) from marts.fct_nps_monthly").fetchone() == (400,)

    # A file with an out-of-range answer: the run must fail and say where.
    bad = landing / "2026-11.csv"
    write_survey_responses(bad, responses=10, seed=22)
    lines = bad.read_text().splitlines()
    fields = lines[1].split(",")
    fields[4] = "11"
    lines[1] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")

    second = _cem("run", "--logical-date", "2026-11-02", env=project_env)
    assert second.returncode == 2
    last = second.stderr.strip().splitlines()[-1]
    assert "DAG ingest_surveys failed at task load_survey_responses" in last
    with connect(fresh_database) as conn:
        assert conn.execute("select count(*) from raw.survey_responses").fetchone() == (400,)


def test_cem_run_rejects_a_bad_date_in_one_line(project_env):
    result = _cem("run", "--as-of", "yesterday", env=project_env)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "cem: error: --as-of 'yesterday' is not a date: use YYYY-MM-DD, e.g. 2026-11-01."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_airflow_api_server_lists_the_project_dags(fresh_database, tmp_path, monkeypatch):
    """What `make airflow` starts: the api-server and dag-processor, queried over REST."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    from cem_warehouse.orchestration.airflow_env import merged_environment
    from cem_warehouse.orchestration.local_airflow import start_components, stop_components
    from cem_warehouse.orchestration.runner import ensure_metadata_db

    port = _free_port()
    env = merged_environment(fresh_database, api_port=port)
    ensure_metadata_db(env, tmp_path / "migrate.log")
    processes = start_components(env, ("api-server", "dag-processor"))
    dag_ids: set[str] = set()
    try:
        deadline = time.monotonic() + 180
        while (
            time.monotonic() < deadline and not {"ingest_surveys", "transform_cx_marts"} <= dag_ids
        ):
            assert all(p.poll() is None for p in processes), "an Airflow component exited"
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v2/dags", timeout=5
                ) as response:
                    dag_ids = {dag["dag_id"] for dag in json.loads(response.read())["dags"]}
            except OSError:
                pass
            time.sleep(2)
    finally:
        stop_components(processes)
    assert {"ingest_surveys", "transform_cx_marts"} <= dag_ids
