"""Load every export file waiting in a landing folder, oldest name first.

Batch ids come from file checksums, so a file already published is skipped and a replayed
file changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.load.file_batch import EntitySpec, file_checksum, load_csv_batch
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

SURVEY_RESPONSES = EntitySpec(
    source="surveys",
    entity="survey_responses",
    natural_key="response_id",
    columns={
        "response_id": "text",
        "respondent_email": "text",
        "touchpoint": "text",
        "responded_at": "timestamptz",
        "ltr": "integer",
        "csat": "integer",
    },
)


def survey_landing_dir() -> Path:
    return paths.landing_dir() / "surveys"


def load_landed_files(location: WarehouseLocation, spec: EntitySpec, folder: Path) -> dict:
    """Publish each new CSV in ``folder``; returns counts for the task log and XCom."""
    files = sorted(folder.glob("*.csv")) if folder.exists() else []
    summary = {"files_seen": len(files), "files_loaded": 0, "files_skipped": 0, "rows_published": 0}
    for path in files:
        batch_id = f"{spec.source}.{spec.entity}.{file_checksum(path)[:16]}"
        with connect(location) as conn:
            row = conn.execute(
                "select status from ops.load_batches where batch_id = %s", (batch_id,)
            ).fetchone()
        if row and row[0] == "published":
            summary["files_skipped"] += 1
            continue
        result = load_csv_batch(location, spec, path)
        summary["files_loaded"] += 1
        summary["rows_published"] += result.rows_published
    return summary
