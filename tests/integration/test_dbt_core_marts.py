"""The core marts (dim_customers and the facts) on really loaded data, checked against an
independent recomputation in Python from the raw tables, never by re-running the dbt SQL.

Definitions checked (dbt_project/models/marts/core/_core__models.yml):
* customer_key: the CRM customer_id (text) when the normalised email (lower-cased, spaces,
  tabs and line breaks trimmed) belongs to a CRM customer, else 'inferred-' || md5(email).
* revenue: sum of raw order_lines.line_amount over the customer's orders whose status is
  not 'cancelled', before refunds; order_count: those orders.
* loyalty indices: mean of the items answered (switch_to_competitor reverse-scored as
  10 - x), rounded half-up to 2 places.
* loyalty category: NPS category of the customer's last response with an LTR.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from cem_warehouse.transform.dbt import dbt_target_dir
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.warehouse.connection import connect

WALK_IN_EMAIL = "  Walk.In@Example.COM\t"  # a customer the CRM has never seen, typed sloppily
WALK_IN_ACCOUNT = "SA-WALK-IN"
SLOPPY_EMAIL = "E'\\t ' || upper(customer_email) || E' \\t\\r\\n'"
CENT = Decimal("0.01")


def normalise(email: str | None) -> str | None:
    return (email or "").strip(" \t\r\n").lower() or None


def inferred_key(email: str) -> str:
    return "inferred-" + hashlib.md5(email.encode()).hexdigest()


def nps_category(ltr: int | None) -> str | None:
    if ltr is None:
        return None
    return "promoter" if ltr >= 9 else "passive" if ltr >= 7 else "detractor"


def mean(items: list[int | None]) -> Decimal | None:
    answered = [Decimal(item) for item in items if item is not None]
    if not answered:
        return None
    return (sum(answered) / len(answered)).quantize(CENT, rounding=ROUND_HALF_UP)


def _plant_sales_only_customer_and_sloppy_email(stand_ins) -> int:
    """One order from an email the CRM does not know, and one CRM customer's order typed
    with tabs, spaces and capitals. Returns the sloppy order's id."""
    with connect(stand_ins.sales_db) as conn:
        sloppy_order_id = conn.execute("select min(order_id) from orders").fetchone()[0]
        conn.execute(
            f"update orders set customer_email = {SLOPPY_EMAIL} where order_id = %s",
            (sloppy_order_id,),
        )
        order_id, line_id, ordered_at = conn.execute(
            "select (select max(order_id) + 1 from orders), (select max(order_line_id) + 1 from order_lines), "
            "(select max(ordered_at) from orders)"
        ).fetchone()
        conn.commit()
    stand_ins.insert_sales_order(
        order_id=order_id,
        line_id=line_id,
        account=WALK_IN_ACCOUNT,
        email=WALK_IN_EMAIL,
        ordered_at=ordered_at,
        updated_at=ordered_at,
        quantity=3,
    )
    return sloppy_order_id


