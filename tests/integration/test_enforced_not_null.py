"""`enforced_not_null` set on a model checks every column it lists in the catalog, one failing
row per column that may hold nulls; a catalog test that names no column stops with a message
saying where the column goes. On a real dbt run against PostgreSQL with the project's own
macros and generic tests."""

from __future__ import annotations

import shutil

import pytest

from cem_warehouse import paths
from cem_warehouse.errors import CemError
from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.connection import connect

MODEL_TESTS = """
version: 2
models:
  - name: cells
    data_tests:
      - enforced_not_null:
          {arguments}
    columns:
      - name: cell_id
        description: the grain
"""


def _project(small_dbt_project):
    """The project, with one model whose post-hook makes two of its three columns NOT NULL;
    returns a function writing the model's test arguments."""
    generic_tests = (
        paths.dbt_project_dir() / "tests"
    )  # the warehouse's, before the fixture moves it
    models = small_dbt_project("enforced_not_null_check", with_macros=True)
    shutil.copytree(generic_tests, models.parent / "tests")
    (models / "cells.sql").write_text(
        "{{ config(materialized='table', post_hook=\"{{ set_not_null(['cell_id', 'total']) }}\") }}\n"
        "select 'a' as cell_id, 1 as total, cast(null as text) as note\n"
    )

    def test_with(arguments: str) -> None:
        (models / "_models.yml").write_text(MODEL_TESTS.format(arguments=arguments))

    return test_with


def test_a_model_level_test_fails_with_a_row_per_column_not_enforced(
    fresh_database, small_dbt_project
):
    test_with = _project(small_dbt_project)
    test_with("arguments:\n            columns: [cell_id, total]")
    run_dbt(fresh_database, ["build"])  # both NOT NULL: passes

    test_with("arguments:\n            columns: [cell_id, total, note]")
    with pytest.raises(
        CemError, match="enforced_not_null_cells_cell_id__total__note.*Got 1 result"
    ):
        run_dbt(fresh_database, ["test"])

    with connect(fresh_database) as conn:
        conn.execute("alter table public.cells alter column total drop not null")
        conn.commit()
    with pytest.raises(CemError, match="Got 2 results"):
        run_dbt(fresh_database, ["test"])


def test_a_catalog_test_naming_no_column_says_where_the_column_goes(
    fresh_database, small_dbt_project
):
    _project(small_dbt_project)("arguments: {}")
    with pytest.raises(CemError, match="enforced_not_null names no column"):
        run_dbt(fresh_database, ["build"])
