"""Where each source system lives: one Airflow-style connection per source, with local defaults.

=====================  ===========================================  =================================
connection id          set ``AIRFLOW_CONN_<ID upper>`` to           default (the local stand-in)
=====================  ===========================================  =================================
``cem_source_crm``     ``http://:TOKEN@host:port`` (or https, JSON)  ``cem sources serve`` on 127.0.0.1
``cem_source_sales``   ``postgresql://user:pw@host:port/db``         database ``cem_source_sales`` on
                                                                     the warehouse's server
``cem_source_surveys`` ``fs://?path=s3://bucket/prefix`` or JSON     ``<state>/landing/surveys``
                       ``{"conn_type": "fs", "extra": {"path": ...}}``
=====================  ===========================================  =================================

The value may be an Airflow connection URI or Airflow's JSON form. This module never
imports Airflow: Airflow reads the same environment variables itself, so the DAGs and the
``cem`` command agree on where the sources are.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from cem_warehouse import paths
from cem_warehouse.errors import ConfigurationError
from cem_warehouse.warehouse.settings import WarehouseLocation

CRM_CONN_ID = "cem_source_crm"
SALES_CONN_ID = "cem_source_sales"
SURVEYS_CONN_ID = "cem_source_surveys"
SALES_STAND_IN_DATABASE = "cem_source_sales"
DEFAULT_CRM_PORT = 8765
CRM_PORT_ENV = "CEM_CRM_PORT"


def env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@dataclass(frozen=True)
class SourceConnection:
    """The fields of an Airflow connection that the source clients use."""

    conn_id: str
    conn_type: str
    host: str = ""
    port: int | None = None
    login: str = ""
    password: str = ""
    schema: str = ""
    extra: dict = field(default_factory=dict)
    is_default: bool = False

    @property
    def base_url(self) -> str:
        """HTTP base URL (CRM); ``extra.base_url`` wins when set."""
        if self.extra.get("base_url"):
            return str(self.extra["base_url"]).rstrip("/")
        scheme = "https" if self.conn_type == "https" or self.schema == "https" else "http"
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{self.host}{port}"

    @property
    def token(self) -> str:
        """Bearer token (CRM): the password, or ``extra.token``."""
        return str(self.extra.get("token") or self.password)

    @property
    def path(self) -> str:
        """Landing location (surveys): a local folder or any fsspec URL."""
        return str(self.extra.get("path") or self.host)

    def postgres(self) -> WarehouseLocation:
        """PostgreSQL location (sales)."""
        if not self.host or not self.schema:
            raise ConfigurationError(
                f"{env_var(self.conn_id)} must name a host and a database: postgresql://user:pw@host:5432/dbname."
            )
        return WarehouseLocation(
            self.host,
            self.port or 5432,
            self.login or "postgres",
            self.password,
            self.schema,
            self.extra.get("sslmode"),
        )


def parse_connection(conn_id: str, value: str) -> SourceConnection:
    """Parse an Airflow connection URI or JSON document into a :class:`SourceConnection`."""
    value = value.strip()
    name = env_var(conn_id)
    if not value:
        raise ConfigurationError(
            f"{name} is empty: set it to a connection URI or unset it to use the local stand-in."
        )
    if value.startswith("{"):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{name} is not valid JSON ({exc.msg}): fix the value or use a URI."
            ) from None
        extra = doc.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return SourceConnection(
            conn_id,
            str(doc.get("conn_type", "")),
            str(doc.get("host") or ""),
            int(doc["port"]) if doc.get("port") else None,
            str(doc.get("login") or ""),
            str(doc.get("password") or ""),
            str(doc.get("schema") or ""),
            dict(extra),
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a valid connection URI ({exc}).") from None
    if not parts.scheme:
        raise ConfigurationError(
            f"{name} has no scheme: expected e.g. postgresql://..., http://..., fs://?path=..."
        )
    conn_type = {"postgres": "postgres", "postgresql": "postgres"}.get(
        parts.scheme, parts.scheme.replace("-", "_")
    )
    extra = {}
    for key, val in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            extra.update(json.loads(val))
        else:
            extra[key] = val
    if conn_type not in ("postgres", "http", "https", "fs"):
        # anything else (s3://, gs://, file://, memory://) is taken as the fsspec URL of the landing folder
        return SourceConnection(conn_id, "fs", extra={"path": value})
    return SourceConnection(
        conn_id,
        conn_type,
        unquote(parts.hostname or ""),
        port,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        unquote(parts.path.lstrip("/")),
        extra,
    )


def _configured(conn_id: str) -> SourceConnection | None:
    raw = os.environ.get(env_var(conn_id))
    return parse_connection(conn_id, raw) if raw and raw.strip() else None


# --------------------------------------------------------------------------- defaults
def sources_state_dir() -> Path:
    return paths.state_dir() / "sources"


def crm_store_dir() -> Path:
    """Where the CRM stand-in keeps its records (Parquet), served by ``cem sources serve``."""
    return sources_state_dir() / "crm_store"


def crm_token_file() -> Path:
    return sources_state_dir() / "crm_token"


def crm_token() -> str:
    """The stand-in CRM's bearer token, generated once into the state folder (never in git)."""
    path = crm_token_file()
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def crm_port() -> int:
    raw = os.environ.get(CRM_PORT_ENV)
    if not raw:
        return DEFAULT_CRM_PORT
    if not raw.isdigit():
        raise ConfigurationError(
            f"{CRM_PORT_ENV}={raw!r} is not a port number: set it to e.g. {DEFAULT_CRM_PORT}."
        )
    return int(raw)


def crm_connection() -> SourceConnection:
    configured = _configured(CRM_CONN_ID)
    if configured is not None:
        return configured
    return SourceConnection(
        CRM_CONN_ID, "http", "127.0.0.1", crm_port(), password=crm_token(), is_default=True
    )


def sales_connection(ensure: bool = False) -> SourceConnection:
    """The sales database; by default ``cem_source_sales`` on the warehouse's server.

    ``ensure=True`` starts the embedded warehouse if needed and creates the database.
    """
    configured = _configured(SALES_CONN_ID)
    if configured is not None:
        return configured
    if ensure:
        from cem_warehouse.warehouse.embedded import ensure_warehouse

        server = ensure_warehouse()
    else:
        from cem_warehouse.warehouse.settings import warehouse_location

        server = warehouse_location()
    location = server.with_database(SALES_STAND_IN_DATABASE)
    if ensure:
        ensure_database(location)
    return SourceConnection(
        SALES_CONN_ID,
        "postgres",
        location.host,
        location.port,
        location.user,
        location.password,
        location.dbname,
        {"sslmode": location.sslmode} if location.sslmode else {},
        is_default=True,
    )


def ensure_database(location: WarehouseLocation) -> None:
    """Create the database if it does not exist (stand-ins only)."""
    from cem_warehouse.warehouse.connection import connect

    with connect(location.with_database("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (location.dbname,)
        ).fetchone()
        if not exists:
            conn.execute(f'create database "{location.dbname}"')


def surveys_connection() -> SourceConnection:
    configured = _configured(SURVEYS_CONN_ID)
    if configured is not None:
        return configured
    return SourceConnection(
        SURVEYS_CONN_ID, "fs", extra={"path": str(paths.landing_dir() / "surveys")}, is_default=True
    )
