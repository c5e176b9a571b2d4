"""
### ingest_surveys

Survey definitions, invitations and responses from export files in the landing location
(connection `cem_source_surveys`): every CSV or JSON Lines file not loaded before (by checksum).

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
    schedule=schedule_for("surveys"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cem", "ingest", "surveys"],
    default_args=default_args("cem-data-engineering"),
    doc_md=__doc__,
)
def ingest_surveys():
    @task(outlets=RAW_BY_SOURCE["surveys"])
    def load_surveys() -> dict:
        from cem_warehouse.orchestration.tasks import ingest

        return ingest("surveys")

    load_surveys()


ingest_surveys()
