"""The staging tests read the raw rows loaded since the last published build: no more, no less.

(cem_warehouse.transform.staging_tests.) Real loads, real dbt builds, real PostgreSQL.
"""

from __future__ import annotations

import json
import re
import threading

import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.load.tables import begin_raw_publish
from cem_warehouse.paths import logs_dir
from cem_warehouse.transform.dbt import dbt_target_dir, run_dbt
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.transform.staging_tests import staging_tests_window_end
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect

ORDER_STATUS_TEST = "accepted_values_stg_sales__orders_order_status"


def _order_status_test_sql() -> str:
    """The SQL of the order-status test in the last dbt build."""
    results = json.loads((dbt_target_dir() / "run_results.json").read_text())["results"]
    (result,) = [r for r in results if ORDER_STATUS_TEST in r["unique_id"]]
    return result["compiled_code"]


def _window_start_in_test_sql() -> str | None:
    """The raw rows' `loaded_at` bound in the order-status test of the last dbt build."""
    found = re.search(
        r"loaded_at > cast\('([^']+)' as timestamp\) at time zone 'UTC'", _order_status_test_sql()
    )
    return found.group(1) if found else None


def _last_dbt_invocation_log() -> str:
    """dbt's log of its last invocation (each starts with a line of '=')."""
    text = (logs_dir() / "dbt" / "dbt.log").read_text()
    return text[text.rindex("\n=====") :]


def _publish_an_order_with_status(location, status: str) -> int:
    """Publish one order into raw as a load does (under the gate, stamped after taking it)."""
    with connect(location) as conn, conn.transaction():
        loaded_at = begin_raw_publish(conn)
        return conn.execute(
            "insert into raw.orders (order_id, sales_account_id, customer_email, status, currency, "
            "order_total, ordered_at, created_at, updated_at, _batch_id, _loaded_at, _source) "
            "select order_id + 1000000, sales_account_id, customer_email, %s, currency, "
            "order_total, ordered_at, created_at, updated_at, 'test-batch', %s, _source "
            "from raw.orders order by order_id desc limit 1 returning order_id",
            (status, loaded_at),
        ).fetchone()[0]


def test_a_build_tests_the_rows_loaded_since_the_last_publication_and_a_full_refresh_all(
    stand_ins, tmp_path, monkeypatch
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()

    # No publication yet: the first build tests every row, and records where it ended.
    first = build_marts(stand_ins.warehouse)
    assert "loaded_at >" not in _order_status_test_sql()
    with connect(stand_ins.warehouse) as conn:
        through = conn.execute(
            "select cast(staging_tests_through as text) from ops.mart_publications "
            "where publication_id = %s",
            (first.publication_id,),
        ).fetchone()[0]
    assert through is not None

    # A load publishes an order with a status nobody accepted: the next build's test reads
    # the rows loaded after the first publication's window, finds it, and nothing is published.
    bad_order = _publish_an_order_with_status(stand_ins.warehouse, "lost")
    with pytest.raises(CemError, match=ORDER_STATUS_TEST):
        build_marts(stand_ins.warehouse)
    # dbt read the window from the warehouse, so nothing the build passed it changed and
    # it re-parsed only what changed in the project (nothing), not the whole project.
    assert "Unable to do partial parsing" not in _last_dbt_invocation_log()
    with connect(stand_ins.warehouse) as conn:
        assert conn.execute(
            "select cast(%s as timestamp) at time zone 'UTC' = %s::timestamptz",
            (_window_start_in_test_sql(), through),
        ).fetchone() == (True,)
        assert conn.execute("select max(publication_id) from ops.mart_publications").fetchone() == (
            first.publication_id,
        )
        # The order is put right, and an old one is changed in raw by hand: not loaded, so
        # not restamped, outside every window.
        conn.execute("delete from raw.orders where order_id = %s", (bad_order,))
        conn.execute(
            "update raw.orders set status = 'lost' "
            "where order_id = (select min(order_id) from raw.orders)"
        )
    # `dbt test` by hand with staging_tests_every_row tests every row, and finds it.
    with pytest.raises(CemError, match=ORDER_STATUS_TEST):
        run_dbt(
            stand_ins.warehouse,
            [
                "test",
                "--select",
                "stg_sales__orders",
                "--vars",
                '{"staging_tests_every_row": true}',
            ],
        )
    assert _window_start_in_test_sql() is None
    # A full refresh tests every row again, and finds it.
    with pytest.raises(CemError, match=ORDER_STATUS_TEST):
        build_marts(stand_ins.warehouse, full_refresh=True)
    assert _window_start_in_test_sql() is None


def test_the_window_ends_only_once_a_publish_into_raw_is_committed(fresh_database):
    """A row stamped before the window's end is committed before it: the window waits for
    a publish that is half-way, so the build's tests, which run after, see its rows."""
    bootstrap(fresh_database)
    with connect(fresh_database) as conn, conn.transaction():
        conn.execute(
            "insert into ops.mart_publications (tables, staging_tests_through) values ('{}', now())"
        )
    windows = []
    with connect(fresh_database) as publish, publish.transaction():
        loaded_at = begin_raw_publish(publish)
        reader = threading.Thread(
            target=lambda: windows.append(staging_tests_window_end(fresh_database))
        )
        reader.start()
        reader.join(1.5)
        assert reader.is_alive() and not windows  # waiting for the publish to commit
    reader.join(30)
    (window_end,) = windows
    with connect(fresh_database) as conn:
        after, through, stamped = conn.execute(
            "select (select staging_tests_through from ops.mart_publications), "
            "%s::timestamptz, %s::timestamptz",
            (window_end, loaded_at),
        ).fetchone()
    # The row is after the last window (so the next build's tests read it) and before this
    # one's end (so they can see it).
    assert after < stamped < through


def test_the_transform_dags_first_task_brings_the_warehouse_bookkeeping_up_to_date(
    fresh_database, monkeypatch
):
    """A transform run triggered by hand may come before any load since an upgrade: its
    first task creates what the dbt macros use (ops.analyze_when_stale) before they run."""
    from cem_warehouse.orchestration.tasks import staging_test_window

    monkeypatch.setenv("AIRFLOW_CONN_CEM_WAREHOUSE", fresh_database.url)
    assert staging_test_window()
    with connect(fresh_database) as conn:
        assert conn.execute(
            "select to_regprocedure('ops.analyze_when_stale(regclass)') is not null"
        ).fetchone()[0]
