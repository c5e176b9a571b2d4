"""`cem bench marts` reports how large each delta is: the rows it brought into raw.

The goal the benchmark checks speaks of a one-day delta as "about 1% new data"; the
benchmark says what the generator's day actually is, counted through raw's ``_loaded_at``.
Checked here against the load batches: a row the second ingestion brought carries a batch
id that raw did not hold before it.
"""

from __future__ import annotations

from psycopg import sql

from cem_warehouse.sources.contracts import BY_SOURCE
from cem_warehouse.sources.generator.run import generate_next_day
from cem_warehouse.transform.benchmark import (
    analyze_raw,
    days_for_about_one_percent,
    delta_shares,
    rows_loaded_since,
    server_clock,
)
from cem_warehouse.warehouse.connection import connect


def _batches(location, tables: list[str]) -> dict[str, set[str]]:
    with connect(location) as conn:
        return {
            table: {
                row[0]
                for row in conn.execute(
                    sql.SQL("select distinct _batch_id from {}").format(
                        sql.Identifier("raw", table)
                    )
                )
            }
            for table in tables
        }


def _rows_outside(location, batches: dict[str, set[str]]) -> dict[str, int]:
    with connect(location) as conn:
        return {
            table: int(
                conn.execute(
                    sql.SQL("select count(*) from {} where not (_batch_id = any(%s))").format(
                        sql.Identifier("raw", table)
                    ),
                    (sorted(known),),
                ).fetchone()[0]
            )
            for table, known in batches.items()
        }


def test_a_delta_is_counted_as_the_rows_its_ingestion_brought(stand_ins):
    warehouse = stand_ins.warehouse
    contracts = [contract for group in BY_SOURCE.values() for contract in group]
    tables = [contract.raw_table for contract in contracts]
    stand_ins.ingest_all()
    before = server_clock(warehouse)
    known = _batches(warehouse, tables)

    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    loaded = rows_loaded_since(warehouse, before)

    assert loaded == _rows_outside(warehouse, known)
    # The generator's day has new orders, their lines and CRM changes: a delta, not nothing.
    assert loaded["orders"] > 0 and loaded["order_lines"] > 0 and loaded["customers"] > 0

    sizes = delta_shares({"first_delta": loaded}, warehouse)["first_delta"]
    fingerprint = stand_ins.fingerprint(warehouse, contracts)
    held = {contract.raw_table: fingerprint[contract.entity][0] for contract in contracts}
    assert sizes["rows_loaded"] == sum(loaded.values())
    assert sizes["share_of_raw"] == round(sum(loaded.values()) / sum(held.values()), 5)
    assert 0 < sizes["share_of_raw"] < 1
    for table, figures in sizes["tables"].items():
        assert figures["raw_rows_at_end"] == held[table]
        assert figures["rows_loaded"] == loaded[table]


def test_about_one_percent_is_as_many_days_as_make_a_hundredth_of_raw(stand_ins):
    """The fifth build's delta: from raw's size as its statistics estimate it (no scan
    between builds), here made exact by ANALYZE, and one day's rows."""
    warehouse = stand_ins.warehouse
    contracts = [contract for group in BY_SOURCE.values() for contract in group]
    stand_ins.ingest_all()
    with connect(warehouse, autocommit=True) as conn:
        conn.execute("analyze")
    held = sum(rows for rows, _ in stand_ins.fingerprint(warehouse, contracts).values())
    assert held > 1000
    # As many days as come nearest to 1% of raw, and at least one.
    for day in (held // 1000, held // 300, held // 150):
        days = days_for_about_one_percent(warehouse, {"orders": day, "customers": 0})
        assert abs(days * day - 0.01 * held) <= day / 2, (day, days, held)
    assert days_for_about_one_percent(warehouse, {"orders": held // 20}) == 1


def test_the_last_build_follows_an_analyze_of_every_raw_table(stand_ins):
    """The sixth build's statistics: after a delta's load, every raw table and each of its
    partitions analyzed again, as the ingestion does once a tenth of a table changed."""
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    before = server_clock(warehouse)

    analyzed = analyze_raw(warehouse)

    declared = {contract.raw_table for group in BY_SOURCE.values() for contract in group}
    assert set(analyzed) == declared
    with connect(warehouse) as conn:
        stale = conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "left join pg_stat_all_tables s on s.relid = c.oid "
            "where n.nspname = 'raw' and c.relkind in ('r', 'p') "
            "and (s.last_analyze is null or s.last_analyze < %s)",
            (before,),
        ).fetchall()
    assert not stale, f"raw tables not analyzed after the delta: {stale}"
