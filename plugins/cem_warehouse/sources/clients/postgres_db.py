"""Extract tables of an operational PostgreSQL database (sales) with COPY, incrementally.

Each pull reads ``updated_at >= cursor - look-back``: rows committed during the previous
pull with an earlier timestamp (long transactions) fall inside the look-back window and
arrive on the next pull; re-read rows are harmless because the publish is an upsert.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import sql

from cem_warehouse.load.batch import IncomingBatch
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.sources.clients.spool import CsvSpool
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

_TYPE_ALIASES = {
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "character varying": "text",
    "double precision": "float8",
}


def canonical_type(name: str) -> str:
    name = name.lower().strip()
    base = name.split("(")[0].strip()
    if base in _TYPE_ALIASES:
        return _TYPE_ALIASES[base]
    return name.replace(", ", ",")


def source_columns(
    location: WarehouseLocation, table: str, schema: str = "public"
) -> dict[str, str]:
    with connect(location) as conn:
        rows = conn.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped order by attnum",
            (f"{schema}.{table}",),
        ).fetchall()
    return {name: canonical_type(kind) for name, kind in rows}


def extract_table(
    location: WarehouseLocation,
    contract: EntityContract,
    cursor: str | None,
    lookback_minutes: int,
    *,
    schema: str = "public",
) -> IncomingBatch:
    columns = source_columns(location, contract.entity, schema)
    if not columns:
        from cem_warehouse.errors import CemError

        raise CemError(
            f"the sales database has no table {schema}.{contract.entity}: check the cem_source_sales connection."
        )
    names = list(columns)
    query = sql.SQL("select {cols} from {schema}.{table}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in names),
        schema=sql.Identifier(schema),
        table=sql.Identifier(contract.entity),
    )
    if cursor and contract.cursor_column:
        since = datetime.fromisoformat(cursor) - timedelta(minutes=lookback_minutes)
        query = sql.SQL("{} where {} >= {}").format(
            query, sql.Identifier(contract.cursor_column), sql.Literal(since)
        )
    unordered = query
    key = sql.SQL(", ").join(sql.Identifier(k) for k in contract.natural_key)
    order = sql.Identifier(contract.cursor_column) if contract.cursor_column else key
    query = sql.SQL("{} order by {}, {}").format(query, order, key)

    spool = CsvSpool(names)
    spool.close()
    newest = None
    with connect(location) as conn, conn.cursor() as cur, spool.path.open("wb") as out:
        # One REPEATABLE READ snapshot: the batch is a consistent picture of the table.
        conn.execute("set transaction isolation level repeatable read")
        with cur.copy(sql.SQL("copy ({}) to stdout (format csv)").format(query)) as copy:
            for chunk in copy:
                out.write(chunk)
        if contract.cursor_column and _cursor_is_typed_alike(contract, columns):
            # The batch's newest cursor value, read in the same snapshot as its rows: with an
            # index on the cursor column (an incremental pull needs one anyway) one index
            # lookup here, where the warehouse would scan every landed row for it.
            newest = conn.execute(
                sql.SQL("select max({cursor})::text from ({rows}) as batch").format(
                    cursor=sql.Identifier(contract.cursor_column), rows=unordered
                )
            ).fetchone()[0]
    return IncomingBatch(
        columns=names,
        chunks=spool.chunks,
        cursor_from=cursor,
        newest_cursor_value=newest,
        source_types=columns,
        trusted_types=True,
        cleanup=spool.discard,
        description=f"{schema}.{contract.entity} since {cursor or 'the beginning'}",
    )


def _cursor_is_typed_alike(contract: EntityContract, columns: dict[str, str]) -> bool:
    """Whether the source orders the cursor column as raw does (a text column holding
    times would give the greatest string, not the newest time)."""
    column = contract.cursor_column
    return column in columns and columns[column] == contract.column(column).type
