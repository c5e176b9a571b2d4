"""The `cem generate` and `cem sources` commands as a user runs them."""

from __future__ import annotations

import json

import pytest

from cem_warehouse.cli import build_parser, main


@pytest.fixture
def env(fresh_database, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_CEM_SOURCE_SALES", fresh_database.url)
    monkeypatch.delenv("AIRFLOW_CONN_CEM_SOURCE_SURVEYS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CEM_SOURCE_CRM", raising=False)
    return tmp_path


def test_generate_benchmark_prints_wall_time_and_peak_memory(env, capsys) -> None:
    assert main(["generate", "--customers", "1500", "--seed", "2", "--benchmark"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["customers"] == 1500 and report["day"] == 0
    assert report["wall_seconds"] > 0 and report["peak_memory_mb"] > 10
    assert report["rows"]["sales.order_lines"] > 10_000
    assert (env / "landing" / "surveys" / "responses").is_dir()
    assert (env / "sources" / "crm_store" / "customers").is_dir()
    assert main(["generate", "--next-day"]) == 0
    assert "day 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--bad-rate", "2"], "--bad-rate must be between 0 and 1"),
        (["generate", "--customers", "0"], "--customers must be at least 1"),
        (["generate", "--next-day"], "run `cem generate --customers N --seed S` first"),
    ],
)
def test_user_errors_are_one_clear_line(env, capsys, argv, message) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sources_commands_are_registered(env, capsys) -> None:
    args = build_parser().parse_args(["sources", "serve", "--port", "0", "--faults", "none"])
    assert args.port == 0 and callable(args.handler)
    assert main(["sources", "show"]) == 0
    out = capsys.readouterr().out
    assert "cem_source_crm" in out and "AIRFLOW_CONN_CEM_SOURCE_SALES" in out and str(env) in out
