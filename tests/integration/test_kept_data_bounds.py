"""int_as_of_date keeps the bounds of the data (first and latest order, latest response and
contact, first acquisition) from one build to the next and moves them by the rows loaded
since (macros/kept_data_bounds.sql). On really loaded data, changed the ways a load changes
raw, each build's bounds equal the minimum and maximum of every row, and only a bound whose
holding row changed its value or was removed is read from every row. Models reading the
as-of date get it as a literal."""

from __future__ import annotations

from datetime import timedelta

from cem_warehouse.transform.dbt import dbt_target_dir, run_dbt
from cem_warehouse.warehouse.connection import connect

# Each kept bound in int_as_of_date, and the same bound read from every row of its view.
BOUNDS = {
    "first_order_at": "select min(ordered_at) from staging.stg_sales__orders",
    "latest_order_at": "select max(ordered_at) from staging.stg_sales__orders",
    "latest_response_at": "select max(responded_at) from staging.stg_surveys__responses",
    "latest_interaction_at": "select max(started_at) from staging.stg_crm__interactions",
    "first_acquisition_date": "select min(acquisition_date) from staging.stg_crm__customers",
}


def _build_and_check(warehouse, *extra: str) -> dict:
    """Build int_as_of_date; assert every bound equals a read of every row; return its row."""
    run_dbt(warehouse, ["run", "--select", "int_as_of_date", *extra])
    with connect(warehouse) as conn:
        cursor = conn.execute("select * from staging.int_as_of_date")
        row = dict(
            zip([column.name for column in cursor.description], cursor.fetchone(), strict=True)
        )
        for bound, every_row in BOUNDS.items():
            assert row[bound] == conn.execute(every_row).fetchone()[0], bound
        latest_of_all = conn.execute(
            "select greatest("
            " (select max(ordered_date) from staging.stg_sales__orders),"
            " (select max(responded_date) from staging.stg_surveys__responses),"
            " (select max(started_date) from staging.stg_crm__interactions))"
        ).fetchone()[0]
    assert row["latest_data_date"] == latest_of_all
    assert row["as_of_date"] == latest_of_all
    return row


def _load_again(warehouse, statement: str, *params) -> None:
    """A change as a load makes it: the row stamped with a newer _loaded_at."""
    with connect(warehouse) as conn:
        conn.execute(statement, params)
        conn.commit()


def test_bounds_move_by_the_rows_loaded_since_and_are_read_again_when_their_row_changes(
    stand_ins, tmp_path, monkeypatch
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    warehouse = stand_ins.warehouse
    run_dbt(warehouse, ["run", "--select", "+int_as_of_date"])
    with connect(warehouse) as conn:
        first = conn.execute("select bounds_read_in_full from staging.int_as_of_date").fetchone()
    assert first == (5,), "a first build reads every bound from every row"

    row = _build_and_check(warehouse)
    assert row["bounds_read_in_full"] == 0, "nothing loaded: every bound kept"

    # A load moves an order (neither bound's holder) to a week after the latest data, and a
    # response (not the latest) to the same moment: both bounds move by the rows loaded since.
    week_later = row["latest_order_at"] + timedelta(days=7)
    _load_again(
        warehouse,
        "update raw.orders set ordered_at = %s, _loaded_at = clock_timestamp() "
        "where order_id = (select min(order_id) from raw.orders where order_id <> %s "
        "and order_id <> %s)",
        week_later,
        row["first_order_id"],
        row["latest_order_id"],
    )
    _load_again(
        warehouse,
        "update raw.survey_responses set responded_at = %s, _loaded_at = clock_timestamp() "
        "where response_id = (select min(response_id) from raw.survey_responses "
        "where response_id <> %s)",
        week_later,
        row["latest_response_id"],
    )
    moved = _build_and_check(warehouse)
    assert moved["bounds_read_in_full"] == 0
    assert moved["latest_order_at"] == week_later
    assert moved["latest_response_at"] == week_later
    assert moved["orders_loaded_through"] > row["orders_loaded_through"]

    # The latest order loaded again unchanged (a status change, as the newest orders get
    # every day): it still holds the bound.
    _load_again(
        warehouse,
        "update raw.orders set status = 'shipped', _loaded_at = clock_timestamp() "
        "where order_id = %s",
        moved["latest_order_id"],
    )
    reloaded = _build_and_check(warehouse)
    assert reloaded["bounds_read_in_full"] == 0
    assert reloaded["latest_order_id"] == moved["latest_order_id"]

    # The latest order corrected back to before the first order: the latest bound's row
    # changed its value, so that bound is read from every row (the next-latest order now),
    # while the first order moves to it by the rows loaded since.
    _load_again(
        warehouse,
        "update raw.orders set ordered_at = %s, _loaded_at = clock_timestamp() where order_id = %s",
        moved["first_order_at"].replace(year=moved["first_order_at"].year - 1),
        moved["latest_order_id"],
    )
    corrected = _build_and_check(warehouse)
    assert corrected["bounds_read_in_full"] == 1
    assert corrected["latest_order_at"] < moved["latest_order_at"]
    assert corrected["first_order_id"] == moved["latest_order_id"]

    # The customer acquired first removed from raw: that bound is read again.
    _load_again(
        warehouse,
        "delete from raw.customers where customer_id = %s",
        corrected["first_acquired_customer_id"],
    )
    removed = _build_and_check(warehouse)
    assert removed["bounds_read_in_full"] == 1
    assert removed["first_acquired_customer_id"] != corrected["first_acquired_customer_id"]

    # Unchanged again: kept; and a full refresh reads everything, to the same bounds.
    assert _build_and_check(warehouse)["bounds_read_in_full"] == 0
    refreshed = _build_and_check(warehouse, "--full-refresh")
    assert refreshed["bounds_read_in_full"] == 5
    assert {bound: refreshed[bound] for bound in BOUNDS} == {
        bound: removed[bound] for bound in BOUNDS
    }

    # A model reading the as-of date gets it as a literal the planner can use, read when it
    # runs (as_of_date()), not as a subquery of int_as_of_date.
    run_dbt(warehouse, ["compile", "--select", "dim_dates"])
    compiled = (
        dbt_target_dir() / "compiled/cem_warehouse/models/marts/semantic/dim_dates.sql"
    ).read_text()
    assert f"cast('{refreshed['as_of_date']}' as date)" in compiled
    assert "select as_of_date from" not in compiled
