"""A per-customer model leaves the rows it recomputed and found unchanged alone.

dim_customers_stored recomputes every customer its producers logged (change_log_skip_unchanged on
``replace_changed_keys``). A recomputed row equal to the stored row and to the published
generation's row is neither rewritten nor logged: the catch-up after the swap replaces the
logged keys from the published generation, and both generations already hold that row. A
row the published generation holds differently is rewritten and logged, so that the
catch-up brings the retired generation up to the new one. A model with one generation
(an intermediate) finds what stays and what goes in one pass over its stored rows.
"""

from __future__ import annotations

from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.warehouse.connection import connect


def _rows_by_key(conn, table: str) -> dict[str, tuple]:
    return {
        row[0]: row[1:]
        for row in conn.execute(f"select customer_key, ctid::text, * from {table}").fetchall()
    }


def test_dim_customers_stored_rewrites_and_logs_only_rows_that_differ_in_a_generation(stand_ins):
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse, full_refresh=True)
    # A second publication: marts_build now holds the retired generation, caught up.
    build_marts(stand_ins.warehouse)

    with connect(stand_ins.warehouse) as conn:
        stored = _rows_by_key(conn, "marts_build.dim_customers_stored")
        assert len(stored) > 100
        # The published generation holds one customer differently (as when the catch-up
        # after the last swap was skipped and marts_build is a generation older).
        differing = conn.execute(
            "select customer_key from marts.dim_customers_stored where segment is not null "
            "order by customer_key limit 1"
        ).fetchone()[0]
        conn.execute(
            "update marts.dim_customers_stored set segment = segment || ' (older)' where customer_key = %s",
            (differing,),
        )
        # Every customer logged as changed by a producer dim_customers_stored reads, as a day
        # touching all of them would.
        conn.execute(
            "insert into ops.mart_key_changes (producer, key_value) "
            "select 'marts_build.fct_survey_responses', customer_key from marts_build.dim_customers_stored"
        )
        before = conn.execute("select max(change_id) from ops.mart_key_changes").fetchone()[0]
        conn.commit()

    run_dbt(stand_ins.warehouse, ["run", "--select", "dim_customers_stored"])

    with connect(stand_ins.warehouse) as conn:
        after = _rows_by_key(conn, "marts_build.dim_customers_stored")
        logged = {
            key
            for (key,) in conn.execute(
                "select key_value from ops.mart_key_changes "
                "where change_id > %s and producer = 'marts_build.dim_customers_stored'",
                (before,),
            ).fetchall()
        }
    assert logged == {differing}, "only the customer a generation holds differently is logged"
    assert after.keys() == stored.keys()
    rewritten = {key for key in stored if after[key][0] != stored[key][0]}  # their ctid moved
    assert rewritten == {differing}, "unchanged customers were rewritten"
    assert after[differing][1:] == stored[differing][1:], "the rewritten row is what it was"


def test_a_one_generation_model_rewrites_only_differing_rows_and_deletes_rows_no_longer_derived(
    stand_ins,
):
    """int_orders_aggregated_to_purchase_days, a model with one generation, compares its
    stored rows in scope with the recomputed ones in the pass that finds what to delete
    (macros/change_log.sql): with every customer logged as changed, only a stored row that
    differs is rewritten, a stored row the orders no longer give is deleted, every other
    row keeps its place, and the log names exactly those two customers."""
    model = "staging.int_orders_aggregated_to_purchase_days"
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse, full_refresh=True)

    with connect(stand_ins.warehouse) as conn:
        altered_customer, altered_day, revenue = conn.execute(
            f"select customer_key, purchase_day_id, revenue from {model} "
            "order by customer_key, purchase_date limit 1 offset 10"
        ).fetchone()
        extra_customer = conn.execute(
            f"select max(customer_key) from {model} where customer_key <> %s", (altered_customer,)
        ).fetchone()[0]
        conn.execute(
            f"update {model} set revenue = revenue + 1 where purchase_day_id = %s", (altered_day,)
        )
        # A day no order gives: a copy of one of the customer's rows, dated long before.
        extra_day = f"{extra_customer}|1990-01-01"
        copied = (
            "customer_key, purchase_day_number, order_count, days_since_previous_purchase, "
            "revenue, gross_margin, first_purchase_date, order_count_to_date, revenue_to_date, "
            "repeat_revenue_to_date, gross_margin_to_date, previous_purchase_date, "
            "next_purchase_date, first_purchase_month, active_month"
        )
        conn.execute(
            f"insert into {model} (purchase_day_id, purchase_date, {copied}) "
            f"select %s, date '1990-01-01', {copied} "
            f"from {model} where customer_key = %s order by purchase_date limit 1",
            (extra_day, extra_customer),
        )
        stored = {
            key: place
            for key, place in conn.execute(f"select purchase_day_id, ctid::text from {model}")
        }
        # Every customer logged as changed by fct_orders, as a day touching all of them would.
        conn.execute(
            "insert into ops.mart_key_changes (producer, key_value) "
            f"select distinct 'marts_build.fct_orders', customer_key from {model}"
        )
        before = conn.execute("select max(change_id) from ops.mart_key_changes").fetchone()[0]
        conn.commit()

    run_dbt(stand_ins.warehouse, ["run", "--select", "int_orders_aggregated_to_purchase_days"])

    with connect(stand_ins.warehouse) as conn:
        after = {
            key: place
            for key, place in conn.execute(f"select purchase_day_id, ctid::text from {model}")
        }
        restored = conn.execute(
            f"select revenue from {model} where purchase_day_id = %s", (altered_day,)
        ).fetchone()[0]
        logged = {
            key
            for (key,) in conn.execute(
                "select key_value from ops.mart_key_changes where change_id > %s and producer = %s",
                (before, model),
            ).fetchall()
        }
    assert after.keys() == stored.keys() - {extra_day}, "the day no order gives is deleted"
    rewritten = {key for key in after if after[key] != stored[key]}  # their ctid moved
    assert rewritten == {altered_day}, "rows equal to the recomputed ones were rewritten"
    assert restored == revenue, "the differing row holds what the orders give"
    assert logged == {altered_customer, extra_customer}
