"""`cem status`: the last load batches per source and what was quarantined or blocked."""

from __future__ import annotations

from psycopg import sql
from rich.console import Console
from rich.table import Table

from cem_warehouse.transform.publish import CATCH_UP_FAILED_ADVICE
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import warehouse_location

console = Console()


def print_status(limit_per_source: int = 5) -> int:
    location = warehouse_location()
    with connect(location) as conn:
        exists = conn.execute("select to_regclass('ops.load_batches')").fetchone()[0]
        if exists is None:
            console.print("No loads yet: run `cem run` (or `make demo`).")
            return 0
        rows = conn.execute(
            """
            select source, entity, batch_id, status, rows_received, rows_published, rows_quarantined,
                   started_at, finished_at, coalesce(message, '')
            from (
                select *, row_number() over (partition by source order by started_at desc) as recency
                from ops.load_batches
            ) as ranked
            where recency <= %s
            order by source, started_at desc
            """,
            (limit_per_source,),
        ).fetchall()
    table = Table(title=f"Last load batches per source ({location.redacted_url})")
    for column in (
        "source",
        "entity",
        "batch",
        "status",
        "received",
        "published",
        "quarantined",
        "finished",
        "message",
    ):
        table.add_column(column)
    for (
        source,
        entity,
        batch,
        status,
        received,
        published,
        quarantined,
        _started,
        finished,
        message,
    ) in rows:
        colour = {"published": "green", "blocked": "red", "failed": "red"}.get(status, "yellow")
        table.add_row(
            source,
            entity,
            batch,
            f"[{colour}]{status}[/{colour}]",
            str(received),
            str(published),
            str(quarantined),
            f"{finished:%Y-%m-%d %H:%M}" if finished else "-",
            message[:80],
        )
    console.print(table)
    print_quarantine(location)
    print_marts(location)
    return 0


def print_quarantine(location) -> None:
    """Rows held back per entity, with the most frequent reasons: what to look at first."""
    with connect(location) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select tablename from pg_tables where schemaname = 'quarantine' order by tablename"
            )
        ]
        rows = []
        for name in tables:
            rows += conn.execute(
                sql.SQL(
                    "select {name}, reason, count(*), max(quarantined_at) from quarantine.{table} "
                    "group by reason order by count(*) desc limit 3"
                ).format(name=sql.Literal(name), table=sql.Identifier(name))
            ).fetchall()
    if not rows:
        console.print("No quarantined rows.")
        return
    table = Table(title="Quarantined rows (quarantine.<entity>; payload and batch id kept there)")
    for column in ("entity", "reason", "rows", "latest"):
        table.add_column(column)
    for entity, reason, count, latest in rows:
        table.add_row(entity, reason[:90], f"{count:,}", f"{latest:%Y-%m-%d %H:%M}")
    console.print(table)


def print_marts(location) -> None:
    """Which build analysts are reading, and whether a later build was held back by its audit."""
    with connect(location) as conn:
        if conn.execute("select to_regclass('ops.mart_publications')").fetchone()[0] is None:
            return
        last = conn.execute(
            "select publication_id, as_of_date, published_at, tables, "
            "retired_generation -> 'error' from ops.mart_publications "
            "order by publication_id desc limit 1"
        ).fetchone()
        held_back = conn.execute(
            "select batch_id, count(*), max(checked_at), "
            "string_agg(distinct suite_name || ': ' || expectation_type || coalesce('(' || column_name || ')', ''), '; ') "
            "from ops.dq_results where batch_id like 'marts-%%' and not success "
            "and checked_at > coalesce(%s, '-infinity'::timestamptz) "
            "group by batch_id order by max(checked_at) desc limit 1",
            (last[2] if last else None,),
        ).fetchone()
    if last is None:
        console.print("Marts: not published yet (`cem run` builds, audits and publishes them).")
    else:
        publication_id, as_of, published_at, tables, catch_up_error = last
        console.print(
            f"Marts: publication {publication_id}, as of {as_of}, published {published_at:%Y-%m-%d %H:%M} UTC, "
            f"{len(tables)} tables ({tables.get('dim_customers', 0):,} customers)."
        )
        if catch_up_error:
            console.print(
                f"[yellow]marts_build was not brought up to this publication[/yellow] "
                f"({catch_up_error[:300]}); {CATCH_UP_FAILED_ADVICE}"
            )
    if held_back:
        audit_id, failures, checked_at, checks = held_back
        console.print(
            f"[red]A later build was NOT published[/red]: audit {audit_id} at {checked_at:%Y-%m-%d %H:%M} UTC, "
            f"{failures} failed check(s): {checks[:300]}. Analysts still see the publication above."
        )
