"""The ingestion properties, each against a real PostgreSQL and the source stand-ins."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from psycopg import sql

from cem_warehouse.load.batch import BatchBlocked
from cem_warehouse.load.locks import SourceBusy, source_writer_lock
from cem_warehouse.load.sources import ingest_crm, ingest_sales, ingest_surveys
from cem_warehouse.sources.clients.http_api import (
    ApiClient,
    RetryPolicy,
    SourceAuthError,
    SourceContractError,
)
from cem_warehouse.sources.clients.postgres_db import extract_table
from cem_warehouse.sources.clients.spool import spool_dir
from cem_warehouse.sources.contracts import CRM, SALES, SURVEYS
from cem_warehouse.warehouse.connection import connect


def _sales_fingerprint(stand_ins) -> dict[str, tuple]:
    """The same fingerprint, computed on the source database itself."""
    return stand_ins.fingerprint(stand_ins.sales_db, SALES, schema="public")


def _ledger_adds_up(location) -> None:
    with connect(location) as conn:
        rows = conn.execute(
            "select entity, rows_received, rows_published, rows_quarantined from ops.load_batches where status = 'published'"
        ).fetchall()
        quarantined = dict(
            conn.execute(
                "select b.entity, count(q.*) from ops.load_batches b "
                "left join lateral (select 1 from quarantine.survey_responses q where q.batch_id = b.batch_id "
                "union all select 1 from quarantine.orders q where q.batch_id = b.batch_id) q on true "
                "where b.entity in ('survey_responses', 'orders') group by b.entity"
            ).fetchall()
        )
    assert rows
    for entity, received, published, in_quarantine in rows:
        assert received == published + in_quarantine, entity
    for entity, count in quarantined.items():
        assert count == sum(r[3] for r in rows if r[0] == entity), entity


def test_all_sources_load_everything_and_the_ledger_adds_up(stand_ins):
    with stand_ins.crm() as crm:
        ingest_crm(stand_ins.warehouse, crm)
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    ingest_surveys(stand_ins.warehouse, stand_ins.surveys)

    assert stand_ins.fingerprint(stand_ins.warehouse, SALES) == _sales_fingerprint(stand_ins)
    counts = stand_ins.fingerprint(stand_ins.warehouse)
    assert all(counts[c.entity][0] > 0 for c in CRM + SALES + SURVEYS)
    _ledger_adds_up(stand_ins.warehouse)


def test_reruns_and_replays_leave_raw_identical(stand_ins):
    with stand_ins.crm() as crm:
        ingest_crm(stand_ins.warehouse, crm)
        ingest_sales(stand_ins.warehouse, stand_ins.sales)
        ingest_surveys(stand_ins.warehouse, stand_ins.surveys)
        first = stand_ins.fingerprint(stand_ins.warehouse)
        # A re-run of every DAG, then the same files replayed under new names.
        ingest_crm(stand_ins.warehouse, crm)
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    for path in sorted(stand_ins.landing.rglob("*.csv"))[:3]:
        path.with_name("replayed-" + path.name).write_bytes(path.read_bytes())
    ingest_surveys(stand_ins.warehouse, stand_ins.surveys)
    assert stand_ins.fingerprint(stand_ins.warehouse) == first


def test_next_day_delta_converges_to_the_source(stand_ins):
    from cem_warehouse.sources.generator.run import generate_next_day

    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    generate_next_day(stand_ins.targets)
    run = ingest_sales(stand_ins.warehouse, stand_ins.sales)
    assert stand_ins.fingerprint(stand_ins.warehouse, SALES) == _sales_fingerprint(stand_ins)
    assert any(o.rows_changed for o in run.outcomes), "refunds and status changes update old orders"


def test_each_sales_cursor_is_the_newest_row_the_first_load_took(stand_ins):
    """The extractor reads the newest cursor value with the rows, in their snapshot; a clean
    first load takes it instead of scanning what landed, and stores it as raw writes it."""
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    with connect(stand_ins.sales_db) as conn:
        newest = {
            c.entity: conn.execute(
                sql.SQL("select max(updated_at) from public.{}").format(sql.Identifier(c.entity))
            ).fetchone()[0]
            for c in SALES
            if c.cursor_column
        }
    with connect(stand_ins.warehouse) as conn:
        stored = dict(
            conn.execute(
                "select entity, cursor_value from ops.source_cursors where source = 'sales'"
            ).fetchall()
        )
        # The same text a scan of raw gives (the next pull parses it back).
        from_raw = {
            entity: conn.execute(
                sql.SQL("select max(updated_at)::text from raw.{}").format(sql.Identifier(entity))
            ).fetchone()[0]
            for entity in newest
        }
    assert stored == from_raw
    assert {e: datetime.fromisoformat(v) for e, v in stored.items()} == newest
    # The extractor hands it over (a later pull: rows since the cursor, minus the look-back).
    orders = next(c for c in SALES if c.entity == "orders")
    later = extract_table(stand_ins.sales_db, orders, stored["orders"], lookback_minutes=60)
    try:
        assert datetime.fromisoformat(later.newest_cursor_value) == newest["orders"]
    finally:
        later.cleanup()


def test_rows_at_the_watermark_and_late_commits_all_arrive(stand_ins):
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    with connect(stand_ins.warehouse) as conn:
        watermark = datetime.fromisoformat(
            conn.execute(
                "select cursor_value from ops.source_cursors where entity = 'orders'"
            ).fetchone()[0]
        )
    with connect(stand_ins.sales_db) as conn:
        # Rows sharing the watermark exactly, and one a long transaction committed with an
        # older timestamp after the last pull: the look-back window brings them in.
        for order_id, updated in (
            (9_000_001, watermark),
            (9_000_002, watermark),
            (9_000_003, watermark - timedelta(minutes=30)),
        ):
            conn.execute(
                "insert into orders (order_id, sales_account_id, customer_email, status, currency, order_total, "
                "ordered_at, created_at, updated_at) values (%s, 'SA-x', 'late@example.com', 'shipped', 'EUR', 10, %s, %s, %s)",
                (order_id, updated, updated, updated),
            )
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    with connect(stand_ins.warehouse) as conn:
        arrived = conn.execute(
            "select count(*) from raw.orders where order_id > 9000000"
        ).fetchone()[0]
    assert arrived == 3


def test_only_one_writer_per_source(stand_ins):
    before = stand_ins.fingerprint(stand_ins.warehouse, SALES)
    with (
        source_writer_lock(stand_ins.warehouse, "sales"),
        pytest.raises(SourceBusy, match="another run"),
    ):
        ingest_sales(stand_ins.warehouse, stand_ins.sales, lock_wait_seconds=1)
    assert stand_ins.fingerprint(stand_ins.warehouse, SALES) == before
    # Other sources are not blocked by it.
    with source_writer_lock(stand_ins.warehouse, "sales"):
        ingest_surveys(stand_ins.warehouse, stand_ins.surveys, lock_wait_seconds=1)


_CRASH_SCRIPT = """
import sys
from cem_warehouse.load.sources import ingest_sales
from cem_warehouse.sources.connections import SourceConnection
from cem_warehouse.warehouse.settings import parse_warehouse_url
warehouse, sales = parse_warehouse_url(sys.argv[1]), parse_warehouse_url(sys.argv[2])
ingest_sales(warehouse, SourceConnection("cem_source_sales", "postgres", sales.host, sales.port, sales.user,
                                         sales.password, sales.dbname))
