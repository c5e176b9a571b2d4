"""Every case of the source-systems bad-input catalog ends as docs/operations/bad-inputs.md says.

One generated data set (with ``bad_rate``, so one of each named case), loaded once through
all three ingestion pipelines; each test then checks one case's documented outcome.
"""

from __future__ import annotations

import uuid

import pytest

from cem_warehouse.load.batch import BatchBlocked
from cem_warehouse.load.sources import ingest_crm, ingest_sales, ingest_surveys
from cem_warehouse.sources.clients.http_api import ApiClient, RetryPolicy
from cem_warehouse.sources.connections import SourceConnection
from cem_warehouse.sources.generator.catalog import CASES
from cem_warehouse.warehouse.connection import connect

TOKEN = "catalog-test-token"


@pytest.fixture(scope="module")
def loaded(server, tmp_path_factory):
    from cem_warehouse.sources.crm_server import CrmServer, Faults
    from cem_warehouse.sources.generator.run import Targets, generate

    names = {role: f"cem_test_{role}_{uuid.uuid4().hex[:8]}" for role in ("wh", "sales")}
    with connect(server.with_database("postgres"), autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'create database "{name}"')
    warehouse, sales = (server.with_database(names[r]) for r in ("wh", "sales"))
    tmp = tmp_path_factory.mktemp("catalog")
    targets = Targets(sales, tmp / "crm", str(tmp / "landing"), tmp / "generator")
    result = generate(400, 11, targets, bad_rate=0.01)
    produced = {case["case"]: case for case in result.bad_cases}

    blocked = {}
    # The API misbehaves in every way the catalog names: 429, 5xx, repeated pages, stalls.
    faults = Faults(
        rate_limit_every=5,
        retry_after_seconds=0,
        error_every=7,
        repeat_page_every=4,
        stall_every=9,
        stall_seconds=2.0,
    )
    crm_server = CrmServer(tmp / "crm", TOKEN, faults=faults).start()
    client = ApiClient(
        crm_server.base_url, TOKEN, retry=RetryPolicy(base_delay=0.01), timeout=1.0, page_size=50
    )
    try:
        host, port = crm_server.httpd.server_address[:2]
        crm_run = ingest_crm(
            warehouse,
            SourceConnection("cem_source_crm", "http", host, port, password=TOKEN),
            client=client,
        )
    finally:
        crm_server.stop()
    sales_run = ingest_sales(
        warehouse,
        SourceConnection(
            "cem_source_sales",
            "postgres",
            sales.host,
            sales.port,
            sales.user,
            sales.password,
            sales.dbname,
        ),
    )
    try:
        ingest_surveys(
            warehouse,
            SourceConnection("cem_source_surveys", "fs", extra={"path": str(tmp / "landing")}),
        )
    except BatchBlocked as exc:
        blocked["surveys"] = str(exc)
    yield {
        "warehouse": warehouse,
        "produced": produced,
        "blocked": blocked,
        "client": client,
        "crm_run": crm_run,
        "sales_run": sales_run,
        "crm_store": tmp / "crm",
    }
    with connect(server.with_database("postgres"), autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'drop database if exists "{name}" with (force)')


def _batch(loaded, case: str):
    """The ledger row of the batch that loaded a case's survey file."""
    with connect(loaded["warehouse"]) as conn:
        return conn.execute(
            "select status, rows_received, rows_published, rows_quarantined, message, batch_id "
            "from ops.load_batches where cursor_from like %s order by started_at desc limit 1",
            (f"%bad-{case}.csv",),
        ).fetchone()


def _quarantine_reasons(loaded, batch_id: str) -> list[str]:
    with connect(loaded["warehouse"]) as conn:
        return [
            r[0]
            for r in conn.execute(
                "select reason from quarantine.survey_responses where batch_id = %s", (batch_id,)
            )
        ]


def test_every_catalog_case_is_covered_here():
    covered = (
        set(BLOCKED_FILES)
        | set(PUBLISHED_FILES)
        | {
            "duplicate_rows",
            "replay_changed_values",
            "email_case_whitespace",
            "new_column",
            "missing_column",
            "timestamp_without_timezone",
            "orders_for_unknown_customer",
            "sales_email_case_whitespace",
            "cursor_timestamp_burst",
            "crm_replay_changed_values",
            "api_page_repeat",
            "api_timeout",
            "api_rate_limit",
            "api_server_error",
        }
    )
    assert set(CASES) <= covered, sorted(set(CASES) - covered)


# Files whose rows are all (or mostly) bad: the batch is blocked, nothing published, and the
# message names the expectation that failed.
BLOCKED_FILES = {
    "ltr_out_of_range_high": "cem_rejected_row_share_at_most",
    "ltr_negative": "cem_rejected_row_share_at_most",
    "ltr_text": "cem_rejected_row_share_at_most",
    "ltr_blank": "cem_rejected_row_share_at_most",
    "wrong_types": "cem_rejected_row_share_at_most",
    "nul_bytes": "cem_rejected_row_share_at_most",
    "non_utf8_text": "cem_rejected_row_share_at_most",
    "future_timestamp": "cem_rejected_row_share_at_most",
    "malformed_csv_line": "cem_rejected_row_share_at_most",
    "empty_file": "the batch is empty",
}
PUBLISHED_FILES = {
    "duplicate_rows",
    "email_case_whitespace",
    "new_column",
    "missing_column",
    "timestamp_without_timezone",
}


