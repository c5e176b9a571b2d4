"""docs/sources/*.md and the stand-ins agree: every documented entity, key and field is what
the generator writes, and nothing undocumented is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cem_warehouse.sources import crm, sales, surveys
from cem_warehouse.sources.generator import model, run
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sources"
HEADING = re.compile(r"^### `(?P<name>\w+)` — key `(?P<key>\w+)`")


def documented(source: str) -> dict[str, tuple[str, list[str]]]:
    """{entity: (key, [fields])} from the ### sections' tables."""
    entities, current = {}, None
    for line in (DOCS / f"{source}.md").read_text().splitlines():
        match = HEADING.match(line)
        if match:
            current = match["name"]
            entities[current] = (match["key"], [])
        elif line.startswith("## "):
            current = None
        elif (
            current
            and line.startswith("| ")
            and not line.startswith(("| Field", "| Column", "|---"))
        ):
            cell = line.split("|")[1].strip()
            entities[current][1].extend(f.strip() for f in cell.split(","))
    return entities


@pytest.fixture(scope="module")
def generated() -> dict[str, dict]:
    out, _, _ = model.generate_chunk(
        DEFAULT_PARAMS,
        1,
        0,
        2_000,
        model.Counters(),
        run._clock(DEFAULT_PARAMS),
        float(DEFAULT_PARAMS.history_days),
    )
    tables = out.tables
    tables["sales"]["products"] = model.product_table(0)
    tables["surveys"]["survey_definitions"] = model.survey_definitions(0)
    return tables


ALWAYS = {"created_at", "updated_at"}


@pytest.mark.parametrize(
    "source, streams",
    [
        ("crm", {s.name: s.primary_key for s in crm.STREAMS}),
        ("sales", {s.name: s.primary_key for s in sales.STREAMS}),
        ("surveys", surveys.KEYS),
    ],
)
def test_documented_entities_keys_and_fields_match_the_stand_in(generated, source, streams) -> None:
    docs = documented(source)
    assert set(docs) == set(streams)
    for entity, (key, fields) in docs.items():
        assert key == streams[entity], entity
        columns = set(generated[source][entity].column_names)
        expected = set(fields) | (ALWAYS if source == "sales" else set())
        assert columns == expected, (
            f"{source}.{entity}: undocumented {columns - expected}, missing {expected - columns}"
        )


def test_every_sales_table_has_updated_at_and_a_key_in_the_ddl() -> None:
    for stream in sales.STREAMS:
        block = sales.DDL.split(f"create table {stream.name} (")[1].split(");")[0]
        assert "updated_at timestamptz not null" in block
        assert f"{stream.primary_key} " in block
    assert all(
        f"add primary key ({s.primary_key})" in " ".join(sales.CONSTRAINTS) for s in sales.STREAMS
    )