"""


@pytest.mark.parametrize(
    "point", ["during_copy", "before_publish", "during_publish", "before_publish_commit"]
)
def test_a_killed_worker_leaves_raw_and_cursors_untouched_and_the_next_run_converges(
    stand_ins, database_factory, point
):
    from cem_warehouse.load.sources import prepare_warehouse

    prepare_warehouse(stand_ins.warehouse)
    before = stand_ins.fingerprint(stand_ins.warehouse, SALES)
    killed = subprocess.Popen(
        [sys.executable, "-c", _CRASH_SCRIPT, stand_ins.warehouse.url, stand_ins.sales_db.url],
        env={**os.environ, "CEM_FAILPOINT": point},
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr[-2000:]
    assert stand_ins.fingerprint(stand_ins.warehouse, SALES) == before
    # The killed worker could not remove its spool file; the next run on this host does.
    orphans = [path for path in spool_dir().glob("cem_*") if f"_{killed.pid}_" in path.name]
    assert orphans, "the killed worker left its spool file behind"
    with connect(stand_ins.warehouse) as conn:
        assert conn.execute("select count(*) from ops.source_cursors").fetchone() == (0,)
        assert conn.execute("select status from ops.load_batches").fetchone() == ("running",)

    run = ingest_sales(stand_ins.warehouse, stand_ins.sales)
    assert run.abandoned, "the dead batch is recorded as abandoned"
    control = database_factory("cem_test_control")
    ingest_sales(control, stand_ins.sales)
    assert stand_ins.fingerprint(stand_ins.warehouse, SALES) == stand_ins.fingerprint(
        control, SALES
    )
    with connect(stand_ins.warehouse) as conn:
        leftovers = conn.execute(
            "select count(*) from pg_tables where schemaname = 'staging'"
        ).fetchone()[0]
        statuses = dict(
            conn.execute("select status, count(*) from ops.load_batches group by status").fetchall()
        )
    assert leftovers == 0
    assert statuses["failed"] == 1
    assert not [path for path in orphans if path.exists()], "dead workers' spool files are swept"


def test_orders_and_responses_for_unknown_customers_are_kept_and_flagged(stand_ins):
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    ingest_surveys(stand_ins.warehouse, stand_ins.surveys)
    with connect(stand_ins.warehouse) as conn:
        orders = conn.execute("select count(*) from raw.orders").fetchone()[0]
        flagged_before = conn.execute(
            "select count(*) from ops.late_arriving_customers where entity = 'orders'"
        ).fetchone()[0]
    assert flagged_before == orders, "before the CRM arrives every order's customer is unknown"
    with stand_ins.crm() as crm:
        ingest_crm(stand_ins.warehouse, crm)
    with connect(stand_ins.warehouse) as conn:
        flagged_after = conn.execute(
            "select count(*) from ops.late_arriving_customers where entity = 'orders'"
        ).fetchone()[0]
        still_there = conn.execute("select count(*) from raw.orders").fetchone()[0]
    assert still_there == orders
    assert flagged_after < flagged_before


def test_schema_drift_follows_each_sources_policy(stand_ins):
    ingest_sales(stand_ins.warehouse, stand_ins.sales)
    with connect(stand_ins.sales_db) as conn:
        conn.execute("alter table orders add column coupon_code text")
    # sales.schema_drift is 'block' in dags/sources.yml
    with pytest.raises(BatchBlocked, match=r"orders: new column\(s\) \['coupon_code'\]"):
        ingest_sales(stand_ins.warehouse, stand_ins.sales)
    with connect(stand_ins.sales_db) as conn:
        conn.execute("alter table orders drop column coupon_code")
        conn.execute("alter table order_lines alter column quantity type text")
    with pytest.raises(
        BatchBlocked, match=r"type change on locked column\(s\) quantity \(integer -> text\)"
    ):
        ingest_sales(stand_ins.warehouse, stand_ins.sales)


def test_api_retries_429_and_5xx_and_still_loads_everything(stand_ins):
    with stand_ins.crm(rate_limit_every=3, retry_after_seconds=0, error_every=5) as crm:
        client = ApiClient(crm.base_url, crm.token, retry=RetryPolicy(base_delay=0.01))
        ingest_crm(stand_ins.warehouse, crm, client=client)
    assert client.retries.get("429", 0) > 0 and client.retries.get("5xx", 0) > 0
    with stand_ins.crm() as crm:
        clean = ApiClient(crm.base_url, crm.token)
        expected = {
            c.entity: len(
                {
                    r[c.natural_key[0]]
                    for page in clean.paginate(f"/api/v1/{c.entity}", {})
                    for r in page
                }
            )
            for c in CRM
        }
    counts = stand_ins.fingerprint(stand_ins.warehouse, CRM)
    assert {entity: counts[entity][0] for entity in expected} == expected


def test_wrong_token_fails_at_once(stand_ins):
    with stand_ins.crm() as crm:
        client = ApiClient(crm.base_url, "wrong-token")
        with pytest.raises(SourceAuthError, match="401.*token was refused"):
            ingest_crm(stand_ins.warehouse, crm, client=client)
    assert client.requests == 1


def test_contract_violation_fails_at_once():
    class NotJson(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>maintenance</html>")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotJson)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_address[1]}", "token")
        with pytest.raises(SourceContractError, match="not JSON"):
            client.get_json("/api/v1/customers", {})
        assert client.requests == 1
    finally:
        server.shutdown()


def test_quarantine_keeps_the_payload_and_reason(stand_ins):
    responses = sorted((stand_ins.landing / "responses").rglob("*.csv"))[0]
    with responses.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [next(reader) for _ in range(20)]
        fields = reader.fieldnames
    row = rows[0]
    row["ltr"] = "11"  # one bad row among twenty: quarantined, the rest published
    with responses.with_name("extra-bad.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    ingest_surveys(stand_ins.warehouse, stand_ins.surveys)
    with connect(stand_ins.warehouse) as conn:
        reason, payload = conn.execute(
            "select reason, payload from quarantine.survey_responses where payload->>'ltr' = '11'"
        ).fetchone()
    assert "expect_column_values_to_be_between on ltr" in reason
    assert str(payload["response_id"]) == row["response_id"]
    assert payload["_source_file"].endswith("extra-bad.csv")
