"""`cem bench ingest` end to end on a small file: it loads everything and prints its figures.

Timings are printed, never asserted (they belong to the benchmark, not to a test).
"""

from __future__ import annotations

import json
import re

from cem_warehouse.load.benchmark import bench_ingest
from cem_warehouse.warehouse.connection import connect


def test_the_ingest_benchmark_loads_every_row_and_reports_its_figures(server):
    figures = bench_ingest(20_000, server=server, rounds=2)
    print(json.dumps(figures, indent=2))
    assert figures["rows"] == 20_000
    for key in (
        "psql_copy_rows_per_s",
        "publish_rows_per_s",
        "ratio_publish_to_psql_copy",
        "gx_share_of_load",
        "gx_added_share_of_load",
        "peak_rss_mb_of_loader_process",
    ):
        assert isinstance(figures[key], int | float), key
    # Figures compare only between servers with the same cache settings (marts.md,
    # "Reading from disk"), so the benchmark says which it ran on.
    assert re.fullmatch(
        r"PostgreSQL [\d.]+ at .+ \(shared_buffers \d+[kMG]B, effective_io_concurrency \d+\)",
        figures["server"],
    ), figures["server"]
    seconds = figures["seconds"]
    assert {
        "median_land_seconds",
        "median_validate_seconds",
        "median_publish_seconds",
    } <= seconds.keys()
    for measure in ("psql_copy", "publish", "publish_without_gx_suite"):
        assert len(seconds[measure]) == 2 and all(s > 0 for s in seconds[measure]), measure
    # The benchmark cleans up after itself.
    with connect(server.with_database("postgres")) as conn:
        left = conn.execute(
            "select count(*) from pg_database where datname like 'cem_bench_%%'"
        ).fetchone()[0]
    assert left == 0
