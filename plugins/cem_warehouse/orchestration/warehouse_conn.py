"""Inside a task: the warehouse location from the Airflow connection ``cem_warehouse``."""

from __future__ import annotations

from cem_warehouse.orchestration.airflow_env import WAREHOUSE_CONN_ID
from cem_warehouse.warehouse.settings import WarehouseLocation


def warehouse_from_airflow(conn_id: str = WAREHOUSE_CONN_ID) -> WarehouseLocation:
    """Resolve the Airflow connection (env, secrets backend or metadata DB) to a location."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson or {}
    return WarehouseLocation(
        host=conn.host or "localhost",
        port=int(conn.port or 5432),
        user=conn.login or "postgres",
        password=conn.password or "",
        dbname=conn.schema or "postgres",
        sslmode=extra.get("sslmode"),
    )
