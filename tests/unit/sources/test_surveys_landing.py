"""Survey exports through fsspec: the same columns in CSV and JSON Lines, ISO-8601 UTC times."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pandas as pd
import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.sources.generator import model, run
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS
from cem_warehouse.sources.surveys import LandingWriter


@pytest.fixture(scope="module")
def responses():
    out, _, _ = model.generate_chunk(
        DEFAULT_PARAMS,
        2,
        0,
        1_000,
        model.Counters(),
        run._clock(DEFAULT_PARAMS),
        float(DEFAULT_PARAMS.history_days),
    )
    return out.tables["surveys"]["responses"]


@pytest.fixture
def landing() -> LandingWriter:
    return LandingWriter(f"memory://landing-{uuid.uuid4().hex}/surveys")


def test_csv_and_jsonl_carry_the_same_rows_and_columns(landing, responses) -> None:
    csv_path = landing.write("responses", responses, "2025-12-30", "part-0", "csv")
    jsonl_path = landing.write("responses", responses, "2025-12-30", "part-1", "jsonl")
    assert csv_path.endswith("/responses/export_date=2025-12-30/part-0.csv")
    from_csv = pd.read_csv(io.BytesIO(landing.fs.cat(csv_path)), dtype=str, keep_default_na=False)
    lines = landing.fs.cat(jsonl_path).decode("utf-8").splitlines()
    from_json = pd.DataFrame([json.loads(line) for line in lines])
    assert list(from_csv.columns) == list(from_json.columns) == responses.column_names
    assert len(from_csv) == len(from_json) == responses.num_rows
    assert from_csv["response_id"].astype(int).tolist() == from_json["response_id"].tolist()
    assert from_csv["responded_at"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()
    assert from_json["responded_at"].str.endswith("Z").all()
    # missing values: empty in CSV, null in JSON; comments keep commas, quotes and newlines
    relationship = from_json["touchpoint"] == "relationship"
    assert from_json.loc[relationship, "ces"].isna().all()
    assert (from_csv.loc[relationship.to_numpy(), "ces"] == "").all()
    assert from_csv["comment"].tolist() == from_json["comment"].fillna("").tolist()


def test_files_are_listed_across_export_dates(landing, responses) -> None:
    landing.write("responses", responses.slice(0, 5), "2025-12-30", "a", "csv")
    landing.write("responses", responses.slice(5, 5), "2025-12-29", "late", "csv")
    assert [p.rsplit("/", 2)[1] for p in landing.files("responses")] == [
        "export_date=2025-12-29",
        "export_date=2025-12-30",
    ]


def test_reset_empties_only_its_own_landing(landing, responses) -> None:
    landing.reset()
    landing.write("responses", responses.slice(0, 5), "2025-12-30", "a", "csv")
    landing.reset()
    assert landing.files("responses") == []
    foreign = LandingWriter(f"memory://landing-{uuid.uuid4().hex}/surveys")
    foreign.write_bytes("invitations", "2025-01-01", "theirs.csv", b"invitation_id\n1\n")
    with pytest.raises(CemError, match="not made by `cem generate`"):
        foreign.reset()
    assert foreign.files("invitations")


def test_survey_definitions_lists_serialise_as_json_text(landing) -> None:
    path = landing.write(
        "survey_definitions", model.survey_definitions(0), "2025-12-30", "defs", "csv"
    )
    frame = pd.read_csv(io.BytesIO(landing.fs.cat(path)))
    questions = json.loads(frame.loc[0, "questions"])
    assert "ltr" in questions and "switch_to_competitor" in questions
    assert np.array_equal(frame["touchpoint"], ["relationship", "post_purchase", "post_support"])
