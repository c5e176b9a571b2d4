"""Expectations the catalog answers: what PostgreSQL already refuses to store needs no scan.

PostgreSQL refuses every write that breaks a unique index, a NOT NULL or a validated CHECK
constraint, so a table that has one cannot break the rule: GX would prove it again with a
scan of the whole table. The marts' audit finds the constraints dbt's post-hooks add
(``enforce_between``, ``enforce_accepted_values``); the batch loader adds the same ones to a
batch it lands typed (``load.tables.add_suite_constraints``), so its COPY checks each row as
it arrives. The names spell the rule, so a constraint made for other bounds or values never
answers for these.

A table's row count is answered the same way when the table keeps it: statement triggers on
its writes update ``ops.kept_row_counts`` in the writing transaction, so the count is as
exact as GX's ``count(*)``, without reading the table.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql


def between_constraint_name(
    column: str, min_value: float | None = None, max_value: float | None = None
) -> str:
    """The CHECK constraint that keeps ``column`` within the bounds (the dbt post-hook
    ``enforce_between``, macros/enforce_between.sql, builds the same name)."""

    def bound(value: float | None) -> str:
        return "any" if value is None else str(value).replace("-", "minus").replace(".", "p")

    return f"{column}_between_{bound(min_value)}_and_{bound(max_value)}"


def accepted_values_constraint_name(column: str, values: list) -> str:
    """The CHECK constraint that keeps ``column`` to ``values`` (the dbt post-hook
    ``enforce_accepted_values``: a hash of the values, in their order)."""
    return f"{column}_accepted_values_{hashlib.md5('|'.join(map(str, values)).encode()).hexdigest()[:8]}"


def not_null_constraint_name(column: str) -> str:
    """A CHECK constraint standing in for NOT NULL on a batch table: unlike a NOT NULL it
    can be dropped without touching the column, so the table still matches raw's columns
    when it becomes raw's partition."""
    return f"{column}_is_not_null"


def constraint_name(expectation: dict) -> str | None:
    """The CHECK constraint that would enforce ``expectation`` in every row, or None for a
    form the catalog does not answer: no ``mostly``, no strict bounds, nothing GX reads in
    another way. Like GX's checks, the constraints let nulls through (except not-null)."""
    kwargs = expectation.get("kwargs", {})
    column = kwargs.get("column")
    kind = expectation["type"]
    if kind == "expect_column_values_to_not_be_null" and set(kwargs) == {"column"}:
        return not_null_constraint_name(column)
    if kind == "expect_column_values_to_be_between" and set(kwargs) <= {
        "column",
        "min_value",
        "max_value",
    }:
        return between_constraint_name(column, kwargs.get("min_value"), kwargs.get("max_value"))
    if kind == "expect_column_values_to_be_in_set" and set(kwargs) == {"column", "value_set"}:
        return accepted_values_constraint_name(column, kwargs["value_set"])
    return None


def _unique_index(conn: psycopg.Connection, relation: str, column: str) -> str | None:
    """The name of a valid, whole-table unique index on exactly ``column``."""
    row = conn.execute(
        "select i.indexrelid::regclass::text from pg_index i "
        "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0] "
        "where i.indrelid = %s::regclass "
        "and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null "
        "and i.indnkeyatts = 1 and a.attname = %s limit 1",
        (relation, column),
    ).fetchone()
    return row[0] if row else None


# The triggers ops.keep_row_count puts on a table whose rows it keeps (warehouse/bootstrap.py).
ROW_COUNT_TRIGGERS = (
    "row_count_kept_on_insert",
    "row_count_kept_on_delete",
    "row_count_kept_on_truncate",
)


def kept_row_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """The rows of every table of ``schema`` whose write triggers keep them
    (ops.kept_row_counts), by table name, in one lookup. A table is left out when it is not
    kept: no count recorded, or any of the three triggers missing or disabled (a write they
    did not see could have changed the rows)."""
    if conn.execute("select to_regclass('ops.kept_row_counts')").fetchone()[0] is None:
        return {}  # a warehouse not bootstrapped since the table came in
    rows = conn.execute(
        "select c.relname, kept.row_count from ops.kept_row_counts as kept "
        "join pg_catalog.pg_class as c on c.oid = kept.counted_table "
        "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
        "where n.nspname = %s "
        "and (select count(*) from pg_catalog.pg_trigger where tgrelid = kept.counted_table "
        "and tgenabled = 'O' and tgname = any(%s)) = %s",
        (schema, list(ROW_COUNT_TRIGGERS), len(ROW_COUNT_TRIGGERS)),
    ).fetchall()
    return {table: int(count) for table, count in rows}


