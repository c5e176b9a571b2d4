"""
### transform_cx_marts

Builds the customer-experience marts with dbt whenever any raw table they read has new
data: scheduled on the raw tables' assets, not a clock.

0. **staging_test_window**: brings the warehouse's bookkeeping (ops tables and functions
   the dbt macros use) up to this version, then reads where this build's staging tests
   window ends (recorded by publish_marts); the tests read the raw rows loaded since the
   last published build's (every row after a full refresh).
1. **dbt** (task group): each dbt model is a task, rendered by Cosmos from the parsed
   manifest (parsing this file runs no dbt), with its tests right after it. Models build
   into the schema `marts_build`, which analysts cannot see.
2. **audit_marts**: the Great Expectations suites in `expectations/marts/` on the build.
3. **publish_marts**: swaps the audited build into `marts` in one transaction.
4. **publish_docs**: `dbt docs generate` for the published marts, to `.cem/dbt_docs/`.

A failure anywhere leaves `marts` as it was: analysts and dashboards keep the last good
marts. The as-of date is the run's conf `as_of` (`cem run --as-of YYYY-MM-DD`), else the
data interval end capped at the latest data (dbt model `int_as_of_date`).
"""

from airflow.sdk import AssetAny, dag, task

from cem_warehouse.assets import MARTS, RAW_TABLES
from cem_warehouse.orchestration.dag_defaults import START_DATE, default_args
from cem_warehouse.transform.cosmos_graph import dbt_build_vars, dbt_models_task_group


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
    @task
    def audit_marts() -> dict:
        from cem_warehouse.orchestration.tasks import audit_marts as run_audit

        return run_audit()

    @task
    def staging_test_window() -> str:
        from cem_warehouse.orchestration.tasks import staging_test_window as read_window

        return read_window()

    @task(outlets=[MARTS])
    def publish_marts(audit: dict, window_end: str) -> dict:
        from cem_warehouse.orchestration.tasks import publish_marts as swap_in

        return swap_in(audit, window_end)

    @task
    def publish_docs() -> str:
        from cem_warehouse.orchestration.tasks import publish_docs as generate

        return generate()

    window_end = staging_test_window()
    audit = audit_marts()
    window_end >> dbt_models_task_group(dbt_vars=dbt_build_vars()) >> audit
    publish_marts(audit, window_end) >> publish_docs()


transform_cx_marts()
