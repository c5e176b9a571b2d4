"""`cem bench ingest`: the publish path against `psql \\copy` of the same file, same server, same run.

Prints JSON figures (rows/s of both, their ratio, the share of GX in the load, peak
memory); it asserts nothing. Speed goals are read from these figures, never from tests.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from cem_warehouse.load.batch import BatchLoader, IncomingBatch
from cem_warehouse.load.parallel_copy import copy_streams
from cem_warehouse.load.policy import SourcePolicy
from cem_warehouse.sources.clients.spool import CHUNK_BYTES
from cem_warehouse.sources.contracts import SALES
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect, describe_server
from cem_warehouse.warehouse.embedded import _bin_dir, ensure_warehouse
from cem_warehouse.warehouse.settings import WarehouseLocation

ORDER_LINES = next(c for c in SALES if c.entity == "order_lines")


def write_order_lines(path: Path, rows: int, seed: int = 1, block: int = 500_000) -> str:
    """``rows`` order lines as CSV without a header (what a database COPY export looks like).

    Returns their newest ``updated_at``, which the sales extractor reads from the source
    along with the rows (``IncomingBatch.newest_cursor_value``)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    with pacsv.CSVWriter(
        path, _schema(), write_options=pacsv.WriteOptions(include_header=False)
    ) as writer:
        for first in range(0, rows, block):
            n = min(block, rows - first)
            ids = np.arange(first + 1, first + n + 1, dtype=np.int64)
            quantity = rng.integers(1, 5, n).astype(np.int32)
            unit_price = np.round(rng.uniform(5, 500, n), 2)
            stamp = start + (ids * 600_000_000).astype("timedelta64[us]")
            writer.write_table(
                pa.table(
                    {
                        "order_line_id": ids,
                        "order_id": ids // 2 + 1,
                        "line_number": (ids % 2 + 1).astype(np.int16),
                        "product_id": rng.integers(1, 19, n).astype(np.int32),
                        "quantity": quantity,
                        "unit_price": unit_price,
                        "line_amount": np.round(unit_price * quantity, 2),
                        "created_at": pa.array(stamp, pa.timestamp("us", tz="UTC")),
                        "updated_at": pa.array(stamp, pa.timestamp("us", tz="UTC")),
                    },
                    schema=_schema(),
                )
            )
    # updated_at grows with the line id: the last line's is the newest.
    return f"{stamp[-1]}+00:00"


