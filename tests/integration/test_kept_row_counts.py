"""ops.keep_row_count: a table's rows counted by triggers on its own writes, and the audit's
row-count checks answered from that count, on a real server."""

from __future__ import annotations

import threading

import psycopg
import pytest

from cem_warehouse.quality.catalog_answers import (
    catalog_answer,
    kept_row_count,
    kept_row_counts,
    rows_of_views_over_one_table,
)
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect

AT_LEAST_ONE = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}


def _kept_and_counted(conn: psycopg.Connection) -> tuple[int | None, int]:
    return (
        kept_row_count(conn, "public", "facts"),
        conn.execute("select count(*) from public.facts").fetchone()[0],
    )


def _facts(database, rows: int, *, kept: bool = True) -> None:
    """A bootstrapped warehouse with ``public.facts`` holding ids 1..``rows``, its count kept
    from the start unless ``kept`` is false."""
    bootstrap(database)
    with connect(database) as conn:
        conn.execute("create table public.facts (id int primary key)")
        conn.execute("insert into public.facts select generate_series(1, %s)", (rows,))
        if kept:
            conn.execute("select ops.keep_row_count('public.facts')")
        conn.commit()


def test_every_kind_of_write_keeps_the_count_exact(fresh_database):
    bootstrap(fresh_database)
    with connect(fresh_database) as conn:
        conn.execute("create table public.facts (id int primary key, label text)")
        conn.execute("insert into public.facts select g, 'a' from generate_series(1, 1000) g")
        # Not kept yet: nothing answers for the table.
        assert kept_row_count(conn, "public", "facts") is None
        assert catalog_answer(conn, "public", "facts", AT_LEAST_ONE) is None
        # Counted once when keeping starts (the rows this transaction wrote included)...
        assert conn.execute("select ops.keep_row_count('public.facts')").fetchone()[0] == 1000
        # ...and not again while the triggers and the count are in place.
        assert conn.execute("select ops.keep_row_count('public.facts')").fetchone()[0] is None
        conn.commit()

        writes = [
            "insert into public.facts select g, 'b' from generate_series(1001, 1500) g",
            "delete from public.facts where id <= 100",
            "update public.facts set label = 'c' where id < 300",  # no row more or less
            # what the strategies do: a delete handing its keys to an insert, in one statement
            "with gone as (delete from public.facts where id > 1400 returning id) "
            "insert into public.facts select id + 10000, 'd' from gone where id > 1450",
            "insert into public.facts values (200, 'e') on conflict (id) do nothing",
            "insert into public.facts values (200, 'e') on conflict (id) do update set label = 'f'",
        ]
        for write in writes:
            conn.execute(write)
            kept, counted = _kept_and_counted(conn)
            assert kept == counted, write
        conn.commit()
        assert _kept_and_counted(conn) == (1350, 1350)

        # A write rolled back takes its count with it.
        conn.execute("delete from public.facts where id < 500")
        conn.rollback()
        assert _kept_and_counted(conn) == (1350, 1350)

        conn.execute("truncate public.facts")
        assert _kept_and_counted(conn) == (0, 0)
        conn.execute("insert into public.facts values (1, 'g')")
        conn.commit()
        assert _kept_and_counted(conn) == (1, 1)
        assert catalog_answer(conn, "public", "facts", AT_LEAST_ONE) == (
            "1 rows, counted by the table's write triggers (ops.kept_row_counts)"
        )


def test_a_count_that_cannot_be_trusted_is_left_to_gx(fresh_database):
    _facts(fresh_database, 10)
    with connect(fresh_database) as conn:
        # A count that fails the expectation is not an answer: GX counts again and reports
        # the failure with its observed value, as for any other table.
        too_many = {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 11}}
        assert catalog_answer(conn, "public", "facts", too_many) is None
        exactly = {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 10}}
        assert catalog_answer(conn, "public", "facts", exactly).startswith("10 rows")
        # Nor is a count a disabled trigger may have missed...
        conn.execute("alter table public.facts disable trigger row_count_kept_on_delete")
        conn.execute("delete from public.facts where id = 1")
        conn.commit()
        assert kept_row_count(conn, "public", "facts") is None
        assert catalog_answer(conn, "public", "facts", AT_LEAST_ONE) is None
        # ...until keeping starts again, which counts the table anew.
        assert conn.execute("select ops.keep_row_count('public.facts')").fetchone()[0] == 9
        conn.commit()
        assert _kept_and_counted(conn) == (9, 9)
        # A lost count row is missed the same way.
        conn.execute("delete from ops.kept_row_counts")
        conn.commit()
        assert kept_row_count(conn, "public", "facts") is None
        assert conn.execute("select ops.keep_row_count('public.facts')").fetchone()[0] == 9
        conn.commit()
        # A bootstrap forgets the counts of tables dropped since.
        conn.execute("drop table public.facts")
        conn.commit()
    bootstrap(fresh_database)
    with connect(fresh_database) as conn:
        assert conn.execute("select count(*) from ops.kept_row_counts").fetchone()[0] == 0


