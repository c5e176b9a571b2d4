"""
### transform_cx_marts

Builds the customer-experience marts with dbt (`dbt build`: models, then their tests)
whenever any raw table they read has new data. Runs on the raw tables' assets, not a clock.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import AssetAny, dag, task

from cem_warehouse.assets import MARTS, RAW_TABLES


@dag(
    schedule=AssetAny(*RAW_TABLES),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cem", "transform", "dbt"],
    default_args={"owner": "cem-analytics-engineering", "retries": 2, "retry_delay": timedelta(minutes=2)},
    doc_md=__doc__,
)
def transform_cx_marts():
    @task(outlets=[MARTS])
    def build_marts() -> None:
        from cem_warehouse.orchestration.tasks import build_marts

        build_marts()

    build_marts()


transform_cx_marts()
