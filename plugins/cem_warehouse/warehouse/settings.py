"""The one warehouse setting: ``CEM_WAREHOUSE_URL``, or the embedded server when it is unset.

Airflow's connection, dbt's profile and the GX data source all derive from
:func:`warehouse_url`, so there is exactly one place that says where the warehouse is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from cem_warehouse.errors import ConfigurationError

WAREHOUSE_URL_ENV = "CEM_WAREHOUSE_URL"
_EXAMPLE = "postgresql://user:password@host:5432/dbname"


@dataclass(frozen=True)
class WarehouseLocation:
    """A parsed PostgreSQL URL; the pieces dbt, Airflow and GX each want separately."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str | None = None

    @property
    def url(self) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        query = f"?sslmode={self.sslmode}" if self.sslmode else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}{query}"

    @property
    def redacted_url(self) -> str:
        """The URL with the password masked, for messages and logs."""
        auth = self.user + (":***" if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.dbname}"

    def with_database(self, dbname: str) -> WarehouseLocation:
        return WarehouseLocation(
            self.host, self.port, self.user, self.password, dbname, self.sslmode
        )


def parse_warehouse_url(url: str, *, source: str = WAREHOUSE_URL_ENV) -> WarehouseLocation:
    """Parse and check a ``postgresql://`` URL; a malformed one raises one clear line."""
    url = url.strip()
    if not url:
        raise ConfigurationError(
            f"{source} is empty: set it to {_EXAMPLE}, or unset it to use the embedded warehouse."
        )
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigurationError(
            f"{source} is not a valid PostgreSQL URL ({exc}): expected {_EXAMPLE}."
        ) from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"{source} must start with postgresql:// (got {parts.scheme or 'no scheme'}://): expected {_EXAMPLE}."
        )
    if not parts.hostname:
        raise ConfigurationError(f"{source} names no host: expected {_EXAMPLE}.")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ConfigurationError(
            f"{source} names no database (the part after the last /): expected {_EXAMPLE}."
        )
    sslmode = None
    for pair in filter(None, parts.query.split("&")):
        key, _, value = pair.partition("=")
        if key == "sslmode":
            sslmode = value
        else:
            raise ConfigurationError(
                f"{source} has an unsupported option {key!r}: only ?sslmode=... is understood."
            )
    return WarehouseLocation(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
        sslmode=sslmode,
    )


def configured_warehouse() -> WarehouseLocation | None:
    """The warehouse named by ``CEM_WAREHOUSE_URL``, or None when the embedded one is meant."""
    raw = os.environ.get(WAREHOUSE_URL_ENV)
    if raw is None or raw == "":
        return None
    return parse_warehouse_url(raw)


def warehouse_location() -> WarehouseLocation:
    """Where the warehouse is: ``CEM_WAREHOUSE_URL``, else the running embedded server."""
    configured = configured_warehouse()
    if configured is not None:
        return configured
    from cem_warehouse.warehouse.embedded import EmbeddedWarehouse

    return EmbeddedWarehouse().location()


def warehouse_url() -> str:
    return warehouse_location().url
