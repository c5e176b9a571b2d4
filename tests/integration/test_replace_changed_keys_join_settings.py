"""A mart's comparison of recomputed rows with stored ones (``replace_changed_keys`` with
``change_log_skip_unchanged``) probes the unique index by nested loop while the recomputed
rows are a small share of the table: it turns hash and merge joins off, and turns nested
loops back on, whatever the model's pre-hook set for its own select (dim_customers_stored
turns them off; with all three off the planner would pick by cost alone). On a real dbt run
against PostgreSQL with the project's own macros; the model's post-hook, in the same
transaction after the strategy, records the settings it finds."""

from __future__ import annotations

import pytest

from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect

STORED_ROWS = 200

# schema 'marts' lands in marts_build (macros/generate_schema_name.sql): a mart being built
MART = """
{{{{
    config(
        materialized='incremental',
        schema='marts',
        incremental_strategy='replace_changed_keys',
        unique_key='row_id',
        change_log_key='row_id',
        change_log_replaced_key='row_id',
        change_log_skip_unchanged=true,
        change_log_producers=['producer'],
        change_log_as_of=false,
        pre_hook={pre_hook},
        post_hook=[
            "{{{{ record_change_position() }}}}",
            "insert into public.join_settings_seen select current_setting('enable_nestloop'), current_setting('enable_hashjoin'), current_setting('enable_mergejoin')",
        ],
        indexes=[{{'columns': ['row_id'], 'unique': True}}],
    )
}}}}
{{%- set changes = change_log_state(['producer']) %}}
select cast(n as text) as row_id, 'recomputed' as value
from generate_series(1, {{{{ 1 if is_incremental() else {rows} }}}}) as n
"""


@pytest.mark.parametrize(
    "pre_hook",
    [
        '"select 1"',
        # what dim_customers_stored sets for its select
        '"set local enable_nestloop = off"',
    ],
)
def test_a_mart_compares_by_index_with_nested_loops_on(fresh_database, small_dbt_project, pre_hook):
    models = small_dbt_project("join_settings_check", with_macros=True)
    (models / "producer.sql").write_text("select '1' as row_id\n")
    (models / "mart.sql").write_text(MART.format(pre_hook=pre_hook, rows=STORED_ROWS))
    bootstrap(fresh_database)  # the change log and the readers' positions
    with connect(fresh_database) as conn:
        conn.execute(
            "create table public.join_settings_seen (nestloop text, hashjoin text, mergejoin text)"
        )
        conn.commit()
    run_dbt(fresh_database, ["run"])  # in full: no comparison
    with connect(fresh_database) as conn:
        # the strategy weighs the recomputed share against the planner's row estimate
        conn.execute("analyze marts_build.mart")
        conn.execute("delete from public.join_settings_seen")
        conn.commit()
    run_dbt(fresh_database, ["run"])  # incremental: one row of 200 recomputed, compared
    with connect(fresh_database) as conn:
        seen = conn.execute("select * from public.join_settings_seen").fetchall()
        stored = conn.execute("select count(*) from marts_build.mart").fetchone()[0]
    # nested loops on for the comparison, hash and merge joins back to their defaults after it
    assert seen == [("on", "on", "on")]
    assert stored == STORED_ROWS
