"""Where each source lives: Airflow-style URIs and JSON, and the local stand-in defaults."""

from __future__ import annotations

import stat

import pytest

from cem_warehouse.errors import ConfigurationError
from cem_warehouse.sources import connections


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    for conn_id in (
        connections.CRM_CONN_ID,
        connections.SALES_CONN_ID,
        connections.SURVEYS_CONN_ID,
    ):
        monkeypatch.delenv(connections.env_var(conn_id), raising=False)
    monkeypatch.delenv(connections.CRM_PORT_ENV, raising=False)
    return tmp_path


def test_env_var_names_follow_airflow() -> None:
    assert connections.env_var("cem_source_sales") == "AIRFLOW_CONN_CEM_SOURCE_SALES"


def test_sales_uri_points_at_a_real_database(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEM_SOURCE_SALES",
        "postgresql://shop:s%40cret@db.internal:6543/shop?sslmode=require",
    )
    conn = connections.sales_connection()
    location = conn.postgres()
    assert (
        location.host,
        location.port,
        location.user,
        location.password,
        location.dbname,
        location.sslmode,
    ) == ("db.internal", 6543, "shop", "s@cret", "shop", "require")
    assert not conn.is_default


def test_crm_json_form_with_token_in_extra(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CEM_SOURCE_CRM",
        '{"conn_type": "https", "host": "crm.example.com", "extra": {"token": "abc"}}',
    )
    conn = connections.crm_connection()
    assert conn.base_url == "https://crm.example.com"
    assert conn.token == "abc"


def test_crm_uri_token_is_the_password(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CEM_SOURCE_CRM", "http://:t0ken@10.0.0.5:9000")
    conn = connections.crm_connection()
    assert (conn.base_url, conn.token) == ("http://10.0.0.5:9000", "t0ken")


@pytest.mark.parametrize(
    "value, path",
    [
        ("fs://?path=s3%3A%2F%2Fbucket%2Fsurveys", "s3://bucket/surveys"),
        ('{"conn_type": "fs", "extra": {"path": "gs://b/p"}}', "gs://b/p"),
        ("s3://bucket/landing/surveys", "s3://bucket/landing/surveys"),
        ("memory://landing", "memory://landing"),
    ],
)
def test_survey_landing_is_any_fsspec_url(monkeypatch, value: str, path: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CEM_SOURCE_SURVEYS", value)
    assert connections.surveys_connection().path == path


def test_defaults_are_the_local_stand_ins(private_state) -> None:
    crm = connections.crm_connection()
    assert crm.is_default and crm.base_url == "http://127.0.0.1:8765"
    assert connections.surveys_connection().path == str(private_state / "landing" / "surveys")


def test_crm_token_is_generated_once_private(private_state) -> None:
    first = connections.crm_token()
    assert len(first) >= 24 and connections.crm_token() == first
    mode = connections.crm_token_file().stat().st_mode
    assert not mode & (stat.S_IRGRP | stat.S_IROTH)
    assert str(connections.crm_token_file()).startswith(str(private_state))


@pytest.mark.parametrize("value", ["", "   ", "{not json", "no-scheme-here"])
def test_malformed_values_raise_one_clear_error(monkeypatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CEM_SOURCE_CRM", value)
    if not value.strip():
        # an empty variable means "unset": the stand-in is used
        assert connections.crm_connection().is_default
        return
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_CEM_SOURCE_CRM"):
        connections.crm_connection()


def test_sales_uri_without_database_is_rejected(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CEM_SOURCE_SALES", "postgresql://u@host:5432")
    with pytest.raises(ConfigurationError, match="database"):
        connections.sales_connection().postgres()


def test_bad_crm_port_setting(monkeypatch) -> None:
    monkeypatch.setenv(connections.CRM_PORT_ENV, "eighty")
    with pytest.raises(ConfigurationError, match="CEM_CRM_PORT"):
        connections.crm_connection()


def test_sources_package_never_imports_airflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cem_warehouse.sources.connections, cem_warehouse.sources.cli, "
        "cem_warehouse.sources.generator.run, cem_warehouse.sources.crm_server; "
        "print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