@pytest.mark.parametrize("case", sorted(BLOCKED_FILES))
def test_mostly_bad_files_are_blocked_and_named(loaded, case):
    status, received, published, quarantined, message, _ = _batch(loaded, case)
    assert status == "blocked"
    assert published == 0 and quarantined == 0
    assert BLOCKED_FILES[case] in message
    assert f"bad-{case}.csv" in loaded["blocked"]["surveys"], "the task's error names the file"
    with connect(loaded["warehouse"]) as conn:
        landed = conn.execute(
            "select count(*) from ops.landed_files where path like %s", (f"%bad-{case}.csv",)
        ).fetchone()[0]
    assert landed == 0, (
        "a blocked file is retried on the next run, after someone fixes or removes it"
    )


@pytest.mark.parametrize("case", sorted(PUBLISHED_FILES))
def test_tolerable_files_publish_every_row(loaded, case):
    status, received, published, quarantined, _, _ = _batch(loaded, case)
    assert status == "published"
    assert received == published + quarantined


def test_duplicate_rows_publish_once_and_quarantine_the_copies(loaded):
    _, received, published, quarantined, _, batch_id = _batch(loaded, "duplicate_rows")
    assert (received, published, quarantined) == (12, 6, 6)
    assert all(
        r.startswith("duplicate key in batch") for r in _quarantine_reasons(loaded, batch_id)
    )


def test_replay_with_changed_values_supersedes_the_original(loaded):
    # All catalog files reuse the same six response ids; the file that sorts last wins, and
    # the original never does once its replay has landed, whatever the load order.
    keys = loaded["produced"]["replay_changed_values"]["keys"]
    with connect(loaded["warehouse"]) as conn:
        paths = [
            r[0]
            for r in conn.execute(
                "select _source_file from raw.survey_responses where response_id = any(%s)", (keys,)
            )
        ]
        published = [
            r[0]
            for r in conn.execute(
                "select _source_file from (select distinct _source_file from raw.survey_responses) as f "
                "where _source_file like '%%/bad-%%'"
            )
        ]
    assert len(paths) == len(keys), "one row per response id"
    assert not any(path.endswith("1-original.csv") for path in paths)
    assert set(paths) == {max(published)}


def test_new_column_is_added_to_raw(loaded):
    with connect(loaded["warehouse"]) as conn:
        assert (
            conn.execute(
                "select count(*) from raw.survey_responses where nps_channel = 'sms'"
            ).fetchone()[0]
            == 6
        )


def test_timestamps_without_a_zone_are_read_as_utc(loaded):
    with connect(loaded["warehouse"]) as conn:
        hours = conn.execute(
            "select distinct extract(hour from responded_at at time zone 'UTC') from raw.survey_responses "
            "where _source_file like '%%bad-timestamp_without_timezone.csv'"
        ).fetchall()
    assert hours, "the rows were published"


def test_orders_for_unknown_customers_are_kept_and_flagged(loaded):
    keys = loaded["produced"]["orders_for_unknown_customer"]["keys"]
    with connect(loaded["warehouse"]) as conn:
        kept = conn.execute(
            "select count(*) from raw.orders where order_id = any(%s)", (keys,)
        ).fetchone()[0]
        flagged = conn.execute(
            "select count(*) from ops.late_arriving_customers where entity = 'orders' and record_id = any(%s)",
            ([str(k) for k in keys],),
        ).fetchone()[0]
    assert kept == len(keys) == flagged


def test_sales_email_variants_still_match_their_customer(loaded):
    keys = loaded["produced"]["sales_email_case_whitespace"]["keys"]
    with connect(loaded["warehouse"]) as conn:
        kept = conn.execute(
            "select count(*) from raw.orders where order_id = any(%s)", (keys,)
        ).fetchone()[0]
        flagged = conn.execute(
            "select count(*) from ops.late_arriving_customers where record_id = any(%s)",
            ([str(k) for k in keys],),
        ).fetchone()[0]
    assert kept == len(keys) and flagged == 0


def test_crm_burst_sharing_one_timestamp_arrives_whole_despite_api_faults(loaded):
    from cem_warehouse.sources.crm_server import CrmData

    expected = CrmData(loaded["crm_store"]).stream("customers").table.num_rows
    with connect(loaded["warehouse"]) as conn:
        loaded_count = conn.execute("select count(*) from raw.customers").fetchone()[0]
    assert loaded_count == expected
    retries = loaded["client"].retries
    assert retries.get("429") and retries.get("5xx") and retries.get("connection"), retries


def test_crm_replay_with_the_same_timestamp_keeps_one_deterministic_version(loaded):
    keys = loaded["produced"]["crm_replay_changed_values"]["keys"]
    with connect(loaded["warehouse"]) as conn:
        assert (
            conn.execute(
                "select count(*) from raw.customers where customer_id = any(%s)", (keys,)
            ).fetchone()[0]
            == 1
        )


def test_repeated_api_pages_are_recorded_as_duplicates_not_lost(loaded):
    customers = next(o for o in loaded["crm_run"].outcomes if o.entity == "customers")
    assert customers.rows_received == customers.rows_published + customers.rows_quarantined
