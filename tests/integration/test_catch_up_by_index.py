"""The catch-up after a publication replaces a mart's changed rows by its unique index while
they are under a tenth of the mart (transform/generations.py, PROBE_BY_INDEX_UNDER_SHARE),
and leaves the planner's join settings as they were for the next mart in the same
transaction. On a real PostgreSQL, with a small mart in both generations."""

from __future__ import annotations

import pytest

from cem_warehouse.transform import generations
from cem_warehouse.transform.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect

ROWS = 1000
MART = generations.LoggedMart(
    name="catch_up_probe",
    unique_key="row_id",
    rows_log=f"{BUILD_SCHEMA}.catch_up_probe#rows",
    reads_change_log=False,
)


@pytest.fixture
def two_generations(fresh_database):
    """The mart in both generations, equal, analyzed; nothing logged yet."""
    bootstrap(fresh_database)
    with connect(fresh_database) as conn:
        for schema in (PUBLISHED_SCHEMA, BUILD_SCHEMA):
            conn.execute(f"create schema if not exists {schema}")
            conn.execute(
                f"create table {schema}.{MART.name} (row_id bigint primary key, value text)"
            )
            conn.execute(
                f"insert into {schema}.{MART.name} "
                "select n, 'day 0' from generate_series(1, %s) as n",
                (ROWS,),
            )
            conn.execute(f"analyze {schema}.{MART.name}")
        conn.commit()
    return fresh_database


def _publish_changes(conn, changed: range, removed: range) -> tuple[int, int]:
    """The published generation changes ``changed`` rows and loses ``removed``, and logs
    their keys as the build would, in no order; returns the log's positions before and
    after."""
    since = conn.execute("select coalesce(max(change_id), 0) from ops.mart_key_changes").fetchone()[
        0
    ]
    published = f"{PUBLISHED_SCHEMA}.{MART.name}"
    conn.execute(
        f"update {published} set value = 'day 1' where row_id between %s and %s",
        (changed.start, changed.stop - 1),
    )
    conn.execute(
        f"delete from {published} where row_id between %s and %s", (removed.start, removed.stop - 1)
    )
    conn.execute(
        "insert into ops.mart_key_changes (producer, key_value) "
        "select * from (select %s, cast(n as text) from generate_series(%s::bigint, %s::bigint) as n "
        "union all select %s, cast(n as text) from generate_series(%s::bigint, %s::bigint) as n) "
        "as logged order by random()",
        (
            MART.rows_log,
            changed.start,
            changed.stop - 1,
            MART.rows_log,
            removed.start,
            removed.stop - 1,
        ),
    )
    until = conn.execute("select max(change_id) from ops.mart_key_changes").fetchone()[0]
    return since, until


def _generations_differ(conn) -> int:
    return conn.execute(
        f"select count(*) from ("
        f"(select * from {PUBLISHED_SCHEMA}.{MART.name} except select * from {BUILD_SCHEMA}.{MART.name}) "
        f"union all "
        f"(select * from {BUILD_SCHEMA}.{MART.name} except select * from {PUBLISHED_SCHEMA}.{MART.name})"
        f") as difference"
    ).fetchone()[0]


def _join_settings(conn) -> tuple[str, str]:
    return conn.execute(
        "select current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
    ).fetchone()


@pytest.mark.parametrize(
    ("changed", "removed", "by_index"),
    [
        (range(10, 40), range(900, 905), True),  # 35 keys of 1000: by the unique index
        (range(1, 301), range(900, 950), False),  # 350 keys: the planner's choice
    ],
)
def test_catch_up_replaces_the_logged_rows_and_restores_the_join_settings(
    two_generations, changed, removed, by_index
):
    with connect(two_generations) as conn:
        since, until = _publish_changes(conn, changed, removed)
        conn.commit()
        keys = len(changed) + len(removed)
        assert (
            generations._is_small_share(conn, keys, f'{PUBLISHED_SCHEMA}."{MART.name}"') is by_index
        )
        # a changed row differs both ways, a removed one only one way
        assert _generations_differ(conn) == 2 * len(changed) + len(removed)

        before = _join_settings(conn)
        plan = generations._plan(conn, MART, since, until)
        assert plan.skipped is None and plan.copy_reason is None
        outcome = generations._catch_up(conn, MART, plan, since, until)

        assert outcome == f"caught up: {keys} rows removed, {len(changed)} written"
        assert _generations_differ(conn) == 0
        # written in key order, not in the order the log's keys came (leaf pages of the
        # unique index in turn, not at random)
        written = [
            row_id
            for (row_id,) in conn.execute(
                f"select row_id from {BUILD_SCHEMA}.{MART.name} "
                "where row_id between %s and %s order by ctid",
                (changed.start, changed.stop - 1),
            )
        ]
        assert written == sorted(written)
        # the worker's next mart, in the same transaction, plans as before
        assert _join_settings(conn) == before == ("on", "on")
        conn.rollback()


def test_a_mart_without_an_estimate_is_left_to_the_planner(fresh_database):
    with connect(fresh_database) as conn:
        conn.execute("create table never_analyzed (row_id bigint primary key)")
        conn.execute("insert into never_analyzed select generate_series(1, 1000)")
        assert generations._is_small_share(conn, 1, "never_analyzed") is False
        conn.execute("analyze never_analyzed")
        assert generations._is_small_share(conn, 1, "never_analyzed") is True
        assert generations._is_small_share(conn, 100, "never_analyzed") is False
