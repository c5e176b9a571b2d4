"""The bodies of the DAGs' tasks: read the Airflow context and connections, call the logic.

DAG files stay configuration; these adapters are the only place Airflow meets the
``cem_warehouse`` logic, and they import Airflow only when a task runs.
"""

from __future__ import annotations

import logging

from cem_warehouse.orchestration.warehouse_conn import warehouse_from_airflow
from cem_warehouse.sources import connections as source_connections
from cem_warehouse.sources.connections import SourceConnection

log = logging.getLogger(__name__)

_DEFAULTS = {
    source_connections.CRM_CONN_ID: source_connections.crm_connection,
    source_connections.SALES_CONN_ID: source_connections.sales_connection,
    source_connections.SURVEYS_CONN_ID: source_connections.surveys_connection,
}


def source_connection(conn_id: str) -> SourceConnection:
    """The source's Airflow connection (env, secrets backend or UI); the local stand-in if none."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found error type per version
        if "isn't defined" not in str(exc) and "not found" not in str(exc).lower():
            raise
        log.info("Airflow connection %s is not defined: using the local stand-in", conn_id)
        return _DEFAULTS[conn_id]()
    return SourceConnection(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host or "",
        port=conn.port,
        login=conn.login or "",
        password=conn.password or "",
        schema=conn.schema or "",
        extra=conn.extra_dejson or {},
    )


def ingest(source: str) -> dict:
    from cem_warehouse.load import sources as pipelines

    location = warehouse_from_airflow()
    conn_id = {
        "crm": source_connections.CRM_CONN_ID,
        "sales": source_connections.SALES_CONN_ID,
        "surveys": source_connections.SURVEYS_CONN_ID,
    }[source]
    run = getattr(pipelines, f"ingest_{source}")(location, source_connection(conn_id))
    summary = run.as_dict()
    for batch in summary["batches"]:
        log.info(
            "%s.%s: received %s, published %s, quarantined %s, changed %s",
            source,
            batch["entity"],
            batch["received"],
            batch["published"],
            batch["quarantined"],
            batch["changed"],
        )
    if not run.enabled:
        log.warning("source %s is disabled in the sources config; nothing was loaded", source)
    return summary