def kept_row_count(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    """The rows of ``schema.table`` as its write triggers keep them, or None when it is not
    kept (:func:`kept_row_counts`)."""
    return kept_row_counts(conn, schema).get(table)


def rows_of_views_over_one_table(
    conn: psycopg.Connection, schema: str, names: list[str], counts: dict[str, int]
) -> dict[str, int]:
    """The rows of each view among ``names`` (in ``schema``) that reads every row of one
    table of ``schema`` and nothing else, as ``counts`` gives that table's: such a view has
    exactly as many rows. Other names, views that filter, join or aggregate, and views over
    a table ``counts`` lacks are left out (their count is taken by scanning them).

    PostgreSQL's plan of ``select 1`` from the view tells: one sequential scan of one
    relation, with no filter and nothing below it (the marts' per-customer views, which add
    as-of columns to one stored table, plan so: their scalar subqueries go unread). A
    ``count(*)`` of each of three such million-row views took 56-84 ms of every publication
    at 1M customers, under the publishers' lock (docs/operations/marts.md, "Stop 66")."""
    views = {
        row[0]
        for row in conn.execute(
            "select c.relname from pg_catalog.pg_class as c "
            "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind = 'v' and c.relname = any(%s)",
            (schema, names),
        )
    }
    answered: dict[str, int] = {}
    for view in sorted(views):
        explained = conn.execute(
            sql.SQL("explain (verbose, format json) select 1 from {}.{}").format(
                sql.Identifier(schema), sql.Identifier(view)
            )
        ).fetchone()[0]
        plan = explained[0]["Plan"]
        reads_one_table_whole = (
            plan.get("Node Type") == "Seq Scan"
            and plan.get("Schema") == schema
            and not plan.get("Plans")
            and "Filter" not in plan
        )
        table = plan.get("Relation Name")
        if reads_one_table_whole and table in counts:
            answered[view] = counts[table]
    return answered


# The default of ``kept_rows`` below: the caller has not looked the count up.
_NOT_LOOKED_UP = object()


def row_count_answer(count: int | None, expectation: dict) -> str | None:
    """The answer to a row-count expectation from a kept ``count``: only when the count
    meets it. A count outside the bounds is left to GX, which counts again and reports the
    failure as it reports every other (observed value, Data Docs)."""
    kwargs = expectation.get("kwargs", {})
    kind = expectation["type"]
    if count is None:
        return None
    if kind == "expect_table_row_count_to_be_between" and set(kwargs) <= {"min_value", "max_value"}:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        holds = (low is None or count >= low) and (high is None or count <= high)
    elif kind == "expect_table_row_count_to_equal" and set(kwargs) == {"value"}:
        holds = count == kwargs["value"]
    else:
        return None
    return (
        f"{count} rows, counted by the table's write triggers (ops.kept_row_counts)"
        if holds
        else None
    )


def catalog_answer(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    expectation: dict,
    kept_rows: int | None | object = _NOT_LOOKED_UP,
) -> str | None:
    """What in the catalog makes ``expectation`` hold for every row of ``schema.table`` (or
    of any view selecting from it), or None when nothing does and GX must scan. A unique
    index lets nulls repeat, as GX's uniqueness check does. ``kept_rows``: the table's
    :func:`kept_row_count`, when the caller has it already."""
    relation = sql.Identifier(schema, table).as_string(conn)
    kwargs = expectation.get("kwargs", {})
    column = kwargs.get("column")
    kind = expectation["type"]
    if kind.startswith("expect_table_row_count_"):
        if kept_rows is _NOT_LOOKED_UP:
            kept_rows = kept_row_count(conn, schema, table)
        return row_count_answer(kept_rows, expectation)
    if kind == "expect_column_values_to_be_unique" and set(kwargs) == {"column"}:
        index = _unique_index(conn, relation, column)
        return f"enforced by unique index {index}" if index else None
    if kind == "expect_column_values_to_not_be_null" and set(kwargs) == {"column"}:
        not_null = conn.execute(
            "select attnotnull from pg_attribute where attrelid = %s::regclass "
            "and attname = %s and not attisdropped",
            (relation, column),
        ).fetchone()
        if not_null and not_null[0]:
            return "enforced by the column's NOT NULL"
    name = constraint_name(expectation)
    if name is None:
        return None
    validated = conn.execute(
        "select 1 from pg_constraint where conrelid = %s::regclass "
        "and conname = %s and contype = 'c' and convalidated",
        (relation, name),
    ).fetchone()
    return f"enforced by CHECK constraint {name}" if validated else None


def answered_by_the_catalog(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    expectations: list[dict],
    kept_rows: int | None | object = _NOT_LOOKED_UP,
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Splits a suite into the expectations GX still has to run on ``schema.table`` and
    those the catalog answers, each with its answer (see :func:`catalog_answer`). The kept
    row count is looked up once for all the row-count expectations (unless the caller
    passes it as ``kept_rows``)."""
    if kept_rows is _NOT_LOOKED_UP and any(
        expectation["type"].startswith("expect_table_row_count_") for expectation in expectations
    ):
        kept_rows = kept_row_count(conn, schema, table)
    remaining, answered = [], []
    for expectation in expectations:
        answer = catalog_answer(conn, schema, table, expectation, kept_rows)
        if answer is None:
            remaining.append(expectation)
        else:
            answered.append((expectation, answer))
    return remaining, answered
