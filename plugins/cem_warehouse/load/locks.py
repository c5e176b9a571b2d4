"""One writer per source: a PostgreSQL advisory lock held for the whole load of a source.

The lock lives on its own connection, so a worker that dies (even by SIGKILL) releases it
when PostgreSQL notices the connection is gone; nothing has to clean up after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from cem_warehouse.errors import CemError
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation


class SourceBusy(CemError):
    """Another run is loading this source."""


@contextmanager
def source_writer_lock(
    location: WarehouseLocation, source: str, *, wait_seconds: int = 600
) -> Iterator[None]:
    conn = connect(location, autocommit=True)
    try:
        conn.execute(f"set lock_timeout = '{int(wait_seconds * 1000)}ms'")
        try:
            conn.execute(
                "select pg_advisory_lock(hashtext('cem_warehouse.load.' || %s))", (source,)
            )
        except psycopg.errors.LockNotAvailable:
            raise SourceBusy(
                f"another run has been loading source {source!r} for over {wait_seconds}s; this run stopped without "
                "writing. Check the other run in the Airflow UI (or `cem status`), then re-run."
            ) from None
        yield
    finally:
        conn.close()  # closing the session releases the lock
