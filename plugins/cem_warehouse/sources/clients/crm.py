"""Extract CRM streams from its REST API into batches (records spooled to CSV)."""

from __future__ import annotations

import json

from cem_warehouse.load.batch import IncomingBatch
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.sources.clients.http_api import ApiClient
from cem_warehouse.sources.clients.spool import CsvSpool, new_spool_file


def _cell(value):
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def extract_stream(
    client: ApiClient, contract: EntityContract, endpoint: str, cursor: str | None
) -> IncomingBatch:
    """All records changed since ``cursor`` (inclusive: the upsert makes re-reads harmless)."""
    params = {"updated_since": cursor} if cursor else {}
    # Records go to disk as they arrive; the column set is only known once all pages are in.
    jsonl = new_spool_file("crm", ".jsonl")
    seen: dict[str, None] = dict.fromkeys(contract.column_names)
    try:
        with jsonl.open("w", encoding="utf-8") as out:
            for page in client.paginate(endpoint, params):
                for record in page:
                    seen.update(dict.fromkeys(record))
                    out.write(json.dumps(record) + "\n")
        columns = list(seen)
        spool = CsvSpool(columns)
        with jsonl.open(encoding="utf-8") as records:
            for line in records:
                record = json.loads(line)
                spool.write([_cell(record.get(c)) for c in columns])
        spool.close()
    finally:
        jsonl.unlink(missing_ok=True)
    return IncomingBatch(
        columns=columns,
        chunks=spool.chunks,
        cursor_from=cursor,
        cleanup=spool.discard,
        description=f"{spool.rows} records from {endpoint}",
    )
