"""Cutting a CSV stream into whole records, so several connections can COPY it at once."""

from __future__ import annotations

import csv
import io
import random

import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.load.parallel_copy import STREAMS_ENV, copy_streams, record_aligned, record_end


def test_a_newline_inside_quotes_does_not_end_a_record():
    text = b'1,"two\nlines",x\n2,"a ""quoted""\nvalue",y\n3,"open\n'
    assert record_end(text) == text.index(b"3,")
    assert record_end(b'1,"never closed\nstill open\n') == 0
    assert record_end(b"no newline yet") == 0


def _awkward_csv(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    alphabet = ["a", "b", ",", '"', "\n", "\r\n", " ", "é"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for i in range(rows):
        writer.writerow(
            [i, "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))), i * 2]
        )
    return buffer.getvalue().encode()


@pytest.mark.parametrize("seed", range(5))
def test_pieces_are_whole_records_and_add_up_to_the_stream(seed):
    data = _awkward_csv(400, seed)
    rng = random.Random(seed)
    chunks, position = [], 0
    while position < len(data):
        size = rng.randint(1, 300)
        chunks.append(data[position : position + size])
        position += size
    pieces = list(record_aligned(iter(chunks), piece_bytes=200))
    assert len(pieces) > 5
    assert b"".join(pieces) == data
    expected = list(csv.reader(io.StringIO(data.decode())))
    parsed = [row for piece in pieces for row in csv.reader(io.StringIO(piece.decode()))]
    assert parsed == expected


def test_streams_come_from_the_environment_or_the_cores(monkeypatch):
    monkeypatch.setenv(STREAMS_ENV, "3")
    assert copy_streams() == 3
    monkeypatch.delenv(STREAMS_ENV)
    assert 1 <= copy_streams() <= 4
    for bad in ("0", "two"):
        monkeypatch.setenv(STREAMS_ENV, bad)
        with pytest.raises(CemError, match=STREAMS_ENV):
            copy_streams()


def test_one_large_chunk_is_cut_into_many_pieces():
    data = _awkward_csv(400, 7)
    pieces = list(record_aligned(iter([data]), piece_bytes=200))
    assert len(pieces) > 5
    assert b"".join(pieces) == data
    expected = list(csv.reader(io.StringIO(data.decode())))
    assert [r for p in pieces for r in csv.reader(io.StringIO(p.decode()))] == expected


def test_lines_ending_in_a_bare_carriage_return_are_cut_too():
    data = _awkward_csv(300, 3).replace(b"\r\n", b" ").replace(b"\n", b"\r")
    pieces = list(record_aligned(iter([data]), piece_bytes=200))
    assert len(pieces) > 5 and b"".join(pieces) == data
    assert all(piece.endswith(b"\r") for piece in pieces)
    expected = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert [r for p in pieces for r in csv.reader(io.StringIO(p.decode(), newline=""))] == expected