def test_core_marts_match_an_independent_recomputation(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    sloppy_order_id = _plant_sales_only_customer_and_sloppy_email(stand_ins)
    stand_ins.ingest_all()

    build_marts(stand_ins.warehouse)  # raises on any failed model or data test
    # A production build leaves the unit tests out (they check the SQL, not the data).
    results = (dbt_target_dir() / "run_results.json").read_text()
    ran = {r["unique_id"].split(".")[0] for r in json.loads(results)["results"]}
    assert "model" in ran and "test" in ran and "unit_test" not in ran

    with connect(stand_ins.warehouse) as conn:
        customers = conn.execute("select customer_id, email from raw.customers").fetchall()
        orders = conn.execute("select order_id, customer_email, status from raw.orders").fetchall()
        lines = conn.execute("select order_id, line_amount from raw.order_lines").fetchall()
        responses = conn.execute(
            "select response_id, respondent_email, ltr, overall_satisfaction, choose_again, "
            "buy_different_products, expand_use, switch_to_competitor, renew, responded_at "
            "from raw.survey_responses"
        ).fetchall()
        invitation_emails = [
            r[0] for r in conn.execute("select respondent_email from raw.invitations")
        ]

        dim = {
            row[0]: row[1:]
            for row in conn.execute(
                "select customer_key, customer_id, is_inferred, order_count, revenue, loyalty_category "
                "from marts.dim_customers"
            )
        }
        order_keys = dict(conn.execute("select order_id, customer_key from marts.fct_orders"))
        fact_keys = {
            f"{fact}.{column}": [
                row[0] for row in conn.execute(f"select {column} from marts.{fact}")
            ]
            for fact, column in (
                ("fct_order_lines", "customer_key"),
                ("fct_survey_responses", "customer_key"),
                ("fct_support_interactions", "customer_key"),
                ("fct_referrals", "referrer_customer_key"),
                ("fct_referrals", "referred_customer_key"),
            )
        }
        indices = {
            row[0]: row[1:]
            for row in conn.execute(
                "select response_id, advocacy_loyalty_index, purchasing_loyalty_index, "
                "retention_loyalty_index from marts.fct_survey_responses"
            )
        }

    # Identity: the CRM id when the normalised email is a CRM customer's, else inferred.
    crm_by_email: dict[str, int] = {}
    for customer_id, email in sorted(customers):
        crm_by_email.setdefault(normalise(email), customer_id)

    def key_of(email: str | None) -> str | None:
        email = normalise(email)
        if email is None:
            return None
        return str(crm_by_email[email]) if email in crm_by_email else inferred_key(email)

    seen = {
        normalise(e) for e in [o[1] for o in orders] + [r[1] for r in responses] + invitation_emails
    }
    inferred = {inferred_key(e) for e in seen - set(crm_by_email) - {None}}
    assert inferred_key("walk.in@example.com") in inferred

    # dim_customers: one row per CRM customer plus one per inferred customer.
    assert len(dim) == len(customers) + len(inferred)
    assert set(dim) == {str(c[0]) for c in customers} | inferred
    for key, (customer_id, is_inferred, *_rest) in dim.items():
        assert is_inferred == key.startswith("inferred-"), key
        assert (customer_id is None) == is_inferred, key

    # Every order resolves to the customer its email names, the sloppy one to its CRM customer.
    assert len(order_keys) == len(orders)
    for order_id, email, _status in orders:
        assert order_keys[order_id] == key_of(email), order_id
        assert order_keys[order_id] in dim, order_id
    assert not order_keys[sloppy_order_id].startswith("inferred-")

    # Every fact's customer key is a dim_customers row (the dbt relationships check, see the yml).
    for fact, keys in fact_keys.items():
        assert keys and set(keys) <= set(dim), fact

    # Revenue: line_amount of the orders not cancelled, before refunds, per customer; exactly.
    line_total: dict[int, Decimal] = defaultdict(Decimal)
    for order_id, amount in lines:
        line_total[order_id] += amount
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    order_count: dict[str, int] = defaultdict(int)
    for order_id, email, status in orders:
        if status != "cancelled":
            revenue[key_of(email)] += line_total[order_id]
            order_count[key_of(email)] += 1
    for key, (_id, _inferred, count, dim_revenue, _category) in dim.items():
        assert dim_revenue == revenue.get(key, Decimal("0")), key
        assert count == order_count.get(key, 0), key
    walk_in = dim[inferred_key("walk.in@example.com")]
    assert walk_in[1] is True and walk_in[2] == 1 and walk_in[3] > 0
    assert sum(revenue.values()) == sum(row[3] for row in dim.values())

    # Loyalty indices of every response, reverse-scoring switch_to_competitor.
    assert len(indices) == len(responses)
    relationship_items = 0
    for (
        response_id,
        _email,
        ltr,
        overall,
        again,
        different,
        expand,
        switch,
        renew,
        _at,
    ) in responses:
        expected = (
            mean([overall, again, ltr]),
            mean([different, expand]),
            mean([None if switch is None else 10 - switch, renew]),
        )
        assert indices[response_id] == expected, response_id
        relationship_items += switch is not None
    assert relationship_items > 0

    # Loyalty category: that of each customer's last LTR answer.
    last: dict[str, tuple] = {}
    for response_id, email, ltr, *_items, responded_at in responses:
        key = key_of(email)
        if (
            key is not None
            and ltr is not None
            and (key not in last or (responded_at, response_id) > last[key][0])
        ):
            last[key] = ((responded_at, response_id), nps_category(ltr))
    assert last
    for key, row in dim.items():
        assert row[4] == (last[key][1] if key in last else None), key
