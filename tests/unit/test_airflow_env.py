"""The local Airflow environment: one warehouse connection, project folders, no examples."""

import json

from cem_warehouse.orchestration.airflow_env import airflow_environment
from cem_warehouse.warehouse.settings import parse_warehouse_url


def test_environment_points_airflow_at_the_project_and_the_warehouse(
    tmp_path, monkeypatch, project_root
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    location = parse_warehouse_url("postgresql://alice:p%40ss@db:6543/cx?sslmode=require")
    env = airflow_environment(location)

    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(project_root / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(project_root / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    )
    conn = json.loads(env["AIRFLOW_CONN_CEM_WAREHOUSE"])
    assert conn == {
        "conn_type": "postgres",
        "host": "db",
        "port": 6543,
        "login": "alice",
        "password": "p@ss",
        "schema": "cx",
        "extra": {"sslmode": "require"},
    }


def test_local_secrets_are_generated_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    location = parse_warehouse_url("postgresql://u@h/d")
    first = airflow_environment(location)
    second = airflow_environment(location)
    assert first["AIRFLOW__API_AUTH__JWT_SECRET"] == second["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    assert (tmp_path / "airflow" / "local_secrets.json").stat().st_mode & 0o077 == 0


def test_configured_metadata_database_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    monkeypatch.setenv(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://af@meta/airflow"
    )
    env = airflow_environment(parse_warehouse_url("postgresql://u@h/d"))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://af@meta/airflow"