def _schema() -> pa.Schema:
    return pa.schema(
        [
            ("order_line_id", pa.int64()),
            ("order_id", pa.int64()),
            ("line_number", pa.int16()),
            ("product_id", pa.int32()),
            ("quantity", pa.int32()),
            ("unit_price", pa.float64()),
            ("line_amount", pa.float64()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _psql() -> str:
    bundled = _bin_dir() / "psql"
    return str(bundled) if bundled.exists() else (shutil.which("psql") or "psql")


def _psql_copy(location: WarehouseLocation, path: Path, *, keyed: bool = False) -> float:
    """Seconds of ``psql \\copy`` of ``path`` into a new, empty table on the same server.

    Plain (the issue's baseline): the file's columns and their types, nothing else. Keyed
    (context only): shaped like ``raw.order_lines``, with its primary key, not-null columns
    and the loader's three bookkeeping columns filled by defaults.
    """
    table = "bench_psql_copy_keyed" if keyed else "bench_psql_copy"
    columns = ", ".join(
        f"{c.name} {c.type}" + ("" if c.nullable or not keyed else " not null")
        for c in ORDER_LINES.columns
    )
    if keyed:
        columns += (
            ", _batch_id text not null default 'bench', _loaded_at timestamptz not null default now(), "
            f"_source text not null default 'sales', primary key ({', '.join(ORDER_LINES.natural_key)})"
        )
    env = {"PGPASSWORD": location.password, "PGTZ": "UTC"}
    base = [
        _psql(),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        location.host,
        "-p",
        str(location.port),
        "-U",
        location.user,
        "-d",
        location.dbname,
    ]
    # No autovacuum on it: it would otherwise run on the copied rows while the loader is timed.
    subprocess.run(
        [*base, "-c", f"create table public.{table} ({columns}) with (autovacuum_enabled = false)"],
        env=env,
        check=True,
    )
    started = time.perf_counter()
    subprocess.run(
        [
            *base,
            "-c",
            f"\\copy public.{table} ({', '.join(ORDER_LINES.column_names)}) from '{path}' with (format csv)",
        ],
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - started
    subprocess.run([*base, "-c", f"drop table public.{table}"], env=env, check=True)
    return seconds


def bench_ingest(rows: int, server: WarehouseLocation | None = None, rounds: int = 3) -> dict:
    server = server or ensure_warehouse()
    database = f"cem_bench_{uuid.uuid4().hex[:8]}"
    with connect(server.with_database("postgres"), autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    location = server.with_database(database)
    workdir = Path(tempfile.mkdtemp(prefix="cem_bench_"))
    try:
        path = workdir / "order_lines.csv"
        newest = write_order_lines(path, rows)
        bootstrap(location)

        def chunks():
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        # Importing GX costs seconds once per process; a worker pays it once, not per batch.
        started = time.perf_counter()
        import great_expectations  # noqa: F401

        from cem_warehouse.quality.gx_docs_views import template_cache_dir

        gx_import_seconds = time.perf_counter() - started
        templates_cached = any(template_cache_dir().glob("*"))
        # A shared machine's speed drifts from second to second: the three measures take
        # turns, round after round, and each is summarised by its median.
        psql, loads, without_suite, phases = [], [], [], []
        for _ in range(rounds):
            psql.append(_psql_copy(location, path))
            seconds, outcome = _timed_load(location, chunks, rows, newest)
            loads.append(seconds)
            phases.append(outcome.timings)
            without_suite.append(_timed_load(location, chunks, rows, newest, suite=False)[0])
        keyed_seconds = _psql_copy(location, path, keyed=True)
        psql_seconds = statistics.median(psql)
        publish_seconds = statistics.median(loads)
        median_phases = {
            k: statistics.median(p[k] for p in phases)
            for k in ("land_seconds", "validate_seconds", "publish_seconds")
        }
        return {
            "rows": rows,
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "rounds": rounds,
            "measures": (
                "publish: BatchLoader.load of the CSV file as a sales batch into an empty "
                "raw.order_lines (land, row rules, GX suite + Data Docs, publish, ledger), "
                "wall time; the batch comes as the sales extractor hands it over, typed rows "
                "and their newest updated_at (read from the source with the rows). psql_copy: "
                "psql \\copy of the same file into a new empty table with "
                "the file's columns and nothing else. Each round times psql_copy, publish and "
                "publish without the suite, in turn; figures are medians over the rounds. "
                "psql_copy_keyed (context, not the goal's baseline, one run): the same into a "
                "table shaped like raw.order_lines (primary key, not null, bookkeeping columns). "
                "The loader lands over copy_streams connections, and its GX suite runs while the "
                "publish writes: validate_seconds overlaps publish_seconds, so gx_share_of_load "
                "(validate_seconds / publish) is the time GX takes; the suite's row rules are "
                "also checked in the COPY, by CHECK constraints GX then reads from the catalog, "
                "so gx_added_share_of_load is what the suite adds to the load, those checks "
                "included: 1 - publish without the suite (replaced by a pass, and no "
                "constraints, for this measurement only) / publish. Without the suite's verdict the loader "
                "checks every row with its row rules, as for a batch the suite finds bad rows "
                "in; with it a clean batch needs no such scan, so the suite can add less than "
                "nothing."
            ),
            "copy_streams": copy_streams(),
            "psql_copy_rows_per_s": round(rows / psql_seconds),
            "publish_rows_per_s": round(rows / publish_seconds),
            "ratio_publish_to_psql_copy": round(psql_seconds / publish_seconds, 3),
            "ratio_publish_to_psql_copy_keyed": round(keyed_seconds / publish_seconds, 3),
            "seconds": {
                "psql_copy": [round(x, 2) for x in psql],
                "publish": [round(x, 2) for x in loads],
                "publish_without_gx_suite": [round(x, 2) for x in without_suite],
                "psql_copy_keyed": round(keyed_seconds, 2),
                **{f"median_{k}": round(v, 2) for k, v in median_phases.items()},
            },
            "gx_share_of_load": round(median_phases["validate_seconds"] / publish_seconds, 3),
            "gx_added_share_of_load": round(
                1 - statistics.median(without_suite) / publish_seconds, 3
            ),
            "gx_import_seconds_once_per_process_not_counted": round(gx_import_seconds, 2),
            # Data Docs templates compile once per machine (and GX version), like __pycache__.
            "gx_docs_templates_were_cached": templates_cached,
            "peak_rss_mb_of_loader_process": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "server": describe_server(server),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with connect(server.with_database("postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{database}" with (force)')


def _checkpoint(location: WarehouseLocation) -> None:
    """Flush the WAL the previous step wrote, so a checkpoint it forces does not land in the
    next timed load. Needs a superuser or pg_checkpoint; skipped without."""
    try:
        with connect(location, autocommit=True) as conn:
            conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:
        pass


def _timed_load(location: WarehouseLocation, chunks, rows: int, newest: str, *, suite: bool = True):
    """Seconds of one load of the file into an emptied raw.order_lines, and its outcome.

    The batch is what the sales extractor hands over: the rows (typed, from the source's own
    COPY) and their newest ``updated_at``.

    ``suite=False`` replaces the GX suite by a pass that reports no expectation, and lands
    the batch without the suite's CHECK constraints, to measure what the suite adds; the
    loader then judges the rows with its row rules alone. The product never skips its suite.
    """
    from contextlib import nullcontext
    from unittest import mock

    from cem_warehouse.quality.gx_runner import ValidationOutcome

    with connect(location, autocommit=True) as conn:
        if conn.execute("select to_regclass('raw.order_lines')").fetchone()[0]:
            conn.execute("truncate raw.order_lines")
    _checkpoint(location)
    loader = BatchLoader(location, ORDER_LINES, SourcePolicy(name="sales"))

    class Skipped:
        reads_rows = False

        def validate(self) -> ValidationOutcome:
            return ValidationOutcome(suite="skipped for the benchmark", success=True)

        def build_docs(self) -> None:
            pass

    skipped = mock.patch(
        "cem_warehouse.load.batch.prepare_batch_suite", lambda *args, **kwargs: Skipped()
    )
    # The suite's CHECK constraints are part of its cost (its rules checked in the COPY).
    unchecked = mock.patch(
        "cem_warehouse.load.tables.add_suite_constraints", lambda *args, **kwargs: None
    )
    with nullcontext() if suite else skipped, nullcontext() if suite else unchecked:
        started = time.perf_counter()
        outcome = loader.load(
            IncomingBatch(
                columns=ORDER_LINES.column_names,
                chunks=chunks,
                trusted_types=True,
                newest_cursor_value=newest,
            )
        )
        seconds = time.perf_counter() - started
    assert outcome.rows_published == rows, outcome
    return seconds, outcome


def run(rows: int) -> int:
    print(json.dumps(bench_ingest(rows), indent=2))
    return 0
