"""Expectations the catalog answers: what PostgreSQL already refuses to store needs no scan.

PostgreSQL refuses every write that breaks a unique index, a NOT NULL or a validated CHECK
constraint, so a table that has one cannot break the rule: GX would prove it again with a
scan of the whole table. The marts' audit finds the constraints dbt's post-hooks add
(``enforce_between``, ``enforce_accepted_values``); the batch loader adds the same ones to a
batch it lands typed (``load.tables.add_suite_constraints``), so its COPY checks each row as
it arrives. The names spell the rule, so a constraint made for other bounds or values never
answers for these.
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


def catalog_answer(
    conn: psycopg.Connection, schema: str, table: str, expectation: dict
) -> str | None:
    """What in the catalog makes ``expectation`` hold for every row of ``schema.table`` (or
    of any view selecting from it), or None when nothing does and GX must scan. A unique
    index lets nulls repeat, as GX's uniqueness check does."""
    relation = sql.Identifier(schema, table).as_string(conn)
    kwargs = expectation.get("kwargs", {})
    column = kwargs.get("column")
    kind = expectation["type"]
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
    conn: psycopg.Connection, schema: str, table: str, expectations: list[dict]
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Splits a suite into the expectations GX still has to run on ``schema.table`` and
    those the catalog answers, each with its answer (see :func:`catalog_answer`)."""
    remaining, answered = [], []
    for expectation in expectations:
        answer = catalog_answer(conn, schema, table, expectation)
        if answer is None:
            remaining.append(expectation)
        else:
            answered.append((expectation, answer))
    return remaining, answered
