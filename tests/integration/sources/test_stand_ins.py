"""`cem generate` into real stand-ins: the sales database (PostgreSQL), the CRM store behind
the API, and the survey landing folder; day 0, next-day deltas, bad-input catalog."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import httpx
import pandas as pd
import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.sources import sales
from cem_warehouse.sources.crm import CrmStore
from cem_warehouse.sources.crm_server import CrmServer
from cem_warehouse.sources.generator import catalog, model, run
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS
from cem_warehouse.sources.surveys import LandingWriter
from cem_warehouse.warehouse.connection import connect

END = DEFAULT_PARAMS.history_end


@pytest.fixture
def targets(fresh_database, tmp_path) -> run.Targets:
    return run.Targets(
        fresh_database, tmp_path / "crm", str(tmp_path / "landing" / "surveys"), tmp_path / "state"
    )


def _query(location, sql: str, *args):
    with connect(location, autocommit=True) as conn:
        cursor = conn.execute(sql, args or None)
        return cursor.fetchall() if cursor.description else []


def _crm_emails(targets) -> set[str]:
    return set(CrmStore(targets.crm_store).read("customers").column("email").to_pylist())


def test_day0_fills_the_sales_database_consistently(targets) -> None:
    result = run.generate(3_000, 4, targets)
    counts = sales.row_counts(targets.sales)
    for entity in ("orders", "order_lines", "refunds", "order_status_changes"):
        assert counts[entity] == result.rows[f"sales.{entity}"] > 0
    assert counts["products"] == 18
    keys = _query(
        targets.sales, "select conrelid::regclass::text from pg_constraint where contype = 'p'"
    )
    assert {k for (k,) in keys} >= {s.name for s in sales.STREAMS}
    # totals add up, refunds moved their order's status and updated_at
    assert _query(
        targets.sales,
        """
        select count(*) from orders as o
        join (select order_id, sum(line_amount) as total from order_lines group by order_id) as l using (order_id)
        where l.total <> o.order_total""",
    ) == [(0,)]
    assert _query(
        targets.sales,
        """
        select count(*) from refunds as r join orders as o using (order_id)
        where o.status <> 'refunded' or o.updated_at < r.refunded_at""",
    ) == [(0,)]
    assert _query(
        targets.sales,
        """
        select count(*) from orders as o where status in ('refunded', 'cancelled')
        and not exists (select from order_status_changes as s where s.order_id = o.order_id)""",
    ) == [(0,)]
    assert _query(targets.sales, "select max(updated_at) <= %s from orders", END) == [(True,)]
    # sales emails are the CRM's, as typed; late arrivals are not in the CRM yet
    emails = {
        e
        for (e,) in _query(
            targets.sales, "select distinct lower(btrim(customer_email, E' \\t')) from orders"
        )
    }
    crm = _crm_emails(targets)
    unknown = emails - crm
    assert 0 < len(unknown) < 0.02 * len(emails)
    pending = run._load_pending(targets, "pending_crm")["customers"]
    assert unknown <= set(pending.column("email").to_pylist())
    varied = _query(
        targets.sales,
        "select count(*) from orders where customer_email <> lower(btrim(customer_email, E' \\t'))",
    )
    assert varied[0][0] > 0


def test_same_seed_gives_the_same_sales_database(database_factory, tmp_path) -> None:
    digests = []
    for n, seed in enumerate([8, 8, 9]):
        location = database_factory("cem_test_det")
        t = run.Targets(
            location, tmp_path / f"crm{n}", str(tmp_path / f"landing{n}"), tmp_path / f"state{n}"
        )
        run.generate(1_500, seed, t)
        digests.append(
            _query(
                location,
                """
            select md5(string_agg(order_id || customer_email || order_total || updated_at, ',' order by order_id))
            from orders""",
            )[0][0]
        )
    assert digests[0] == digests[1] != digests[2]


def test_next_day_adds_changes_and_late_arrivals(targets) -> None:
    params = replace(
        DEFAULT_PARAMS,
        late_survey_share=1.0,
        post_purchase_invite_rate=1.0,
        response_rate=(1.0, 1.0, 1.0),
        response_delay_days=0.05,
    )
    run.generate(4_000, 5, targets, params)
    before = sales.row_counts(targets.sales)
    max_order = _query(targets.sales, "select max(order_id) from orders")[0][0]
    late_customers = set(
        run._load_pending(targets, "pending_crm")["customers"].column("customer_id").to_pylist()
    )
    assert late_customers and not late_customers & set(
        CrmStore(targets.crm_store).read("customers").column("customer_id").to_pylist()
    )

    day1 = run.generate_next_day(targets, params)
    assert day1.day == 1 and day1.export_date == (END.date()).isoformat()
    after = sales.row_counts(targets.sales)
    assert after["orders"] == before["orders"] + day1.rows["sales.orders"]
    new_orders = _query(
        targets.sales,
        "select min(ordered_at), max(ordered_at) from orders where order_id > %s",
        max_order,
    )[0]
    assert new_orders[0] >= END and new_orders[1] < END + timedelta(days=1)
    # old rows changed: updated_at moved into the new day
    changed = _query(
        targets.sales,
        """
        select status, count(*) from orders where order_id <= %s and updated_at >= %s group by status""",
        max_order,
        END,
    )
    assert {s for s, _ in changed} >= {"delivered", "refunded"}
    assert day1.rows["sales.refunds_of_old_orders"] > 0
    assert (
        after["refunds"]
        == before["refunds"] + day1.rows["sales.refunds_of_old_orders"] + day1.rows["sales.refunds"]
    )
    # CRM: yesterday's late customers arrive, with today's updated_at; some records updated
    crm = CrmStore(targets.crm_store).read("customers").to_pandas()
    arrived = crm[crm["customer_id"].isin(late_customers)]
    assert len(arrived) == len(late_customers) and (arrived["updated_at"] >= END).all()
    updated_old = crm[(crm["updated_at"] >= END) & (crm["created_at"] < END - timedelta(days=5))]
    assert len(updated_old) > 0
    assert crm["customer_id"].is_unique
    # support cases left open on day 0 progress on day 1: a new contact, many now solved or closed
    cases = CrmStore(targets.crm_store).read("support_cases").to_pandas()
    progressed = cases[(cases["updated_at"] >= END) & (cases["opened_at"] < END)]
    assert len(progressed) > 0 and progressed["status"].isin(["solved", "closed"]).all()
    assert progressed["closed_at"].notna().all()
    contacts = CrmStore(targets.crm_store).read("interactions").to_pandas()
    assert set(progressed["case_id"]) <= set(contacts.loc[contacts["started_at"] >= END, "case_id"])
    # surveys: day 1's responses are exported late, by the day-2 run, into day 1's folder
    held = run._load_pending(targets, "pending_surveys")["responses"]
    assert held.num_rows > 0
    day2 = run.generate_next_day(targets, params)
    landing = LandingWriter(targets.surveys_url)
    late_files = [f for f in landing.files("responses") if f.endswith("-late.csv")]
    assert len(late_files) == 1 and f"export_date={day1.export_date}/" in late_files[0]
    assert day2.rows["surveys.responses_late"] == held.num_rows


def test_next_day_needs_day0(targets) -> None:
    with pytest.raises(CemError, match="cem generate --customers"):
        run.generate_next_day(targets)


def test_refuses_to_overwrite_a_database_it_did_not_make(targets) -> None:
    _query(targets.sales, "create table orders (id int)")
    with pytest.raises(CemError, match="AIRFLOW_CONN_CEM_SOURCE_SALES"):
        run.generate(100, 1, targets)


def test_every_catalog_case_is_produced_as_named(targets) -> None:
    result = run.generate(3_000, 6, targets, bad_rate=0.01)
    produced = {c["case"]: c for c in result.bad_cases}
    assert set(produced) == set(catalog.CASES)
    landing = LandingWriter(targets.surveys_url)
    for case in produced.values():
        if case["source"] == "surveys":
            assert landing.fs.exists(case["location"]), case
            assert f"bad-{case['case']}" in case["location"]
    assert landing.fs.size(produced["empty_file"]["location"]) == 0
    # sales: the unknown customer's orders are there, with an email the CRM has never seen
    ghost = _query(
        targets.sales,
        "select distinct customer_email from orders where order_id = any(%s)",
        produced["orders_for_unknown_customer"]["keys"],
    )
    assert len(ghost) == 1 and ghost[0][0] not in _crm_emails(targets)
    spelled = _query(
        targets.sales,
        "select customer_email from orders where order_id = any(%s)",
        produced["sales_email_case_whitespace"]["keys"],
    )
    assert len({s for (s,) in spelled}) == 4 and len({s.strip().lower() for (s,) in spelled}) == 1
    # CRM: more records share one updated_at than fit a page; a replay changed a value
    crm = CrmStore(targets.crm_store).read("customers").to_pandas()
    burst = produced["cursor_timestamp_burst"]
    assert (
        crm["updated_at"].astype(str).str[:19] == burst["updated_at"][:19].replace("T", " ")
    ).sum() >= catalog.BURST_SIZE - 50
    # the row-level mix: bad LTR values are in the ordinary exports too
    first = next(f for f in landing.files("responses") if f.endswith("/responses-d0000-c00000.csv"))
    with landing.fs.open(first) as handle:
        ltr = pd.read_csv(handle, dtype=str, keep_default_na=False)["ltr"]
    assert 0 < ltr.isin(catalog.BAD_LTR).sum() < 0.05 * len(ltr)


def test_the_api_serves_what_the_generator_stored(targets) -> None:
    run.generate(2_500, 7, targets)
    store = CrmStore(targets.crm_store)
    server = CrmServer(targets.crm_store, "tok", port=0).start()
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": "Bearer tok"}
        ) as client:
            for stream in ("customers", "support_cases", "interactions", "referrals"):
                seen, cursor = [], None
                while True:
                    params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
                    body = client.get(f"/api/v1/{stream}", params=params).json()
                    seen += body["results"]
                    cursor = body["paging"]["next_cursor"]
                    if not body["paging"]["has_more"]:
                        break
                assert len(seen) == store.read(stream).num_rows > 0, stream
            first = seen[0]
            assert set(first) == {
                "referral_id",
                "referrer_customer_id",
                "referred_customer_id",
                "referral_code",
                "created_at",
                "updated_at",
            }
            json.dumps(first)
    finally:
        server.stop()
    assert first["referrer_customer_id"] >= model.CRM_ID_OFFSET


def test_refuses_to_empty_a_landing_it_did_not_make(targets) -> None:
    landing = LandingWriter(targets.surveys_url)
    landing.write_bytes("responses", "2025-01-01", "real-export.csv", b"response_id\n1\n")
    with pytest.raises(CemError, match="AIRFLOW_CONN_CEM_SOURCE_SURVEYS"):
        run.generate(100, 1, targets)
    assert landing.files("responses")
    assert _query(targets.sales, "select to_regclass('public.orders')") == [
        (None,)
    ]  # nothing touched
