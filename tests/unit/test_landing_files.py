"""Export-file parsing: every line either becomes a row or a rejection with its reason."""

import io

import pytest

from cem_warehouse.sources.clients.landing_files import spool_csv, spool_jsonl


def _csv(data: bytes, append=None):
    rejected: list[tuple[str, str]] = []
    spool = spool_csv(io.BytesIO(data), rejected, append or {})
    rows = [line for line in spool.path.read_text().splitlines()]
    spool.discard()
    return spool.columns, rows, rejected


def test_good_csv_is_normalised_and_gets_constant_columns():
    columns, rows, rejected = _csv(b'Response_ID, LTR\n1,9\n2,"10"\n', {"_source_file": "a.csv"})
    assert columns == ["response_id", "ltr", "_source_file"]
    assert rows == ["1,9,a.csv", "2,10,a.csv"]
    assert rejected == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"3,ok\x00bad\n", "contains NUL bytes"),
        ("4,caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        (b"5,1,extra\n", "3 fields, header has 2"),
    ],
)
def test_untrustworthy_lines_are_rejected_with_the_reason(line, reason):
    columns, rows, rejected = _csv(b"id,comment\n1,fine\n" + line + b"2,also fine\n")
    assert rows == ["1,fine", "2,also fine"]
    assert len(rejected) == 1 and reason in rejected[0][1]
    assert rejected[0][0], "the raw line is kept as the payload"


def test_quoted_newlines_and_commas_survive():
    columns, rows, rejected = _csv(b'id,comment\n1,"line one\nline two, with comma"\n')
    assert rejected == []
    assert len(rows) == 2  # one record spanning two physical lines in the spool


def test_empty_file_has_no_columns_at_all():
    columns, rows, rejected = _csv(b"", {"_source_file": "empty.csv"})
    assert (columns, rows, rejected) == ([], [], [])


def test_jsonl_learns_every_field_and_rejects_broken_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1, "tags": ["a"]}\n{"id": 2, "new": true}\nnot json\n[1, 2]\n')
    rejected: list[tuple[str, str]] = []
    spool = spool_jsonl(lambda: path.open("rb"), rejected, {"_source_file": "a.jsonl"})
    assert spool.columns == ["id", "tags", "new", "_source_file"]
    assert spool.path.read_text().splitlines() == ['1,"[""a""]",,a.jsonl', "2,,true,a.jsonl"]
    assert [reason for _, reason in rejected] == [
        "line 3: not valid JSON (Expecting value)",
        "line 4: a JSON list, not an object",
    ]
    spool.discard()


def test_jsonl_integral_numbers_are_integers_and_fractions_stay(tmp_path):
    """Exporters write 5.0 in an integer column with gaps (found loading 200k customers:
    a whole file blocked); 5.5 must still reach the type check and be refused there."""
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"ces": 5.0, "amount": 12.50}\n{"ces": 5.5, "amount": null}\n')
    spool = spool_jsonl(lambda: path.open("rb"), [], {})
    assert spool.path.read_text().splitlines() == ["5,12.5", "5.5,"]
    spool.discard()
