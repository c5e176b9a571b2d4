"""`cem bench marts` reports how large each delta is: the rows it brought into raw.

The goal the benchmark checks speaks of a one-day delta as "about 1% new data"; the
benchmark says what the generator's day actually is, counted through raw's ``_loaded_at``.
Checked here against the load batches: a row the second ingestion brought carries a batch
id that raw did not hold before it.
"""

from __future__ import annotations

from psycopg import sql

from cem_warehouse.sources.generator.run import generate_next_day
from cem_warehouse.transform.benchmark import delta_shares, rows_loaded_since, server_clock
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
    stand_ins.ingest_all()
    before = server_clock(warehouse)
    with connect(warehouse) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'raw' and c.relkind in ('r', 'p') and not c.relispartition"
            )
        ]
    known = _batches(warehouse, tables)

    generate_next_day(stand_ins.targets)
    stand_ins.ingest_all()
    loaded = rows_loaded_since(warehouse, before)

    assert loaded == _rows_outside(warehouse, known)
    # The generator's day has new orders, their lines and CRM changes: a delta, not nothing.
    assert loaded["orders"] > 0 and loaded["order_lines"] > 0 and loaded["customers"] > 0

    sizes = delta_shares({"first_delta": loaded}, warehouse)["first_delta"]
    with connect(warehouse) as conn:
        held = {
            table: int(
                conn.execute(
                    sql.SQL("select count(*) from {}").format(sql.Identifier("raw", table))
                ).fetchone()[0]
            )
            for table in tables
        }
    assert sizes["rows_loaded"] == sum(loaded.values())
    assert sizes["share_of_raw"] == round(sum(loaded.values()) / sum(held.values()), 5)
    assert 0 < sizes["share_of_raw"] < 1
    for table, figures in sizes["tables"].items():
        assert figures["raw_rows_at_end"] == held[table]
        assert figures["rows_loaded"] == loaded[table]
