"""
### transform_cx_marts

Builds the customer-experience marts with dbt (`dbt build`: models, then their tests)
whenever any raw table they read has new data. Runs on the raw tables' assets, not a clock.
"""

from airflow.sdk import AssetAny, dag, task

from cem_warehouse.assets import MARTS, RAW_TABLES
from cem_warehouse.orchestration.dag_defaults import START_DATE, default_args


@dag(
    schedule=AssetAny(*RAW_TABLES),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["cem", "transform", "dbt"],
    default_args=default_args("cem-analytics-engineering"),
    doc_md=__doc__,
)
def transform_cx_marts():
    @task(outlets=[MARTS])
    def build_marts() -> None:
        from cem_warehouse.orchestration.tasks import build_marts

        build_marts()

    build_marts()


transform_cx_marts()
