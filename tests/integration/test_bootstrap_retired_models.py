"""The bootstrap drops the tables of dbt models the project no longer has, and nothing else."""

from __future__ import annotations

from cem_warehouse.warehouse.bootstrap import RETIRED_MODEL_TABLES, bootstrap
from cem_warehouse.warehouse.connection import connect


def _existing(conn, tables: list[str]) -> list[str]:
    return [
        table
        for table in tables
        if conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]
    ]


def test_a_retired_models_table_goes_and_a_current_one_stays(fresh_database):
    bootstrap(fresh_database)
    kept = "staging.int_purchase_gaps_assessed_for_churn"
    with connect(fresh_database) as conn:
        # as an earlier version's build left them
        for table in [*RETIRED_MODEL_TABLES, kept]:
            conn.execute(f"create table {table} (customer_key text primary key)")
        conn.commit()

    bootstrap(fresh_database)
    with connect(fresh_database) as conn:
        assert _existing(conn, [*RETIRED_MODEL_TABLES, kept]) == [kept]

    bootstrap(fresh_database)  # with nothing left to drop, a no-op
