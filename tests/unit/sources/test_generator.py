"""Determinism, bad-input mixing and the catalog's names, without a database."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cem_warehouse.sources.generator import catalog, model, run
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS

END = float(DEFAULT_PARAMS.history_days)


def _chunk(seed: int, n: int = 2_000, chunk_no: int = 0) -> model.Output:
    out, _, _ = model.generate_chunk(
        DEFAULT_PARAMS, seed, chunk_no, n, model.Counters(), run._clock(DEFAULT_PARAMS), END
    )
    return out


def test_same_seed_same_data() -> None:
    a, b = _chunk(5), _chunk(5)
    for source, entities in a.tables.items():
        for entity, table in entities.items():
            assert table.equals(b.tables[source][entity]), f"{source}.{entity} differs"


def test_other_seed_other_data() -> None:
    a, b = _chunk(5), _chunk(6)
    assert not a.tables["sales"]["orders"].equals(b.tables["sales"]["orders"])


def test_identity_is_a_function_of_the_customer_index() -> None:
    ident = model.identity(np.array([0, 1, 7_000_000]))
    again = model.identity(np.array([7_000_000]))
    assert ident["email"][2] == again["email"][0]
    assert len(set(ident["sales_account_id"].to_pylist())) == 3
    assert all(e == e.strip().lower() for e in ident["email"].to_pylist())


def test_vary_email_changes_only_case_and_whitespace() -> None:
    email = model.identity(np.arange(5_000))["email"]
    varied = model.vary_email(np.random.default_rng(1), email, 0.5)
    changed = np.array(varied.to_pylist()) != np.array(email.to_pylist())
    assert 0.4 < changed.mean() < 0.6
    assert [v.strip().lower() for v in varied.to_pylist()] == email.to_pylist()


def test_catalog_names_every_case_the_issue_lists() -> None:
    expected = {
        "duplicate_rows",
        "replay_changed_values",
        "malformed_csv_line",
        "wrong_types",
        "nul_bytes",
        "non_utf8_text",
        "ltr_out_of_range_high",
        "ltr_negative",
        "ltr_text",
        "ltr_blank",
        "email_case_whitespace",
        "orders_for_unknown_customer",
        "future_timestamp",
        "timestamp_without_timezone",
        "new_column",
        "missing_column",
        "empty_file",
        "cursor_timestamp_burst",
        "api_page_repeat",
        "api_timeout",
    }
    assert expected <= set(catalog.CASES)
    assert {c.source for c in catalog.CASES.values()} == {"surveys", "sales", "crm", "crm_api"}


def test_survey_catalog_files_contain_their_named_defect() -> None:
    ids = model.Counters()
    clock = run._clock(DEFAULT_PARAMS)
    files = catalog._survey_files(catalog._base_responses(ids, clock, END), clock)
    assert files["empty_file"] == b""
    assert b"\x00" in files["nul_bytes"]
    with pytest.raises(UnicodeDecodeError):
        files["non_utf8_text"].decode("utf-8")
    header = files["duplicate_rows"].decode().splitlines()
    assert len(header) == 1 + 2 * 6 and header[1] == header[7]
    assert b'"11"' in files["ltr_out_of_range_high"] and b'"-1"' in files["ltr_negative"]
    assert b"10 - very likely" in files["ltr_text"]
    assert b"nps_channel" in files["new_column"].splitlines()[0]
    assert b"comment" not in files["missing_column"].splitlines()[0]
    assert b"Z" not in b"".join(files["timestamp_without_timezone"].splitlines()[1:])
    assert b"2099-" in files["future_timestamp"]
    assert b"five" in files["wrong_types"] and b"yesterday" in files["wrong_types"]
    lines = files["malformed_csv_line"].decode().splitlines()
    assert any("unclosed" in line for line in lines) and any(
        line.endswith(",extra,fields") for line in lines
    )
    emails = files["email_case_whitespace"].decode()
    assert "  PAUL.SMITH0@EXAMPLE.COM " in emails


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_bad_rate_corrupts_about_that_share_of_rows(rate: float) -> None:
    out = _chunk(3, 5_000)
    before = out.tables["surveys"]["responses"].num_rows
    catalog.mix(out, np.random.default_rng(0), rate, run._clock(DEFAULT_PARAMS), END)
    responses = out.tables["surveys"]["responses"]
    ltr = responses.column("ltr").to_pylist()
    bad = np.mean([v in catalog.BAD_LTR for v in ltr[:before]])
    assert abs(bad - rate) < 0.02 + rate * 0.2
    duplicates = responses.num_rows - before
    assert abs(duplicates / before - rate / 2) < 0.02
    if rate == 0:
        assert all(v is None or pa.scalar(v).is_valid for v in ltr)
