"""Write-audit-publish: analysts see the last good marts, whole, whatever the build does.

Readers are played by the BI role (``cem_reader``) on real connections to the warehouse.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time

import psycopg
import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.load.tables import begin_raw_publish
from cem_warehouse.ops_report import print_marts
from cem_warehouse.quality.catalog_answers import kept_row_count
from cem_warehouse.quality.gx_runner import SuiteRun, data_docs_dir, load_suite_definition
from cem_warehouse.quality.marts_audit import audit_marts, mart_suite_names
from cem_warehouse.sources.generator.run import generate_next_day
from cem_warehouse.transform.dbt import dbt_target_dir, run_dbt
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.transform.publish import publish_marts
from cem_warehouse.warehouse.connection import connect


def _marts_fingerprint(conn: psycopg.Connection, schema: str = "marts") -> dict[str, tuple]:
    tables = [
        row[0]
        for row in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s order by 1",
            (schema,),
        )
    ]
    return {
        table: conn.execute(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {schema}.{table} as t"
        ).fetchone()
        for table in tables
    }


def _open_connections(location) -> int:
    """Other clients' sessions on the warehouse's database (not this one, nor the server's
    own workers, such as autovacuum's, which come and go)."""
    with connect(location) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and backend_type = 'client backend' and pid <> pg_backend_pid()"
        ).fetchone()[0]


def _reader(location) -> psycopg.Connection:
    conn = connect(location, autocommit=True)
    conn.execute("set role cem_reader")
    return conn


