"""CRM: customers, support cases, contact-center interactions, referrals, behind a REST API.

Contract (docs/sources/crm.md). Each entity is a stream with a primary key and the cursor
``updated_at``; the API returns records ordered by ``(updated_at, key)`` and pages with an
opaque cursor that encodes the last ``(updated_at, key)`` seen, so records sharing one
timestamp are never lost between pages. Deletes are soft: ``is_archived`` becomes true
and ``updated_at`` moves (customers only).

The stand-in keeps its records as Parquet parts in the state folder: the generator appends
a part per run, and the server (:mod:`cem_warehouse.sources.crm_server`) serves the latest
version of each record.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Stream:
    name: str
    primary_key: str
    cursor: str = "updated_at"
    path: str = ""

    @property
    def endpoint(self) -> str:
        return self.path or f"/api/v1/{self.name}"


STREAMS = (
    Stream("customers", "customer_id"),
    Stream("support_cases", "case_id"),
    Stream("interactions", "interaction_id"),
    Stream("referrals", "referral_id"),
)
STREAM_BY_NAME = {s.name: s for s in STREAMS}


class CrmStore:
    """Append-only Parquet parts per entity; readers see the latest version of each key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def reset(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for stream in STREAMS:
            (self.root / stream.name).mkdir(parents=True, exist_ok=True)

    def write(self, entity: str, table: pa.Table, part: str) -> None:
        folder = self.root / entity
        folder.mkdir(parents=True, exist_ok=True)
        if table.num_rows:
            # a sequence prefix keeps write order in file-name order: later parts win on read
            sequence = len(list(folder.glob("*.parquet")))
            pq.write_table(table, folder / f"{sequence:06d}-{part}.parquet", compression="lz4")

    def touch(self) -> None:
        """Tell a running server that the store changed."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "_version").write_text(str(time.time_ns()))

    def version(self) -> str:
        path = self.root / "_version"
        return path.read_text() if path.exists() else ""

    def parts(self, entity: str) -> list[Path]:
        return sorted((self.root / entity).glob("*.parquet"))

    def read(self, entity: str) -> pa.Table:
        """Latest version of every record, ordered by (updated_at, key): what the API serves."""
        key = STREAM_BY_NAME[entity].primary_key
        files = self.parts(entity)
        if not files:
            return pa.table(
                {
                    key: pa.array([], pa.int64()),
                    "updated_at": pa.array([], pa.timestamp("us", tz="UTC")),
                }
            )
        tables = [pq.read_table(f) for f in files]
        table = (
            pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        )
        if len(tables) > 1:
            # later parts win: keep the last occurrence of each key
            order = np.arange(table.num_rows)
            keys = table.column(key).to_numpy()
            srt = np.lexsort((order, keys))
            last = np.ones(len(srt), dtype=bool)
            last[:-1] = keys[srt][:-1] != keys[srt][1:]
            table = table.take(pa.array(srt[last]))
        idx = pc.sort_indices(table, sort_keys=[("updated_at", "ascending"), (key, "ascending")])
        return table.take(idx)
