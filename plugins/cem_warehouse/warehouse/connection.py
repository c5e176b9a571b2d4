"""Connections to the warehouse with errors a person can act on."""

from __future__ import annotations

import psycopg

from cem_warehouse.errors import WarehouseUnavailableError
from cem_warehouse.warehouse.settings import WarehouseLocation, parse_warehouse_url

CONNECT_TIMEOUT_SECONDS = 10


def _location(target: WarehouseLocation | str) -> WarehouseLocation:
    return (
        target
        if isinstance(target, WarehouseLocation)
        else parse_warehouse_url(target, source="the warehouse URL")
    )


def explain_connect_error(location: WarehouseLocation, exc: psycopg.OperationalError) -> str:
    """Turn libpq's message into one line: what is wrong and what to do."""
    text = str(exc).strip()
    lower = text.lower()
    where = f"{location.host}:{location.port}"
    if "password authentication failed" in lower or "no password supplied" in lower:
        return (
            f"PostgreSQL at {where} rejected user {location.user!r} (wrong or missing password): "
            "fix the credentials in CEM_WAREHOUSE_URL."
        )
    if "role" in lower and "does not exist" in lower:
        return f"PostgreSQL at {where} has no user {location.user!r}: create it or fix CEM_WAREHOUSE_URL."
    if "database" in lower and "does not exist" in lower:
        return (
            f"PostgreSQL at {where} has no database {location.dbname!r}: "
            f"create it (createdb -h {location.host} -p {location.port} {location.dbname}) or fix CEM_WAREHOUSE_URL."
        )
    if "connection refused" in lower or "could not connect" in lower or "no route" in lower:
        return (
            f"Cannot reach PostgreSQL at {where} (connection refused): start the server, "
            "or point CEM_WAREHOUSE_URL at a running one (unset it to use the embedded warehouse: `cem warehouse up`)."
        )
    if "timeout" in lower or "timed out" in lower:
        return f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_SECONDS}s: check the host, port and firewall."
    if "could not translate host name" in lower or "name or service not known" in lower:
        return f"Unknown host {location.host!r} in CEM_WAREHOUSE_URL: fix the host name."
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return f"Cannot connect to PostgreSQL at {where}: {first_line}"


def connect(
    target: WarehouseLocation | str, *, autocommit: bool = False, **kwargs
) -> psycopg.Connection:
    """Open a psycopg connection; connection problems raise :class:`WarehouseUnavailableError`."""
    location = _location(target)
    params = {
        "host": location.host,
        "port": location.port,
        "user": location.user,
        "dbname": location.dbname,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": "cem-warehouse",
        # Every session in UTC: timestamps without a zone mean UTC, dates cut at UTC midnight.
        "options": "-c TimeZone=UTC",
    }
    if location.password:
        params["password"] = location.password
    if location.sslmode:
        params["sslmode"] = location.sslmode
    try:
        return psycopg.connect(autocommit=autocommit, **params, **kwargs)
    except psycopg.OperationalError as exc:
        raise WarehouseUnavailableError(explain_connect_error(location, exc)) from None


def server_version(target: WarehouseLocation | str) -> int:
    """The server's major version; the warehouse needs 14 or newer."""
    with connect(target, autocommit=True) as conn:
        return conn.info.server_version // 10000


def check_warehouse(target: WarehouseLocation | str) -> int:
    """Connect once and check the version, so a bad setting fails before any work starts."""
    location = _location(target)
    major = server_version(location)
    if major < 14:
        raise WarehouseUnavailableError(
            f"PostgreSQL at {location.host}:{location.port} is version {major}; cem-warehouse needs 14 or newer."
        )
    return major


def describe_server(target: WarehouseLocation | str) -> str:
    """'PostgreSQL 18.1 at host:port (shared_buffers 256MB, effective_io_concurrency 16)'.

    The settings that decide whether a build reads from memory or from disk: benchmarks
    print them so that figures from different servers (or days) can be told apart.
    """
    location = _location(target)
    with connect(location, autocommit=True) as conn:
        version, cache, prefetch = conn.execute(
            "select current_setting('server_version'), current_setting('shared_buffers'), "
            "current_setting('effective_io_concurrency')"
        ).fetchone()
    return (
        f"PostgreSQL {version.split()[0]} at {location.host}:{location.port} "
        f"(shared_buffers {cache}, effective_io_concurrency {prefetch})"
    )
