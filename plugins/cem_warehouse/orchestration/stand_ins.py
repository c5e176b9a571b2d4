"""Local stand-ins that must be running while the DAGs pull from them (the CRM API).

`cem run` serves the CRM stand-in for the duration of the run when the CRM connection is
the local default and nothing else is serving it; a real CRM connection is never touched.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from cem_warehouse.sources import connections


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def crm_stand_in() -> Iterator[str | None]:
    """Serve the CRM stand-in if it is the configured source and not already served."""
    connection = connections.crm_connection()
    store = connections.crm_store_dir()
    if not connection.is_default or not store.exists() or _port_in_use(connection.port or 0):
        yield None
        return
    from cem_warehouse.sources.crm_server import CrmServer, Faults

    # Realistic faults (occasional 429 and 503) so every run exercises the client's retries.
    server = CrmServer(
        store, connection.token, port=connection.port or 0, faults=Faults.realistic()
    ).start()
    try:
        yield server.base_url
    finally:
        server.stop()
