"""A batch spooled to a local file as CSV, so it can be COPYed (and re-read) in chunks.

Extractors write records here instead of holding a batch in memory: peak memory stays the
size of a chunk whatever the batch size.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


class CsvSpool:
    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        handle, name = tempfile.mkstemp(prefix="cem_batch_", suffix=".csv")
        os.close(handle)
        self.path = Path(name)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self.rows = 0

    def write(self, values: list) -> None:
        self._writer.writerow(["" if v is None else v for v in values])
        self.rows += 1

    def write_bytes(self, data: bytes) -> None:
        """Already-formatted CSV (e.g. a source database's COPY output)."""
        self._file.flush()
        with self.path.open("ab") as raw:
            raw.write(data)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def chunks(self) -> Iterator[bytes]:
        self.close()
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
