"""Load one source: every entity, under the source's writer lock, batch by batch.

This is what an ``ingest_<source>`` task calls. An entity whose batch is blocked does not
stop the others; the run fails at the end naming every blocked batch, so a data engineer
sees all problems of a run at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cem_warehouse.load.batch import BatchBlocked, BatchLoader, BatchOutcome, IncomingBatch
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.load.locks import source_writer_lock
from cem_warehouse.load.policy import SourcePolicy, source_policy
from cem_warehouse.load.tables import abandon_dead_batches, has_published_batch
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

Extract = Callable[[EntityContract, str | None, SourcePolicy], Iterable[IncomingBatch]]


@dataclass
class SourceRun:
    source: str
    enabled: bool = True
    outcomes: list[BatchOutcome] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """A small, JSON-able summary for the task's XCom and log."""
        return {
            "source": self.source,
            "enabled": self.enabled,
            "batches": [
                {
                    "entity": o.entity,
                    "batch_id": o.batch_id,
                    "received": o.rows_received,
                    "published": o.rows_published,
                    "quarantined": o.rows_quarantined,
                    "changed": o.rows_changed,
                }
                for o in self.outcomes
            ],
            "blocked": self.blocked,
            "abandoned_batches": self.abandoned,
        }


def read_cursor(location: WarehouseLocation, source: str, entity: str) -> str | None:
    with connect(location) as conn:
        row = conn.execute(
            "select cursor_value from ops.source_cursors where source = %s and entity = %s",
            (source, entity),
        ).fetchone()
    return row[0] if row else None


def run_source(
    location: WarehouseLocation,
    source: str,
    contracts: list[EntityContract],
    extract: Extract,
    *,
    policy: SourcePolicy | None = None,
    lock_wait_seconds: int = 600,
) -> SourceRun:
    policy = policy or source_policy(source)
    run = SourceRun(source)
    if not policy.enabled:
        run.enabled = False
        return run
    with source_writer_lock(location, source, wait_seconds=lock_wait_seconds):
        with connect(location, autocommit=True) as conn:
            run.abandoned = abandon_dead_batches(conn, source, {c.entity: c for c in contracts})
            # Decided before this run publishes anything: all its batches of an entity
            # with nothing published yet are that entity's initial load.
            initial_load = {c.entity: not has_published_batch(conn, c) for c in contracts}
        for contract in contracts:
            loader = BatchLoader(
                location, contract, policy, initial_load=initial_load[contract.entity]
            )
            cursor = read_cursor(location, source, contract.entity)
            for incoming in extract(contract, cursor, policy):
                try:
                    run.outcomes.append(loader.load(incoming))
                except BatchBlocked as blocked:
                    run.blocked.append(str(blocked))
    if run.blocked:
        raise BatchBlocked(
            f"{len(run.blocked)} batch(es) of {source} blocked: " + " | ".join(run.blocked)
        )
    return run
