"""
### ingest_surveys

Loads survey-tool exports (CSV) from the survey landing folder into `raw.survey_responses`.

Each file is one batch: COPY into a batch table, validated by the Great Expectations suite
`expectations/survey_responses.json`, then upserted on `response_id` in one transaction and
recorded in `ops.load_batches`. Files already published are skipped, so re-runs are safe.
Emits the `raw.survey_responses` asset, which schedules `transform_cx_marts`.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from cem_warehouse.assets import RAW_SURVEY_RESPONSES


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cem", "ingest", "surveys"],
    default_args={
        "owner": "cem-data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
    },
    doc_md=__doc__,
)
def ingest_surveys():
    @task(outlets=[RAW_SURVEY_RESPONSES])
    def load_survey_responses() -> dict:
        from cem_warehouse.load.landing import (
            SURVEY_RESPONSES,
            load_landed_files,
            survey_landing_dir,
        )
        from cem_warehouse.orchestration.warehouse_conn import warehouse_from_airflow

        return load_landed_files(warehouse_from_airflow(), SURVEY_RESPONSES, survey_landing_dir())

    load_survey_responses()


ingest_surveys()
