"""
### ingest_crm

CRM customers, support cases, contact-center interactions and referrals from the CRM's REST API (connection `cem_source_crm`): pages since the stored `updated_at` cursor, with retries on 429 and 5xx.

Each entity is one batch: COPY into a batch table, rows that break the contract or the
Great Expectations suite (`expectations/<entity>.json`) quarantined with the reason, the
batch validated, then published to `raw.<entity>` in one transaction with its cursor.
A batch over the bad-row threshold (or empty, or far off its usual volume) publishes
nothing and fails this task, naming the expectation. Re-runs are safe. Policy (schedule,
drift, thresholds) lives in `dags/sources.yml`.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from cem_warehouse.assets import RAW_BY_SOURCE
from cem_warehouse.load.schedules import schedule_for


@dag(
    schedule=schedule_for("crm"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cem", "ingest", "crm"],
    default_args={"owner": "cem-data-engineering", "retries": 2, "retry_delay": timedelta(minutes=2)},
    doc_md=__doc__,
)
def ingest_crm():
    @task(outlets=RAW_BY_SOURCE["crm"])
    def load_crm() -> dict:
        from cem_warehouse.orchestration.tasks import ingest

        return ingest("crm")

    load_crm()


ingest_crm()
