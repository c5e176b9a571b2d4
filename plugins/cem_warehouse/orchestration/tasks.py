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

# source -> (Airflow connection id, the local stand-in used when that connection is not defined)
_SOURCES = {
    "crm": (source_connections.CRM_CONN_ID, source_connections.crm_connection),
    "sales": (source_connections.SALES_CONN_ID, source_connections.sales_connection),
    "surveys": (source_connections.SURVEYS_CONN_ID, source_connections.surveys_connection),
}


def source_connection(source: str) -> SourceConnection:
    """The source's Airflow connection (env, secrets backend or UI); the local stand-in if none."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id, stand_in = _SOURCES[source]
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("Airflow connection %s is not defined: using the local stand-in", conn_id)
        return stand_in()
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
    run = getattr(pipelines, f"ingest_{source}")(location, source_connection(source))
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


def audit_marts() -> dict:
    from cem_warehouse.quality.marts_audit import audit_marts as run_audit

    audit = run_audit(warehouse_from_airflow())
    log.info("mart audit %s passed: %s", audit.audit_id, audit.as_dict()["suites"])
    return audit.as_dict()


def staging_test_window() -> str:
    """Where this run's staging test window ends (cem_warehouse.transform.staging_tests):
    read before the dbt tasks, recorded by publish_marts. The warehouse's bookkeeping is
    brought up to this version first: the dbt macros use its ops tables and functions,
    and a run triggered by hand may come before any load since an upgrade."""
    from cem_warehouse.transform.staging_tests import staging_tests_window_end
    from cem_warehouse.warehouse.bootstrap import bootstrap

    location = warehouse_from_airflow()
    bootstrap(location)
    window_end = staging_tests_window_end(location)
    log.info(
        "staging tests read the raw rows loaded since the last publication's window, up to %s",
        window_end,
    )
    return window_end


def publish_marts(audit: dict, staging_tests_through: str | None = None) -> dict:
    from cem_warehouse.transform.publish import publish_marts as swap_in

    publication = swap_in(
        warehouse_from_airflow(),
        audit=audit,
        staging_tests_through=staging_tests_through,
    )
    if publication.already_published:
        from airflow.sdk.exceptions import AirflowSkipException

        # Skipped, not succeeded: the UI shows that nothing was published, and no event on
        # the marts' asset tells their consumers that new marts arrived.
        raise AirflowSkipException(
            f"Nothing new to publish: publication {publication.publication_id} stays. "
            "Clear the run from its first task to build and publish new marts."
        )
    log.info("%s", publication.summary)
    return {
        "publication_id": publication.publication_id,
        "as_of_date": str(publication.as_of_date) if publication.as_of_date else None,
        "tables": publication.tables,
    }


def publish_docs() -> str:
    from cem_warehouse.transform.docs import publish_dbt_docs

    page = publish_dbt_docs(warehouse_from_airflow())
    log.info("dbt docs published to %s", page)
    return str(page)
