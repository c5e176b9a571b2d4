"""Land a CSV file with COPY, validate it, publish it to ``raw``: one batch, one transaction.

The path of a batch: COPY into a batch table -> GX suite on that table -> in one
transaction upsert into ``raw.<entity>`` on the natural key and record the batch.
A re-run of the same file leaves ``raw`` identical (upsert, not insert).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from cem_warehouse.errors import CemError
from cem_warehouse.quality.gx_runner import ValidationOutcome, validate_table
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

COPY_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class EntitySpec:
    """What the loader needs to know about one raw entity."""

    source: str
    entity: str
    natural_key: str
    columns: dict[str, str]  # column -> PostgreSQL type, in file order


@dataclass
class BatchResult:
    batch_id: str
    rows_received: int
    rows_published: int
    validation: ValidationOutcome


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(COPY_BUFFER_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure_raw_table(conn, spec: EntitySpec) -> None:
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in spec.columns.items()
    ]
    columns += [
        sql.SQL("_batch_id text not null"),
        sql.SQL("_loaded_at timestamptz not null"),
        sql.SQL("_source text not null"),
    ]
    conn.execute(
        sql.SQL("create table if not exists raw.{} ({}, primary key ({}))").format(
            sql.Identifier(spec.entity),
            sql.SQL(", ").join(columns),
            sql.Identifier(spec.natural_key),
        )
    )


def load_csv_batch(location: WarehouseLocation, spec: EntitySpec, path: Path) -> BatchResult:
    """Load one CSV file as one batch; raises :class:`CemError` naming the failed expectation."""
    if not path.exists():
        raise CemError(
            f"{path} does not exist: generate sample data first (`cem demo`) or fix the landing path."
        )
    batch_id = f"{spec.source}.{spec.entity}.{file_checksum(path)[:16]}"
    batch_table = f"batch_{spec.entity}_{batch_id.rsplit('.', 1)[1]}"
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    with connect(location, autocommit=True) as conn:
        _ensure_raw_table(conn, spec)
        conn.execute(
            "insert into ops.load_batches (batch_id, source, entity, cursor_from, status) values (%s, %s, %s, %s, 'running') "
            "on conflict (batch_id) do update set status = 'running', started_at = now(), finished_at = null, message = null",
            (batch_id, spec.source, spec.entity, path.name),
        )
        # An unlogged batch table: fast to fill, and nothing in raw changes until publish.
        conn.execute(sql.SQL("drop table if exists staging.{}").format(sql.Identifier(batch_table)))
        conn.execute(
            sql.SQL("create unlogged table staging.{} ({})").format(
                sql.Identifier(batch_table),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in spec.columns.items()
                ),
            )
        )
        copy = sql.SQL("copy staging.{} ({}) from stdin with (format csv, header true)").format(
            sql.Identifier(batch_table), column_list
        )
        try:
            with conn.cursor() as cur, cur.copy(copy) as copy_in, path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(COPY_BUFFER_BYTES), b""):
                    copy_in.write(chunk)
        except psycopg.errors.DataError as exc:
            # Until row-level quarantine exists, a malformed file is refused whole, with the line.
            where = exc.diag.context or ""
            conn.execute(
                "update ops.load_batches set status = 'failed', message = %s, finished_at = now() where batch_id = %s",
                (f"{exc.diag.message_primary} ({where})", batch_id),
            )
            raise CemError(
                f"{path.name} is malformed: {exc.diag.message_primary} ({where}); fix the file and re-run."
            ) from None
        received = conn.execute(
            sql.SQL("select count(*) from staging.{}").format(sql.Identifier(batch_table))
        ).fetchone()[0]

    validation = validate_table(
        location, schema="staging", table=batch_table, suite=spec.entity, batch_id=batch_id
    )
    if not validation.success:
        with connect(location, autocommit=True) as conn:
            conn.execute(
                "update ops.load_batches set status = 'blocked', rows_received = %s, gx_success = false, "
                "message = %s, finished_at = now() where batch_id = %s",
                (received, validation.summary, batch_id),
            )
            conn.execute(
                sql.SQL("drop table if exists staging.{}").format(sql.Identifier(batch_table))
            )
        raise CemError(f"batch {batch_id} of {received} rows not published: {validation.summary}")

    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
        for c in [*spec.columns, "_batch_id", "_loaded_at", "_source"]
        if c != spec.natural_key
    )
    with connect(location) as conn, conn.transaction():
        published = conn.execute(
            sql.SQL(
                "insert into raw.{entity} ({cols}, _batch_id, _loaded_at, _source) "
                "select {cols}, %s, now(), %s from staging.{batch} "
                "on conflict ({key}) do update set {updates}"
            ).format(
                entity=sql.Identifier(spec.entity),
                cols=column_list,
                batch=sql.Identifier(batch_table),
                key=sql.Identifier(spec.natural_key),
                updates=updates,
            ),
            (batch_id, spec.source),
        ).rowcount
        conn.execute(
            "update ops.load_batches set status = 'published', rows_received = %s, rows_published = %s, "
            "gx_success = true, finished_at = now() where batch_id = %s",
            (received, published, batch_id),
        )
        conn.execute(sql.SQL("drop table staging.{}").format(sql.Identifier(batch_table)))
    return BatchResult(batch_id, received, published, validation)