def test_no_write_falls_between_the_count_and_the_triggers(fresh_database):
    """Keeping starts under the trigger's lock: a writer waits for it, and its rows are
    counted by the triggers, not missed."""
    _facts(fresh_database, 10, kept=False)
    writer_done = threading.Event()

    def write() -> None:
        with connect(fresh_database) as writer:
            writer.execute("insert into public.facts select generate_series(11, 15)")
            writer.commit()
        writer_done.set()

    with connect(fresh_database) as starter:
        assert starter.execute("select ops.keep_row_count('public.facts')").fetchone()[0] == 10
        thread = threading.Thread(target=write)
        thread.start()
        # the writer waits on the lock creating the triggers took
        assert not writer_done.wait(1.0)
        starter.commit()
    thread.join(30)
    assert writer_done.is_set()
    with connect(fresh_database) as conn:
        assert _kept_and_counted(conn) == (15, 15)


def test_a_count_that_would_go_below_zero_fails_the_write(fresh_database):
    """Counts that no longer match the rows make the write fail, not publish a wrong count,
    with a hint that counts the table again."""
    _facts(fresh_database, 3)
    with connect(fresh_database) as conn:
        # the count drifted (by a write with triggers off, say): 1 kept for 3 rows
        conn.execute(
            "update ops.kept_row_counts set row_count = 1 "
            "where counted_table = 'public.facts'::regclass"
        )
        conn.commit()
        with pytest.raises(psycopg.errors.RaiseException) as drifted:
            conn.execute("delete from public.facts")
        assert "kept row count of facts is lower than the 3 rows" in str(drifted.value)
        hint = drifted.value.diag.message_hint
        conn.rollback()
        # the hint's statements count the table again, and the delete goes through
        for statement in (
            hint.removeprefix("Count the table again: ").split("; then")[0].split("; ")
        ):
            conn.execute(statement)
        conn.execute("delete from public.facts")
        assert _kept_and_counted(conn) == (0, 0)
        conn.commit()


def test_a_count_is_stored_by_its_table_s_name_for_a_dump_and_restore(fresh_database):
    """pg_dump writes a regclass as the table's qualified name (it empties search_path), and
    a restore reads it back as the restored table's oid: a count never lands on another
    table that happens to get the old oid."""
    _facts(fresh_database, 10)
    with connect(fresh_database) as conn:
        old_oid = conn.execute("select 'public.facts'::regclass::oid").fetchone()[0]
        conn.execute("set search_path to ''")
        dumped = conn.execute("select counted_table::text, row_count from ops.kept_row_counts")
        assert dumped.fetchall() == [("public.facts", 10)]
        # as a restore does: the table made anew, then the dumped row read back by name
        conn.execute("drop table public.facts")
        conn.execute("create table public.facts (id int primary key)")
        conn.execute("delete from ops.kept_row_counts")
        conn.execute(
            "insert into ops.kept_row_counts (counted_table, row_count) "
            "values (%s::text::regclass, 10)",
            ("public.facts",),
        )
        restored = conn.execute("select counted_table::oid from ops.kept_row_counts").fetchone()[0]
        assert restored == conn.execute("select 'public.facts'::regclass::oid").fetchone()[0]
        assert restored != old_oid
        conn.rollback()


def test_a_view_of_one_whole_table_has_its_count_and_no_other_view_does(fresh_database):
    _facts(fresh_database, 500)
    with connect(fresh_database) as conn:
        conn.execute("create table public.other (id int primary key)")
        conn.execute("insert into public.other values (1), (2)")
        conn.execute("create table public.one_row (as_of date)")
        conn.execute("insert into public.one_row values ('2026-01-01')")
        views = {
            # what the per-customer marts are: one table, as-of columns added by subquery
            "facts_as_of": "select id, (select as_of from public.one_row) - date '2025-12-01' "
            "as days, (select as_of from public.one_row) as as_of_date from public.facts",
            "facts_filtered": "select id from public.facts where id > 10",
            "facts_joined": "select f.id from public.facts f join public.other o using (id)",
            "facts_summed": "select count(*) as n from public.facts",
            "facts_distinct": "select distinct id % 7 as bucket from public.facts",
            "facts_limited": "select id from public.facts limit 3",
            "other_unkept": "select id from public.other",
        }
        for name, body in views.items():
            conn.execute(f"create view public.{name} as {body}")
        counts = kept_row_counts(conn, "public")
        assert counts == {"facts": 500}
        answered = rows_of_views_over_one_table(conn, "public", [*views, "facts"], counts)
        assert answered == {"facts_as_of": 500}
        assert (
            answered["facts_as_of"]
            == conn.execute("select count(*) from public.facts_as_of").fetchone()[0]
        )
        # a view of another schema's table is not answered from this schema's counts
        conn.execute("create schema elsewhere")
        conn.execute("create view elsewhere.facts_view as select id from public.facts")
        assert rows_of_views_over_one_table(conn, "elsewhere", ["facts_view"], counts) == {}
        conn.rollback()
