"""The environment every local Airflow process gets: home, DAGs, metadata DB, connections.

Production (docker-compose.yml) sets the same variables its own way; nothing here is read
at DAG-parse time.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.warehouse.settings import WarehouseLocation

WAREHOUSE_CONN_ID = "cem_warehouse"


def airflow_home() -> Path:
    return paths.state_dir() / "airflow"


def connection_env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def connection_json(location: WarehouseLocation) -> str:
    """An Airflow connection in JSON form (unambiguous, unlike URI-encoded extras)."""
    conn = {
        "conn_type": "postgres",
        "host": location.host,
        "port": location.port,
        "login": location.user,
        "password": location.password,
        "schema": location.dbname,
    }
    if location.sslmode:
        conn["extra"] = {"sslmode": location.sslmode}
    return json.dumps(conn)


def _local_secrets(home: Path) -> dict[str, str]:
    """Secrets shared by the local api-server, scheduler and workers, generated once."""
    secret_file = home / "local_secrets.json"
    if secret_file.exists():
        return json.loads(secret_file.read_text())
    home.mkdir(parents=True, exist_ok=True)
    from cryptography.fernet import Fernet

    values = {"jwt_secret": secrets.token_urlsafe(32), "fernet_key": Fernet.generate_key().decode()}
    secret_file.write_text(json.dumps(values))
    secret_file.chmod(0o600)
    return values


def airflow_environment(location: WarehouseLocation, *, api_port: int = 8080) -> dict[str, str]:
    """Variables for a local Airflow: SQLite metadata, project DAGs, the warehouse connection."""
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    local = _local_secrets(home)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.dags_dir()),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.plugins_dir()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": local["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": local["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # No usage telemetry leaves the machine (Cosmos would post to its analytics endpoint).
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_NO_ANALYTICS": "true",
        # The plugins folder is on sys.path for Airflow; make it so for every child too.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(paths.plugins_dir()), os.environ.get("PYTHONPATH")])
        ),
        connection_env_name(WAREHOUSE_CONN_ID): connection_json(location),
        "CEM_PROJECT_DIR": str(paths.project_root()),
        "CEM_HOME": str(paths.state_dir()),
    }
    # An operator who configured a metadata database keeps it; otherwise SQLite in AIRFLOW_HOME.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = os.environ.get(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}"
    )
    return env


def merged_environment(location: WarehouseLocation, **kwargs) -> dict[str, str]:
    """The current environment with the Airflow variables laid over it."""
    return {**os.environ, **airflow_environment(location, **kwargs)}
