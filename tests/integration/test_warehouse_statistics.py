"""ops.analyze_when_stale: the staleness rule every incremental model's post-hook and the
retired generation's copy use, on a real server."""

from __future__ import annotations

from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect


def _analyses(conn, table: str) -> int:
    return conn.execute(
        "select analyze_count from pg_stat_all_tables where relid = to_regclass(%s)", (table,)
    ).fetchone()[0]


def test_a_table_analyzed_in_the_transaction_that_wrote_it_is_not_analyzed_again_for_those_rows(
    fresh_database, reported_statistics
):
    bootstrap(fresh_database)

    def changes_counted_once_reported(expected: int) -> int:
        """n_mod_since_analyze of public.facts, once the writer's backend reported it."""
        rows = reported_statistics(
            fresh_database,
            "select n_mod_since_analyze from pg_stat_all_tables "
            "where relid = 'public.facts'::regclass",
            (),
            lambda rows: rows[0][0] == expected,
        )
        return rows[0][0]

    # Built and analyzed in one transaction, as dbt builds a table in full.
    with connect(fresh_database) as build:
        build.execute(
            "create table public.facts as select g as id from generate_series(1, 10000) g"
        )
        assert build.execute("select ops.analyze_when_stale('public.facts')").fetchone()[0]
        build.commit()
    # PostgreSQL counted the table's rows as changed after that ANALYZE...
    assert changes_counted_once_reported(10000) == 10000
    with connect(fresh_database) as conn:
        # ...yet the next build finds the statistics current.
        assert not conn.execute("select ops.analyze_when_stale('public.facts')").fetchone()[0]
        conn.commit()
        assert _analyses(conn, "public.facts") == 1

    with connect(fresh_database) as writer:
        # A tenth of the rows and 50 more changed since: stale again.
        writer.execute("update public.facts set id = id where id <= 1051")
        writer.commit()
    assert changes_counted_once_reported(10000 + 1051) == 10000 + 1051
    with connect(fresh_database) as conn:
        assert conn.execute("select ops.analyze_when_stale('public.facts')").fetchone()[0]
        conn.commit()
        assert _analyses(conn, "public.facts") == 2
        # This transaction's writes count too, before it commits.
        conn.execute("delete from public.facts where id <= 1100")
        assert conn.execute("select ops.analyze_when_stale('public.facts')").fetchone()[0]
        conn.commit()

        # The record of a dropped table goes at the next bootstrap.
        relation_id = conn.execute("select 'public.facts'::regclass::oid").fetchone()[0]
        conn.execute("drop table public.facts")
        conn.commit()
    bootstrap(fresh_database)
    with connect(fresh_database) as conn:
        assert (
            conn.execute(
                "select count(*) from ops.writes_counted_after_analyze where relation_id = %s",
                (relation_id,),
            ).fetchone()[0]
            == 0
        )
