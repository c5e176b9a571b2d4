"""The end-to-end slice against a real PostgreSQL: file -> COPY -> GX -> raw -> dbt mart."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.load.file_batch import load_csv_batch
from cem_warehouse.load.landing import SURVEY_RESPONSES, load_landed_files
from cem_warehouse.sources.thin_slice import COLUMNS, write_survey_responses
from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect


@pytest.fixture
def warehouse(fresh_database):
    bootstrap(fresh_database)
    return fresh_database


def _raw_rows(location):
    with connect(location) as conn:
        return conn.execute(
            "select response_id, respondent_email, touchpoint, responded_at, ltr, csat from raw.survey_responses order by 1"
        ).fetchall()


def test_landed_file_is_published_and_recorded(warehouse, tmp_path):
    export = write_survey_responses(tmp_path / "a.csv", responses=500, seed=7)
    summary = load_landed_files(warehouse, SURVEY_RESPONSES, tmp_path)
    assert summary == {
        "files_seen": 1,
        "files_loaded": 1,
        "files_skipped": 0,
        "rows_published": 500,
    }
    assert len(_raw_rows(warehouse)) == 500
    with connect(warehouse) as conn:
        batch = conn.execute(
            "select status, rows_received, rows_published, gx_success from ops.load_batches"
        ).fetchone()
        checks = conn.execute("select count(*), bool_and(success) from ops.dq_results").fetchone()
    assert batch == ("published", 500, 500, True)
    assert checks[0] >= 5 and checks[1] is True
    assert export.exists(), "the landed file is kept"


def test_reloading_the_same_file_changes_nothing(warehouse, tmp_path):
    write_survey_responses(tmp_path / "a.csv", responses=300, seed=3)
    load_landed_files(warehouse, SURVEY_RESPONSES, tmp_path)
    before = _raw_rows(warehouse)
    again = load_landed_files(warehouse, SURVEY_RESPONSES, tmp_path)
    assert again["files_skipped"] == 1
    # Forcing the same batch through the loader again is still an upsert, not a duplicate.
    load_csv_batch(warehouse, SURVEY_RESPONSES, tmp_path / "a.csv")
    assert _raw_rows(warehouse) == before


def test_a_corrected_replay_updates_rows_in_place(warehouse, tmp_path):
    path = write_survey_responses(tmp_path / "a.csv", responses=50, seed=5)
    load_csv_batch(warehouse, SURVEY_RESPONSES, path)
    rows = list(csv.DictReader(path.open()))
    rows[0]["ltr"] = "0" if rows[0]["ltr"] != "0" else "10"
    fixed = tmp_path / "b.csv"
    with fixed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    load_csv_batch(warehouse, SURVEY_RESPONSES, fixed)
    published = {r[0]: r[4] for r in _raw_rows(warehouse)}
    assert len(published) == 50
    assert published[rows[0]["response_id"]] == int(rows[0]["ltr"])


def test_batch_failing_a_critical_expectation_publishes_nothing(warehouse, tmp_path):
    path = write_survey_responses(tmp_path / "a.csv", responses=100, seed=1)
    text = path.read_text().splitlines()
    # LTR 11 is out of range: the batch must be blocked and the message must say so.
    fields = text[1].split(",")
    fields[4] = "11"
    text[1] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(
        CemError, match=r"expect_column_values_to_be_between\(ltr\) failed on 1 rows"
    ):
        load_csv_batch(warehouse, SURVEY_RESPONSES, path)
    with connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.survey_responses").fetchone() == (0,)
        status = conn.execute(
            "select status, rows_received, gx_success from ops.load_batches"
        ).fetchone()
        failed = conn.execute(
            "select expectation_type, column_name, unexpected_count from ops.dq_results where not success"
        ).fetchall()
    assert status == ("blocked", 100, False)
    assert failed == [("expect_column_values_to_be_between", "ltr", 1)]


def test_malformed_file_is_refused_with_the_line(warehouse, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        ",".join(COLUMNS)
        + "\nR1,a@x.com,relationship,2026-10-01T00:00:00+00:00,10 - very likely,5\n"
    )
    with pytest.raises(
        CemError, match="bad.csv is malformed: invalid input syntax for type integer.*line 2"
    ):
        load_csv_batch(warehouse, SURVEY_RESPONSES, path)


def _expected_nps(path: Path) -> dict[tuple[str, str], tuple[int, float, float]]:
    """NPS per month and touchpoint, recomputed in Python from the file itself."""
    counts: dict[tuple[str, str], Counter] = {}
    for row in csv.DictReader(path.open()):
        ltr = int(row["ltr"])
        key = (row["responded_at"][:7] + "-01", row["touchpoint"])
        category = "p" if ltr >= 9 else "d" if ltr <= 6 else "n"
        counts.setdefault(key, Counter())[category] += 1
    expected = {}
    for key, c in counts.items():
        n = sum(c.values())
        p, d = c["p"] / n, c["d"] / n
        expected[key] = (
            n,
            round(100 * (p - d), 2),
            round(1.96 * 100 * ((p + d - (p - d) ** 2) / n) ** 0.5, 2),
        )
    return expected


def test_dbt_builds_the_nps_mart_matching_independent_arithmetic(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    path = write_survey_responses(tmp_path / "landing" / "a.csv", responses=1500, seed=11)
    load_csv_batch(warehouse, SURVEY_RESPONSES, path)
    run_dbt(warehouse, ["build"])
    with connect(warehouse) as conn:
        rows = conn.execute(
            "select response_month::text, touchpoint, responses, nps, nps_margin_of_error from marts.fct_nps_monthly"
        ).fetchall()
    actual = {(m, t): (n, float(nps), float(moe)) for m, t, n, nps, moe in rows}
    assert actual == _expected_nps(path)


def test_bi_reader_role_sees_marts_but_not_raw(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    load_csv_batch(warehouse, SURVEY_RESPONSES, write_survey_responses(tmp_path / "a.csv", responses=40, seed=2))
    run_dbt(warehouse, ["build"])
    bootstrap(warehouse)  # twice in a row is fine, and grants reach tables built since
    with connect(warehouse) as conn:
        conn.execute("set role cem_reader")
        assert conn.execute("select sum(responses) from marts.fct_nps_monthly").fetchone() == (40,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from raw.survey_responses")
