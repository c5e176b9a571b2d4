"""The embedded warehouse a new user gets: lifecycle, persistence, and bad situations."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cem_warehouse.errors import CemError, WarehouseUnavailableError
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.embedded import EmbeddedWarehouse, binary_major_version
from cem_warehouse.warehouse.settings import configured_warehouse


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_EMBEDDED_PORT", str(_free_port()))
    warehouse = EmbeddedWarehouse(state_dir=tmp_path / "state")
    yield warehouse
    warehouse.down()


def _cem(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cem_warehouse.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_status_down_and_data_survives_a_restart(embedded):
    location = embedded.up()
    assert embedded.status().running
    with connect(location, autocommit=True) as conn:
        conn.execute("create table kept (answer int)")
        conn.execute("insert into kept values (42)")
    assert embedded.up() == location, "a second `up` is a no-op"

    assert embedded.down() is True
    assert not embedded.status().running
    assert embedded.down() is False

    restarted = embedded.up()
    with connect(restarted) as conn:
        assert conn.execute("select answer from kept").fetchone() == (42,)


def test_server_listens_on_loopback_with_a_generated_password(embedded):
    location = embedded.up()
    assert location.host == "127.0.0.1"
    assert len(location.password) >= 24
    assert (embedded.state_file.stat().st_mode & 0o077) == 0, "password file must be private"
    with pytest.raises(WarehouseUnavailableError, match="wrong or missing password"):
        connect(
            location.__class__(
                location.host, location.port, location.user, "wrong", location.dbname
            )
        )


def test_port_already_taken_is_one_clear_line(embedded, monkeypatch):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        monkeypatch.setenv("CEM_EMBEDDED_PORT", str(blocker.getsockname()[1]))
        with pytest.raises(CemError, match="already in use.*CEM_EMBEDDED_PORT"):
            embedded.up()
    assert not embedded.data_dir.exists() or not any(embedded.data_dir.iterdir())


def test_data_dir_from_another_postgres_version_is_refused_and_kept(embedded):
    embedded.data_dir.mkdir(parents=True)
    (embedded.data_dir / "PG_VERSION").write_text("9\n")
    (embedded.data_dir / "precious").write_text("old data")
    with pytest.raises(
        CemError,
        match=f"PostgreSQL 9 but the embedded server is PostgreSQL {binary_major_version()}",
    ):
        embedded.up()
    assert (embedded.data_dir / "precious").read_text() == "old data"


def test_folder_that_is_not_a_data_dir_is_refused_and_kept(embedded):
    embedded.data_dir.mkdir(parents=True)
    (embedded.data_dir / "notes.txt").write_text("mine")
    with pytest.raises(CemError, match="not a PostgreSQL data directory"):
        embedded.up()
    assert (embedded.data_dir / "notes.txt").exists()


def test_stale_lock_file_after_a_crash_is_set_aside(embedded):
    embedded.up()
    embedded.down()
    # A crash leaves postmaster.pid naming a process that no longer exists.
    pid_file = embedded.data_dir / "postmaster.pid"
    pid_file.write_text("999999\n" + str(embedded.data_dir) + "\n0\n5432\n\n\n\n")
    location = embedded.up()
    with connect(location) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert (embedded.data_dir / "postmaster.pid.stale").exists()


def test_missing_password_file_with_existing_data_is_explained(embedded):
    embedded.up()
    embedded.down()
    embedded.state_file.unlink()
    with pytest.raises(CemError, match="holds its generated password"):
        embedded.up()
    assert (embedded.data_dir / "PG_VERSION").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://u@127.0.0.1:1/d", "Cannot reach PostgreSQL at 127.0.0.1:1"),
        ("not-a-url", "must start with postgresql://"),
        ("postgresql://u@127.0.0.1:70000/d", "not a valid PostgreSQL URL"),
    ],
)
def test_cli_reports_bad_warehouse_settings_in_one_line(url, fragment):
    result = _cem("warehouse", "status", env={"CEM_WAREHOUSE_URL": url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_reports_wrong_credentials_in_one_line(embedded):
    location = embedded.up()
    bad = f"postgresql://{location.user}:nope@127.0.0.1:{location.port}/{location.dbname}"
    result = _cem("warehouse", "status", env={"CEM_WAREHOUSE_URL": bad})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "wrong or missing password" in result.stderr


def test_cli_lifecycle_on_the_embedded_server(tmp_path):
    env = {
        "CEM_HOME": str(tmp_path),
        "CEM_EMBEDDED_PORT": str(_free_port()),
        "CEM_WAREHOUSE_URL": "",
    }
    try:
        assert _cem("warehouse", "status", env=env).returncode == 3
        up = _cem("warehouse", "up", env=env)
        assert up.returncode == 0, up.stderr
        url = _cem("warehouse", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://cem:***@127.0.0.1:")
        full = _cem("warehouse", "url", "--show-password", env=env).stdout.strip()
        with connect(full) as conn:
            schemas = {
                r[0] for r in conn.execute("select schema_name from information_schema.schemata")
            }
        assert {"raw", "quarantine", "staging", "marts", "ops"} <= schemas
        assert "running" in _cem("warehouse", "status", env=env).stdout
    finally:
        assert _cem("warehouse", "down", env=env).returncode == 0
    assert "stopped" in _cem("warehouse", "status", env=env).stdout


def test_configured_server_is_used_as_is(server, monkeypatch):
    """With CEM_WAREHOUSE_URL set, nothing embedded is started and the URL is the warehouse."""
    monkeypatch.setenv("CEM_WAREHOUSE_URL", server.url)
    assert configured_warehouse() == server
