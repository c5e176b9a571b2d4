"""
### transform_cx_marts

Builds the customer-experience marts with dbt whenever any raw table they read has new
data: scheduled on the raw tables' assets, not a clock. Each dbt model is a task (rendered
by Cosmos from the parsed manifest, so parsing this file runs no dbt) with its tests right
after it.
"""

from airflow.sdk import AssetAny, dag

from cem_warehouse.assets import RAW_TABLES
from cem_warehouse.orchestration.dag_defaults import START_DATE, default_args
from cem_warehouse.transform.cosmos_graph import dbt_models_task_group


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
    dbt_models_task_group()


transform_cx_marts()