def test_readers_see_the_last_good_marts_until_an_audited_build_is_swapped_in(
    stand_ins, tmp_path, monkeypatch, capsys, reported_statistics
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    first = build_marts(stand_ins.warehouse)
    assert first is not None and first.tables["dim_customers"] > 0
    # The audit's Data Docs, rendered while the build published, are there when it returns:
    # a page per suite with its validation.
    for suite in mart_suite_names():
        site = data_docs_dir() / load_suite_definition(suite)["name"]
        assert (site / "index.html").exists() and any((site / "validations").rglob("*.html"))
    # where the build's time went, for the benchmark and operators
    assert set(first.phase_seconds) == {"dbt", "audit", "publish"}
    assert first.phase_seconds["publish"] >= first.catch_up_seconds >= 0
    # The publication records every mart's exact rows; the audited ones as the audit had them.
    with connect(stand_ins.warehouse) as conn:
        assert first.tables == {
            table: conn.execute(f"select count(*) from marts.{table}").fetchone()[0]
            for table in first.tables
        }
        audited = conn.execute(
            "select audit -> 'row_counts' from ops.mart_publications where publication_id = %s",
            (first.publication_id,),
        ).fetchone()[0]
    assert {"fct_orders", "fct_order_lines", "dim_customers_stored"} <= set(audited)
    assert all(first.tables[table] == rows for table, rows in audited.items())
    # The large facts' counts were not scanned by GX: their tables count their own writes
    # (ops.keep_row_count), and the catalog answered the row-count checks from that count.
    with connect(stand_ins.warehouse) as conn:
        counted_by_triggers = dict(
            conn.execute(
                "select r.suite_name, r.observed_value from ops.dq_results as r "
                "join ops.mart_publications as p on p.audit ->> 'audit_id' = r.batch_id "
                "where p.publication_id = %s and r.expectation_type = 'expect_table_row_count_to_be_between' "
                "and r.observed_value like '%% rows, counted by the table''s write triggers %%'",
                (first.publication_id,),
            ).fetchall()
        )
    assert {
        f"marts_{table}"
        for table in (
            "fct_orders",
            "fct_order_lines",
            "dim_customers_stored",
            "fct_survey_responses",
        )
    } <= set(counted_by_triggers), counted_by_triggers
    # The first publication copied the logging marts whole into marts_build and analyzed
    # each copy: the next build, starting there, finds their statistics current
    # (PostgreSQL counts the copied rows as changed after that ANALYZE, and they are not
    # counted again), so its post-hooks do not analyze them over again.
    copied = sorted(
        mart
        for mart, outcome in first.retired_generation.items()
        if outcome.startswith("copied in full")
    )
    assert {"fct_orders", "fct_order_lines", "dim_customers_stored"} <= set(copied)
    changed_after_analyze = dict(
        reported_statistics(
            stand_ins.warehouse,
            "select relname, n_mod_since_analyze from pg_stat_all_tables "
            "where schemaname = 'marts_build' and relname = any(%s)",
            (copied,),
            lambda rows: len(rows) == len(copied) and all(changed for _, changed in rows),
        )
    )
    assert all(changed_after_analyze.get(mart, 0) > 0 for mart in copied), (
        f"nothing was left to count: {changed_after_analyze}"
    )
    with connect(stand_ins.warehouse) as conn:
        stale = {
            mart: conn.execute(
                "select ops.analyze_when_stale(%s)", (f"marts_build.{mart}",)
            ).fetchone()[0]
            for mart in copied
        }
    assert stale == dict.fromkeys(copied, False)
    # fct_order_lines is read by index-only scans, which skip the table only on the pages
    # VACUUM marked all-visible: its copy was vacuumed once caught up, and all are marked.
    assert "; vacuumed (" in first.retired_generation["fct_order_lines"]
    with connect(stand_ins.warehouse) as conn:
        pages, all_visible = conn.execute(
            "select relpages, relallvisible from pg_class "
            "where oid = 'marts_build.fct_order_lines'::regclass"
        ).fetchone()
    assert pages > 0 and all_visible == pages, (pages, all_visible)
    # The marts that are views over a stored table are published, recorded and readable too.
    views = {"fct_customer_repurchase", "fct_customer_churn", "dim_customers"}
    assert views <= set(first.tables)
    with _reader(stand_ins.warehouse) as reader:
        for view in views:
            assert (
                reader.execute(f"select count(*) from marts.{view}").fetchone()[0]
                == (first.tables[view])
            )

    with _reader(stand_ins.warehouse) as reader:
        customers = reader.execute("select count(*) from marts.dim_customers").fetchone()[0]
        assert customers == first.tables["dim_customers"]
        # The build schema is not for readers: it may be half-built or have failed its audit.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("select count(*) from marts_build.dim_customers")

    # An incremental fact waits for a publish into raw that is in flight, so its watermark
    # cannot step over rows that commit after it read raw.
    with connect(stand_ins.warehouse) as loader:
        begin_raw_publish(loader)  # a publish into raw, not yet committed
        build = threading.Thread(
            target=run_dbt,
            args=(
                stand_ins.warehouse,
                ["run", "--select", "int_orders_changed_since_last_build fct_orders"],
            ),
        )
        build.start()
        waiting = False
        with connect(stand_ins.warehouse, autocommit=True) as watcher:
            for _ in range(120):
                waiting = watcher.execute(
                    "select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock' "
                    "and query like '%%raw_publish_gate%%')"
                ).fetchone()[0]
                if waiting or not build.is_alive():
                    break
                time.sleep(0.5)
        loader.rollback()
        build.join(300)
    assert waiting

    # A new day arrives; the build is corrupted after dbt and before the audit.
    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    with connect(stand_ins.warehouse) as conn:
        published = _marts_fingerprint(conn)
    build_marts(stand_ins.warehouse, publish=False)
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            "update marts_build.fct_nps_monthly set nps = 150 "
            "where ctid = (select min(ctid) from marts_build.fct_nps_monthly)"
        )
        conn.commit()
    with pytest.raises(CemError) as failed:
        audit_marts(stand_ins.warehouse)
    message = str(failed.value)
    assert "NOT published" in message and "expect_column_values_to_be_between(nps)" in message
    with connect(stand_ins.warehouse) as conn:
        assert _marts_fingerprint(conn) == published
        assert conn.execute("select count(*) from ops.mart_publications").fetchone()[0] == 1
        audit_id = message.split("batch_id = '")[1].split("'")[0]
        failures = conn.execute(
            "select expectation_type, column_name from ops.dq_results where batch_id = %s and not success",
            (audit_id,),
        ).fetchall()
    assert failures == [("expect_column_values_to_be_between", "nps")]
    # A fact emptied by hand: its triggers count that too, and a count that fails the
    # volume check is left to GX, which counts and reports it.
    with connect(stand_ins.warehouse) as conn:
        conn.execute("create table public.saved_orders as select * from marts_build.fct_orders")
        conn.execute("truncate marts_build.fct_orders")
        conn.commit()
    with pytest.raises(
        CemError, match=r"expect_table_row_count_to_be_between\(\) failed on \? rows \(observed 0\)"
    ):
        audit_marts(stand_ins.warehouse)
    with connect(stand_ins.warehouse) as conn:
        conn.execute("insert into marts_build.fct_orders select * from public.saved_orders")
        conn.execute("drop table public.saved_orders")
        conn.commit()
        # the truncate and the insert were counted as well: the count is exact again
        assert (
            kept_row_count(conn, "marts_build", "fct_orders")
            == (conn.execute("select count(*) from marts_build.fct_orders").fetchone()[0])
        )
    # Uniqueness that a unique index enforces is answered from the catalog, without a scan...
    with connect(stand_ins.warehouse) as conn:
        observed = conn.execute(
            "select observed_value from ops.dq_results where batch_id = %s "
            "and expectation_type = 'expect_column_values_to_be_unique' and column_name = 'order_id'",
            (audit_id,),
        ).fetchone()[0]
    assert observed.startswith("enforced by unique index marts_build.")
    # ...and GX checks it when there is no such index: a duplicated order fails the audit.
    index = observed.split()[-1]
    with connect(stand_ins.warehouse) as conn:
        definition = conn.execute("select pg_get_indexdef(%s::regclass)", (index,)).fetchone()[0]
        conn.execute(f"drop index {index}")
        conn.execute(
            "insert into marts_build.fct_orders select * from marts_build.fct_orders "
            "where ctid = (select min(ctid) from marts_build.fct_orders)"
        )
        conn.commit()
    with pytest.raises(
        CemError, match=r"expect_column_values_to_be_unique\(order_id\) failed on 2 rows"
    ):
        audit_marts(stand_ins.warehouse)
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            "delete from marts_build.fct_orders where ctid = (select max(ctid) from marts_build.fct_orders "
            "where order_id = (select order_id from marts_build.fct_orders group by 1 having count(*) > 1))"
        )
        conn.execute(definition)
        conn.commit()
    # So are the large facts' ranges, sets and not-nulls that the models' constraints
    # enforce (post-hooks enforce_between, enforce_accepted_values, set_not_null): the audit
    # finds the constraint the dbt macro named for the suite's bounds.
    with connect(stand_ins.warehouse) as conn:
        answered = dict(
            conn.execute(
                "select column_name, observed_value from ops.dq_results where batch_id = %s "
                "and column_name in ('quantity', 'customer_key', 'nps_category', 'last_likelihood_to_recommend')",
                (audit_id,),
            ).fetchall()
        )
    assert answered == {
        "quantity": "enforced by CHECK constraint quantity_between_1_and_any",
        "customer_key": "enforced by the column's NOT NULL",
        "nps_category": "enforced by CHECK constraint nps_category_accepted_values_"
        + answered["nps_category"].rsplit("_", 1)[-1],
        "last_likelihood_to_recommend": "enforced by CHECK constraint "
        "last_likelihood_to_recommend_between_0_and_10",
    }
    # Without its constraint, GX scans again: a line of quantity 0 fails the audit.
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            "alter table marts_build.fct_order_lines drop constraint quantity_between_1_and_any"
        )
        line, quantity = conn.execute(
            "select order_line_id, quantity from marts_build.fct_order_lines limit 1"
        ).fetchone()
        conn.execute(
            "update marts_build.fct_order_lines set quantity = 0 where order_line_id = %s", (line,)
        )
        conn.commit()
    with pytest.raises(
        CemError, match=r"expect_column_values_to_be_between\(quantity\) failed on 1 rows"
    ):
        audit_marts(stand_ins.warehouse)
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            "update marts_build.fct_order_lines set quantity = %s where order_line_id = %s",
            (quantity, line),
        )
        conn.commit()
    # The next build puts the constraint back (checked below, where its audit passes).
    # The audit counts first; the failing suite ran again with samples, so its Data Docs
    # page shows the value that broke.
    pages = sorted(
        (data_docs_dir() / "marts_fct_nps_monthly" / "validations").rglob("*.html"),
        key=lambda page: page.stat().st_mtime,
    )
    assert pages and "150" in pages[-1].read_text()
    # `cem status` tells the operator which build analysts read and that a later one was held.
    capsys.readouterr()
    print_marts(stand_ins.warehouse)
    status = " ".join(capsys.readouterr().out.split())
    assert (
        "Marts: publication" in status and "NOT published" in status and "fct_nps_monthly" in status
    )

    # A good build is swapped in while a reader is in the middle of a long query: the
    # query finishes on the marts it started with, and the swap does not wait for it.
    build_marts(stand_ins.warehouse, publish=False)
    # The audit's GX engines hand their connections back: it leaves no session open. (First,
    # sessions of earlier steps that only wait for Python's collector are closed; CI once
    # found 4 such before this audit and none after it.)
    gc.collect()
    open_before = _open_connections(stand_ins.warehouse)
    audit = audit_marts(stand_ins.warehouse)
    assert _open_connections(stand_ins.warehouse) <= open_before
    with connect(stand_ins.warehouse) as conn:
        assert conn.execute(
            "select observed_value from ops.dq_results where batch_id = %s and column_name = 'quantity'",
            (audit.audit_id,),
        ).fetchone() == ("enforced by CHECK constraint quantity_between_1_and_any",)
    started, finished = threading.Event(), {}

    def long_read() -> None:
        with _reader(stand_ins.warehouse) as reader:
            started.set()
            finished["rows"] = reader.execute(
                "select count(*) from marts.dim_customers, pg_sleep(5)"
            ).fetchone()[0]

    thread = threading.Thread(target=long_read)
    thread.start()
    started.wait(10)

    # Bringing marts_build up to the new generation fails after the swap (a lock timeout,
    # say): the publication stands, and the failure is recorded and shown, not raised.
    def lock_timeout(*args, **kwargs):
        raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")

    monkeypatch.setattr(
        "cem_warehouse.transform.generations.catch_up_retired_generation", lock_timeout
    )
    second = publish_marts(stand_ins.warehouse, audit=audit.as_dict())
    assert "lock timeout" in second.retired_generation["error"]
    assert thread.is_alive()  # the swap did not wait for the reader
    thread.join(30)
    assert finished["rows"] == customers
    # Publishing again with no build since (the publish task run again after it
    # succeeded) changes nothing: marts_build holds the generation the swap retired, and
    # swapping it back would show analysts the older marts.
    with connect(stand_ins.warehouse) as conn:
        published_tables = conn.execute(
            "select cast(to_regclass('marts.dim_as_of_date') as oid)"
        ).fetchone()
    again = publish_marts(stand_ins.warehouse, audit=audit.as_dict())
    assert again.publication_id == second.publication_id and again.already_published
    # The Airflow task says so by skipping (no event on the marts' asset).
    from airflow.sdk.exceptions import AirflowSkipException

    from cem_warehouse.orchestration.tasks import publish_marts as publish_task

    monkeypatch.setenv("AIRFLOW_CONN_CEM_WAREHOUSE", stand_ins.warehouse.url)
    with pytest.raises(AirflowSkipException, match=f"publication {second.publication_id} stays"):
        publish_task(audit.as_dict())
    with connect(stand_ins.warehouse) as conn:
        assert (
            conn.execute("select cast(to_regclass('marts.dim_as_of_date') as oid)").fetchone()
            == published_tables
        )
        assert conn.execute("select max(publication_id) from ops.mart_publications").fetchone() == (
            second.publication_id,
        )
        # Without dim_as_of_date, which every build creates, marts_build holds no complete
        # build: refused, saying what to do.
        conn.execute("alter table marts_build.dim_as_of_date rename to dim_as_of_date_moved")
        conn.commit()
    with pytest.raises(CemError, match="holds no complete build.*Build the marts first"):
        publish_marts(stand_ins.warehouse, audit=audit.as_dict())
    with connect(stand_ins.warehouse) as conn:
        conn.execute("alter table marts_build.dim_as_of_date_moved rename to dim_as_of_date")
        conn.commit()
    assert second.tables["dim_customers"] > customers  # the new day's customers
    with _reader(stand_ins.warehouse) as reader:
        assert (
            reader.execute("select count(*) from marts.dim_customers").fetchone()[0]
            == second.tables["dim_customers"]
        )
    with connect(stand_ins.warehouse) as conn:
        publications = conn.execute(
            "select publication_id, audit ->> 'success' from ops.mart_publications order by 1"
        ).fetchall()
    assert [success for _, success in publications] == ["true", "true"]
    capsys.readouterr()
    print_marts(stand_ins.warehouse)
    status = " ".join(capsys.readouterr().out.split())
    assert f"publication {second.publication_id}" in status
    assert (
        "marts_build was not brought up to this publication" in status and "lock timeout" in status
    )
    assert "run `cem marts build --full-refresh` again" in status


