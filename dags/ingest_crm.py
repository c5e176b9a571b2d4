"""
### ingest_crm

CRM customers, support cases, contact-center interactions and referrals from the CRM's REST API
(connection `cem_source_crm`): pages since the stored `updated_at` cursor.

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
    schedule=schedule_for("crm"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cem", "ingest", "crm"],
    default_args=default_args("cem-data-engineering"),
    doc_md=__doc__,
)
def ingest_crm():
    @task(outlets=RAW_BY_SOURCE["crm"])
    def load_crm() -> dict:
        from cem_warehouse.orchestration.tasks import ingest

        return ingest("crm")

    load_crm()


ingest_crm()
