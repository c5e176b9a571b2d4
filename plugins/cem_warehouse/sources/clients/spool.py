"""A batch spooled to a local file as CSV, so it can be COPYed (and re-read) in chunks.

Extractors write records here instead of holding a batch in memory: peak memory stays the
size of a chunk whatever the batch size.

Spool files live in ``<CEM_HOME>/spool``, named after the host and process that wrote them.
A worker killed with SIGKILL cannot remove its own; the next spool created on that host
removes the files of processes that no longer exist, so crashes do not fill the disk.
"""

from __future__ import annotations

import csv
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cem_warehouse.paths import state_dir

CHUNK_BYTES = 1 << 20


def spool_dir() -> Path:
    return state_dir() / "spool"


def _host_tag() -> str:
    # Only letters, digits and dashes, so the name splits back unambiguously on "_".
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def sweep_dead_spools(folder: Path | None = None) -> list[Path]:
    """Remove spool files left by processes of this host that have died; returns them.

    Files of other hosts (a spool folder shared by several workers) are left alone: their
    process ids mean nothing here.
    """
    folder = folder or spool_dir()
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    host = _host_tag()
    for path in folder.glob("cem_*"):
        parts = path.name.split("_")
        # cem_<kind>_<host>_<pid>_<random>.<suffix>
        if len(parts) < 5 or parts[2] != host or not parts[3].isdigit():
            continue
        if not _process_exists(int(parts[3])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def new_spool_file(kind: str, suffix: str) -> Path:
    """An empty file in the spool folder, owned by this process (swept if it dies)."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sweep_dead_spools(folder)
    handle, name = tempfile.mkstemp(
        prefix=f"cem_{kind}_{_host_tag()}_{os.getpid()}_", suffix=suffix, dir=folder
    )
    os.close(handle)
    return Path(name)


class CsvSpool:
    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self.path = new_spool_file("batch", ".csv")
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
