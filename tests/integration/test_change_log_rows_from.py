"""A reader configured with change_log_rows_from replaces a key's rows from the dates its
pre-hook wrote to rows_from_scope() (macros/change_log.sql); without that table the
strategy says what is missing instead of failing on an unknown relation, on a real dbt run
against PostgreSQL with the project's own macros."""

from __future__ import annotations

import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.bootstrap import bootstrap

READER = """
{{{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='row_id',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=['producer'],
        change_log_as_of=false,
        change_log_rows_from='day',
        pre_hook={pre_hook},
        post_hook="{{{{ record_change_position() }}}}",
        indexes=[{{'columns': ['customer_key']}}],
    )
}}}}
{{%- set changes = change_log_state(['producer']) %}}
select '1|2024-01-01' as row_id, '1' as customer_key, date '2024-01-01' as day
"""


@pytest.mark.parametrize(
    ("pre_hook", "refused"),
    [
        # no table of dates: refused, naming what is missing
        ('"select 1"', True),
        # the table written, as the churn gaps' pre-hook does: the build goes through
        (
            '"create temporary table {{ rows_from_scope() }} on commit drop as '
            "select '1'::text as key_value, date '2024-01-01' as rows_from\"",
            False,
        ),
    ],
)
def test_a_dated_reader_needs_its_pre_hooks_dates(
    fresh_database, small_dbt_project, pre_hook, refused
):
    # a producer and a dated reader, with the warehouse's macros
    models = small_dbt_project("rows_from_check", with_macros=True)
    (models / "producer.sql").write_text("select '1' as customer_key\n")
    (models / "reader.sql").write_text(READER.format(pre_hook=pre_hook))
    bootstrap(fresh_database)  # the change log and the readers' positions
    run_dbt(fresh_database, ["run"])  # in full: no dates read
    if refused:
        with pytest.raises(CemError, match="change_log_rows_from needs the model's pre-hook"):
            run_dbt(fresh_database, ["run"])
    else:
        run_dbt(fresh_database, ["run"])  # incremental, from the pre-hook's dates
