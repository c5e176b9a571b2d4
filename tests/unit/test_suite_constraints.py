"""The CHECK constraints a typed batch lands with: named as the catalog looks them up."""

from __future__ import annotations

import pytest

from cem_warehouse.load.contracts import Column, EntityContract
from cem_warehouse.load.tables import suite_constraints
from cem_warehouse.quality import gx_runner
from cem_warehouse.quality.catalog_answers import constraint_name

CONTRACT = EntityContract(
    source="surveys",
    entity="probe",
    columns=(
        Column("response_id", "text", nullable=False),
        Column("ltr", "integer"),
        Column("touchpoint", "text"),
        Column("a_column_whose_name_is_long_enough_to_overflow_postgres", "integer"),
    ),
    natural_key=("response_id",),
)


@pytest.fixture
def suite(monkeypatch):
    expectations = []
    monkeypatch.setattr(
        gx_runner,
        "load_suite_definition",
        lambda name: {"name": name, "expectations": expectations},
    )
    return expectations


def rule(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs}


def test_each_rule_the_catalog_can_answer_becomes_one_constraint_with_its_name(suite):
    between = rule("expect_column_values_to_be_between", column="ltr", min_value=0, max_value=10)
    in_set = rule("expect_column_values_to_be_in_set", column="touchpoint", value_set=["a", "b"])
    not_null = rule("expect_column_values_to_not_be_null", column="ltr")
    suite += [between, dict(between), in_set, not_null]
    checks = dict(suite_constraints(CONTRACT))
    assert list(checks) == [constraint_name(between), constraint_name(in_set), "ltr_is_not_null"]
    assert checks["ltr_between_0_and_10"].as_string(None) == (
        'not ("ltr" is not null and not ("ltr" between 0 and 10))'
    )


def test_rules_no_constraint_answers_for_are_left_to_gx(suite):
    suite += [
        # GX reads these another way: no constraint would say the same.
        rule("expect_column_values_to_match_regex", column="touchpoint", regex="^[a-z]+$"),
        rule("expect_column_values_to_be_between", column="ltr", min_value=0, mostly=0.9),
        # PostgreSQL would cut this name short, and the catalog would not find it.
        rule(
            "expect_column_values_to_be_between",
            column="a_column_whose_name_is_long_enough_to_overflow_postgres",
            min_value=0,
            max_value=1000,
        ),
    ]
    assert suite_constraints(CONTRACT) == []
