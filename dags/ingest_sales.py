"""
### ingest_sales

Products, orders, order lines, refunds and status changes from the operational sales database
(connection `cem_source_sales`): rows with `updated_at` since the cursor minus the look-back window.

Each entity is one batch: landed with COPY, bad rows quarantined with their reason, the
batch validated by `expectations/<entity>.json`, then published to `raw.<entity>` in one
transaction. How batches work and what to do when one is blocked:
docs/operations/ingestion.md. Policy (schedule, drift, thresholds): `dags/sources.yml`.
"""

from airflow.sdk import dag, task

from cem_warehouse.assets import RAW_BY_SOURCE
from cem_warehouse.load.schedules import schedule_for
from cem_warehouse.orchestration.dag_defaults import START_DATE, default_args


@dag(
    schedule=schedule_for("sales"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cem", "ingest", "sales"],
    default_args=default_args("cem-data-engineering"),
    doc_md=__doc__,
)
def ingest_sales():
    @task(outlets=RAW_BY_SOURCE["sales"])
    def load_sales() -> dict:
        from cem_warehouse.orchestration.tasks import ingest

        return ingest("sales")

    load_sales()


ingest_sales()
