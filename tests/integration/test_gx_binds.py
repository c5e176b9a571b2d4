"""GX's numeric bounds reach PostgreSQL as exact numbers (see cem_warehouse.quality.gx_binds)."""

from __future__ import annotations

import math

import psycopg

from cem_warehouse.quality.gx_binds import exact_bounds_adapters
from cem_warehouse.quality.gx_runner import SuiteRun
from cem_warehouse.warehouse.connection import connect

# 2**53 + 1: the first whole number a float8 cannot hold; as float8 it reads 2**53.
JUST_ABOVE = 2**53 + 1


def test_floats_bind_as_decimals_and_float8_only_for_what_numeric_lacks(fresh_database):
    with psycopg.connect(fresh_database.url, context=exact_bounds_adapters()) as conn:
        types = conn.execute(
            "select pg_typeof(%s)::text, pg_typeof(%s)::text, pg_typeof(%s)::text, "
            "pg_typeof(%s)::text",
            (1.0, 0.1, 1e20, float("inf")),
        ).fetchone()
        assert types == ("numeric", "numeric", "numeric", "double precision")
        # The decimal the suite's author wrote, not the binary float nearest to it.
        assert conn.execute("select %s = 0.1::numeric, %s::text", (0.1, 1e20)).fetchone() == (
            True,
            "100000000000000000000",
        )
        # A list is dumped by one item's dumper: every item keeps its value, none is cut to
        # a whole number or refused for an infinity among finite bounds.
        for bounds in ([0.25, 1.0, math.inf], [math.inf, 0.25, 1.0]):
            assert conn.execute("select %s", (bounds,)).fetchone()[0] == bounds
        # Ints and everything else bind as before.
        assert conn.execute("select pg_typeof(%s)::text", (7,)).fetchone()[0] == "smallint"


def test_a_suite_compares_a_numeric_column_with_its_bound_exactly(fresh_database):
    """GX turns the suite's ``max_value`` into a float. Bound as float8, the column's value
    would be rounded to 2**53 in every row and pass; bound exactly, it is found above the
    bound. Shows that GX's own connections use the exact binding."""
    with connect(fresh_database, autocommit=True) as conn:
        conn.execute("create table public.amounts (amount numeric(20, 0))")
        conn.execute("insert into public.amounts values (%s), (%s)", (JUST_ABOVE - 1, JUST_ABOVE))
    run = SuiteRun(
        fresh_database,
        schema="public",
        table="amounts",
        name="exact_bounds",
        expectations=[
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "amount", "max_value": JUST_ABOVE - 1},
                "meta": {"severity": "critical"},
            }
        ],
        sample_unexpected=False,
    )
    outcome = run.validate()
    (between,) = outcome.outcomes
    assert between.unexpected_count == 1
    assert not outcome.success
