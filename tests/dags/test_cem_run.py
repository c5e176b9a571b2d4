"""`cem run` drives the real DAGs through Airflow, and the Airflow API lists them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
def project_env(database_factory, tmp_path):
    """A private state folder (Airflow home, stand-ins) and a warehouse and sales database of its own."""
    warehouse, sales = database_factory("cem_test_wh"), database_factory("cem_test_sales")
    return {
        "CEM_HOME": str(tmp_path),
        "CEM_WAREHOUSE_URL": warehouse.url,
        "AIRFLOW_CONN_CEM_SOURCE_SALES": sales.url,
        "CEM_CRM_PORT": str(_free_port()),
    }


def test_cem_run_loads_all_sources_and_builds_then_names_the_failed_task(project_env, tmp_path):
    generated = _cem("generate", "--customers", "200", "--seed", "21", env=project_env)
    assert generated.returncode == 0, generated.stderr[-2000:]

    first = _cem("run", "--logical-date", "2026-11-01", env=project_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (
        "ingest_crm -> ingest_sales -> ingest_surveys -> transform_cx_marts"
        in first.stderr.replace("\n", " ")
    )
    warehouse = project_env["CEM_WAREHOUSE_URL"]
    with connect(warehouse) as conn:
        for table in ("customers", "orders", "order_lines", "survey_responses", "support_cases"):
            assert conn.execute(f"select count(*) from raw.{table}").fetchone()[0] > 0, table
        responses = conn.execute(
            "select count(*) from raw.survey_responses where ltr is not null"
        ).fetchone()[0]
        assert conn.execute("select sum(responses) from marts.fct_nps_monthly").fetchone() == (
            responses,
        )
        before = conn.execute("select count(*) from raw.survey_responses").fetchone()[0]
        # Built aside, audited, swapped in once; as of the latest data (the data interval end
        # is later than anything generated).
        ((as_of, resolved_from, latest),) = conn.execute(
            "select as_of_date, resolved_from, latest_data_date from staging.int_as_of_date"
        ).fetchall()
        assert as_of == latest and resolved_from.startswith("latest data"), resolved_from
        assert conn.execute("select as_of_date from ops.mart_publications").fetchall() == [(as_of,)]
    # The dbt docs of the published marts, with the dashboards, are where the README says.
    docs = Path(os.environ["CEM_DBT_DOCS_DIR"]) / "index.html"
    assert "fct_nps_monthly" in docs.read_text() and "cx_loyalty_dashboard" in docs.read_text()
    # The semantic layer's headline metrics, on those marts.
    metrics = _cem("metrics", env=project_env)
    assert metrics.returncode == 0, metrics.stderr[-2000:]
    assert "Net Promoter Score" in metrics.stdout and "Monthly churn rate" in metrics.stdout
    # Split by a dimension (as the README shows): the headline metrics that have it.
    by_category = _cem("metrics", "--by", "loyalty_category", env=project_env)
    assert by_category.returncode == 0, by_category.stderr[-2000:]
    assert "Referral rate" in by_category.stdout and "promoter" in by_category.stdout

    # An export whose rows are all out of range: the run must fail and say where.
    bad_dir = tmp_path / "landing" / "surveys" / "responses" / "export_date=2026-11-02"
    bad_dir.mkdir(parents=True)
    (bad_dir / "broken.csv").write_text(
        "response_id,touchpoint,ltr,responded_at\n1,relationship,11,2026-11-01T10:00:00Z\n"
    )
    second = _cem("run", "--logical-date", "2026-11-02", env=project_env)
    assert second.returncode == 2
    last = second.stderr.strip().splitlines()[-1]
    assert "DAG ingest_surveys failed at task load_surveys" in last
    with connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.survey_responses").fetchone()[0] == before
        blocked = conn.execute(
            "select message from ops.load_batches where status = 'blocked'"
        ).fetchone()[0]
    assert "broken.csv" in blocked


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
    assert {"ingest_crm", "ingest_sales", "ingest_surveys", "transform_cx_marts"} <= dag_ids
