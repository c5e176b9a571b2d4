"""Extract export files from a landing location (local folder or any fsspec URL).

Each new file is one batch; a file is new when its checksum has not been loaded before,
so a replayed or renamed copy of a loaded file is skipped and an edited file is loaded.
Lines that cannot be parsed (wrong field count, NUL bytes, bytes that are not UTF-8,
broken JSON) become rejected records with the raw line and the reason: quarantined with
the batch, never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import fsspec
import psycopg

from cem_warehouse.load.batch import IncomingBatch
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.sources.clients.spool import CsvSpool


@dataclass(frozen=True)
class LandedFile:
    path: str
    checksum: str
    size: int


def list_files(url: str, entity_folder: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    fs, root = fsspec.core.url_to_fs(url.rstrip("/"))
    pattern = f"{root}/{entity_folder}/**"
    files = sorted(
        p
        for p in fs.glob(pattern)
        if fs.isfile(p) and p.rsplit(".", 1)[-1] in ("csv", "jsonl", "json")
    )
    return fs, files


def checksum(fs: fsspec.AbstractFileSystem, path: str) -> LandedFile:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return LandedFile(path, digest.hexdigest(), size)


def _clean_header(names: list[str]) -> list[str]:
    return [n.strip().lower().replace(" ", "_").lstrip("\ufeff") for n in names]


def _decode_lines(handle: BinaryIO) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, problem) per physical line; undecodable bytes are reported, not guessed."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                number,
                raw.decode("utf-8", errors="replace"),
                f"line {number}: not UTF-8 ({exc.reason} at byte {exc.start})",
            )
            continue
        if "\x00" in text:
            yield number, text.replace("\x00", "\\0"), f"line {number}: contains NUL bytes"
            continue
        yield number, text, None


def _good_lines(handle: BinaryIO, rejected: list[tuple[str, str]]) -> Iterator[tuple[int, str]]:
    for number, text, problem in _decode_lines(handle):
        if problem:
            rejected.append((text.rstrip("\r\n"), problem))
        else:
            yield number, text


def spool_csv(
    handle: BinaryIO, rejected: list[tuple[str, str]], append: dict[str, str]
) -> CsvSpool:
    """Stream a CSV export into a spool, rejecting lines it cannot trust."""
    reader = csv.reader(text for _, text in _good_lines(handle, rejected))
    try:
        header = _clean_header(next(reader))
    except StopIteration:
        header = []
    # No header at all is an empty export: no constant columns to pretend otherwise.
    spool = CsvSpool([*header, *append] if header else [])
    suffix = list(append.values())
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            rejected.append(
                (
                    json.dumps(row),
                    f"line {reader.line_num}: {len(row)} fields, header has {len(header)}",
                )
            )
            continue
        spool.write(row + suffix)
    spool.close()
    return spool


def _cell(value):
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        # JSON has one number type: exporters (pandas among them) write 5.0 in an integer
        # column that has gaps. 5.0 is the integer 5; 5.5 stays 5.5 and is refused later.
        return str(int(value))
    return value


def _records(handle: BinaryIO, rejected: list[tuple[str, str]] | None) -> Iterator[dict]:
    for number, text in _good_lines(handle, rejected if rejected is not None else []):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if rejected is not None:
                rejected.append((text.rstrip("\r\n"), f"line {number}: not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            if rejected is not None:
                rejected.append(
                    (
                        text.rstrip("\r\n"),
                        f"line {number}: a JSON {type(record).__name__}, not an object",
                    )
                )
            continue
        yield {_clean_header([k])[0]: v for k, v in record.items()}


def spool_jsonl(open_file, rejected: list[tuple[str, str]], append: dict[str, str]) -> CsvSpool:
    """Two streaming passes: the first learns the fields, the second writes them."""
    keys: dict[str, None] = {}
    with open_file() as handle:
        for record in _records(handle, None):
            keys.update(dict.fromkeys(record))
    header = [k for k in keys if k not in append]
    # No header at all is an empty export: no constant columns to pretend otherwise.
    spool = CsvSpool([*header, *append] if header else [])
    suffix = list(append.values())
    with open_file() as handle:
        for record in _records(handle, rejected):
            spool.write([_cell(record.get(k)) for k in header] + suffix)
    spool.close()
    return spool


def extract_file(
    fs: fsspec.AbstractFileSystem,
    landed: LandedFile,
    contract: EntityContract,
    *,
    append: dict[str, str] | None = None,
) -> IncomingBatch:
    """One file as one batch; ``append`` adds constant columns (e.g. the file it came from)."""
    rejected: list[tuple[str, str]] = []
    append = append or {}
    if landed.path.endswith((".jsonl", ".json")):
        spool = spool_jsonl(lambda: fs.open(landed.path, "rb"), rejected, append)
    else:
        with fs.open(landed.path, "rb") as handle:
            spool = spool_csv(handle, rejected, append)

    def remember(conn: psycopg.Connection, batch_id: str) -> None:
        conn.execute(
            "insert into ops.landed_files (source, path, checksum, batch_id, rows_received) values (%s, %s, %s, %s, %s) "
            "on conflict (source, checksum) do nothing",
            (contract.source, landed.path, landed.checksum, batch_id, spool.rows + len(rejected)),
        )

    return IncomingBatch(
        columns=spool.columns,
        chunks=spool.chunks,
        cursor_from=landed.path,
        rejected=rejected,
        on_publish=remember,
        cleanup=spool.discard,
        description=landed.path,
    )


def landing_root(url: str) -> str:
    """The landing location as the filesystem names it (paths from ``list_files`` start with it)."""
    return fsspec.core.url_to_fs(url.rstrip("/"))[1]