def test_the_change_log_loses_what_every_reader_read_beside_the_head_of_the_chain(
    stand_ins, tmp_path, monkeypatch
):
    """The mart change log is trimmed by the post-hook of int_orders_changed_since_last_build,
    the first model of a build on the thread that waits for identity resolution (stop 65;
    until then the first reader trimmed it, at the head of the chain). Everything every
    reader has read, up to the last publication's catch-up, goes; the rest stays."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse)
    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse)
    counted = (
        "select count(*) filter (where change_id <= %(bound)s), "
        "count(*) filter (where change_id > %(bound)s) from ops.mart_key_changes"
    )
    with connect(stand_ins.warehouse) as conn:
        (bound,) = conn.execute(
            "select least((select min(change_id) from ops.mart_change_positions "
            "where built_at >= now() - interval '90 days'), "
            "(select max(change_log_id) from ops.mart_publications))"
        ).fetchone()
        read_by_all, unread = conn.execute(counted, {"bound": bound}).fetchone()
    assert read_by_all > 0 and unread > 0, (read_by_all, unread)

    run_dbt(stand_ins.warehouse, ["run", "--select", "int_orders_changed_since_last_build"])
    with connect(stand_ins.warehouse) as conn:
        assert conn.execute(counted, {"bound": bound}).fetchone() == (0, unread)


def test_a_catch_up_failing_on_one_mart_leaves_every_retired_mart_as_it_was(
    stand_ins, tmp_path, monkeypatch, caplog
):
    """The logging marts are caught up side by side, each on its own connection: one that
    fails rolls back the others too, and the next build converges all the same."""
    from cem_warehouse.transform import generations

    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse)
    manifest = json.loads((dbt_target_dir() / "manifest.json").read_text())
    logging_marts = {mart.name for mart in generations.logged_marts(manifest)}
    assert {"fct_orders", "fct_order_lines", "dim_customers_stored"} <= logging_marts
    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    with connect(stand_ins.warehouse) as conn:
        retired_before = {
            mart: fingerprint
            for mart, fingerprint in _marts_fingerprint(conn, "marts").items()
            if mart in logging_marts
        }

    caught_up_beside = threading.Event()
    catch_up = generations._catch_up

    def failing_on_fct_orders(conn, mart, plan, since, until):
        if mart.name != "fct_orders":
            outcome = catch_up(conn, mart, plan, since, until)
            caught_up_beside.set()
            return outcome
        # Fail only once another mart has been caught up (uncommitted) beside this one.
        assert caught_up_beside.wait(120)
        raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")

    with monkeypatch.context() as failing:
        failing.setattr(generations, "_catch_up", failing_on_fct_orders)
        second = build_marts(stand_ins.warehouse)
    assert "lock timeout" in second.retired_generation["error"]
    with connect(stand_ins.warehouse) as conn:
        # marts_build holds the first publication's marts, untouched: none was caught up.
        retired = _marts_fingerprint(conn, "marts_build")
        assert {mart: retired[mart] for mart in logging_marts} == retired_before
        published = _marts_fingerprint(conn, "marts")
        assert any(published[mart] != retired_before[mart] for mart in logging_marts)

    # The next build starts from the older generation (two deltas) and is caught up whole.
    # Its Data Docs cannot be rendered: that is reported, and does not hold the marts back.
    def failing_docs(run) -> None:
        raise OSError("No space left on device")

    with monkeypatch.context() as failing, caplog.at_level(logging.WARNING):
        failing.setattr(SuiteRun, "build_docs", failing_docs)
        third = build_marts(stand_ins.warehouse)
    assert third.publication_id == second.publication_id + 1
    with connect(stand_ins.warehouse) as conn:
        # The rows the build trimmed from the change log are vacuumed after its publication
        # (last_vacuum counts VACUUMs run by hand, not autovacuum's).
        vacuumed_at, published_at = conn.execute(
            "select last_vacuum, (select published_at from ops.mart_publications "
            "where publication_id = %s) from pg_stat_all_tables "
            "where relid = 'ops.mart_key_changes'::regclass",
            (third.publication_id,),
        ).fetchone()
    assert vacuumed_at is not None and vacuumed_at >= published_at
    assert "were not rendered (No space left on device)" in caplog.text
    assert "ops.dq_results" in caplog.text
    assert "error" not in third.retired_generation
    assert all(
        outcome.startswith(("caught up", "copied in full"))
        for outcome in third.retired_generation.values()
    ), third.retired_generation
    with connect(stand_ins.warehouse) as conn:
        published = _marts_fingerprint(conn, "marts")
        retired = _marts_fingerprint(conn, "marts_build")
    assert {mart: retired[mart] for mart in logging_marts} == {
        mart: published[mart] for mart in logging_marts
    }
