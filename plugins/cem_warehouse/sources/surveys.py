"""Surveys: export files in a landing location (a local folder or any fsspec URL).

Contract (docs/sources/surveys.md). Layout::

    <landing>/<entity>/export_date=YYYY-MM-DD/<entity>-<run>-<part>.csv | .jsonl

``entity`` is ``survey_definitions``, ``invitations`` or ``responses``. A file is
immutable once written; a late file may land in an earlier ``export_date`` folder. Both
formats carry the same columns; timestamps are ISO-8601 UTC with ``Z``. The key of a
response is ``response_id``; a replayed response (same id, later file) supersedes the
earlier one. Nothing is ever deleted.
"""

from __future__ import annotations

import io
import json

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ENTITIES = ("survey_definitions", "invitations", "responses")
KEYS = {"survey_definitions": "survey_id", "invitations": "invitation_id", "responses": "response_id"}


def _iso(table: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 with Z, lists as JSON text: what export tools write."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        columns[name] = column
    return pa.table(columns)


def to_csv(table: pa.Table) -> bytes:
    table = _iso(table)
    if any(pa.types.is_list(t) for t in table.schema.types):
        table = pa.table({n: (pa.array([json.dumps(v) for v in c.to_pylist()]) if pa.types.is_list(c.type) else c)
                          for n, c in zip(table.column_names, table.columns, strict=True)})
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def to_jsonl(table: pa.Table) -> bytes:
    frame = _iso(table).to_pandas()
    if not len(frame):
        return b""
    return frame.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")


class LandingWriter:
    """Writes export files through fsspec, so the landing can be local or object storage."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def reset(self) -> None:
        for entity in ENTITIES:
            path = f"{self.root}/{entity}"
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    def path_for(self, entity: str, export_date: str, name: str) -> str:
        return f"{self.root}/{entity}/export_date={export_date}/{name}"

    def write_bytes(self, entity: str, export_date: str, name: str, data: bytes) -> str:
        path = self.path_for(entity, export_date, name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            handle.write(data)
        return path

    def write(self, entity: str, table: pa.Table, export_date: str, name: str, fmt: str) -> str:
        data = to_csv(table) if fmt == "csv" else to_jsonl(table)
        return self.write_bytes(entity, export_date, f"{name}.{fmt}", data)

    def files(self, entity: str) -> list[str]:
        return sorted(self.fs.glob(f"{self.root}/{entity}/export_date=*/*"))
