"""`cem bench ingest` end to end on a small file: it loads everything and prints its figures.

Timings are printed, never asserted (they belong to the benchmark, not to a test).
"""

from __future__ import annotations

import json

from cem_warehouse.load.benchmark import bench_ingest
from cem_warehouse.warehouse.connection import connect


def test_the_ingest_benchmark_loads_every_row_and_reports_its_figures(server):
    figures = bench_ingest(20_000, server=server)
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
    seconds = figures["seconds"]
    assert {"land_seconds", "validate_seconds", "publish_seconds"} <= seconds.keys()
    assert seconds["publish_total"] > 0 and seconds["publish_total_without_gx_suite"] > 0
    # The benchmark cleans up after itself.
    with connect(server.with_database("postgres")) as conn:
        left = conn.execute(
            "select count(*) from pg_database where datname like 'cem_bench_%%'"
        ).fetchone()[0]
    assert left == 0
