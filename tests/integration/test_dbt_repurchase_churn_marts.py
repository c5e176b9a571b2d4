"""The repurchase, churn and advocacy marts on really loaded data, as of a date before the
latest data, checked against an independent recomputation in Python from the raw tables
(never by re-running the dbt SQL), against the generator's planted truths, and for
reproducibility.

Definitions checked (docs/metrics.md, CEM_DOMAIN.md):
* purchase: an order whose status is not 'cancelled', ordered (UTC date) on or before the
  as-of date; purchase days are distinct order dates per customer.
* repeat-purchase rate: buyers with frequency (purchase days - 1) >= 1 / buyers, per loyalty
  category (NPS category of the customer's last LTR answer, 'unknown' without one).
* churn as of D: threshold after purchase day k = max(90, ceil(3 x median of the gaps
  between purchase days 1..k)); churned when last purchase + threshold <= D, or when the
  CRM cancellation falls between the last purchase day and D. Each earlier gap (up to the
  day before the next purchase) churns by the same rule; the next purchase wins the
  customer back.
* satisfied-but-churned share: churned customers whose last CSAT on or before the churned
  date is >= 4, over churned customers with a CSAT by then.
* advocacy referral rate: customers whose first referral is dated on or before the as-of
  date / customers, by current loyalty category; advocacy response rate: invitations sent on
  or before the as-of date and first answered on or before it, grouped by the invitee's
  loyalty category when the invitation was sent (last LTR answer before sent_at).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import defaultdict
from datetime import UTC, date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from cem_warehouse.transform.marts import build_marts
from cem_warehouse.warehouse.connection import connect

AS_OF = date(2025, 11, 1)  # two months before the generated history ends
FLOOR_DAYS = 90
GAP_MULTIPLE = 3
RATE = Decimal("0.0001")
MARTS = (
    "dim_customers",
    "fct_customer_repurchase",
    "fct_cohort_retention",
    "fct_customer_churn",
    "fct_churn_monthly",
    "fct_satisfied_but_churned",
    "fct_churn_after_support_cases",
    "fct_advocacy_by_loyalty_category",
)


def normalise(email: str | None) -> str | None:
    return (email or "").strip(" \t\r\n").lower() or None


def inferred_key(email: str) -> str:
    return "inferred-" + hashlib.md5(email.encode()).hexdigest()


def nps_category(ltr: int | None) -> str | None:
    if ltr is None:
        return None
    return "promoter" if ltr >= 9 else "passive" if ltr >= 7 else "detractor"


def rate(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATE, rounding=ROUND_HALF_UP)


def utc_date(moment) -> date:
    return moment.astimezone(UTC).date()


def threshold(gaps: list[int]) -> int:
    """max(90, 3 x median gap) in whole days, rounded up; 90 while there is no gap."""
    if not gaps:
        return FLOOR_DAYS
    return max(FLOOR_DAYS, math.ceil(GAP_MULTIPLE * statistics.median(gaps)))


def churn_episodes(days: list[date], cancelled: date | None, as_of: date) -> list[dict]:
    """Walk the purchase days: the gap after each, with its churn and win-back, if any."""
    episodes = []
    for k, day in enumerate(days):
        gaps = [(days[i] - days[i - 1]).days for i in range(1, k + 1)]
        following = days[k + 1] if k + 1 < len(days) else None
        gap_end = following - timedelta(days=1) if following else as_of
        candidates = []
        by_threshold = day + timedelta(days=threshold(gaps))
        if by_threshold <= gap_end:
            candidates.append((by_threshold, 1, "no purchase within threshold"))
        if cancelled is not None and day <= cancelled <= gap_end:
            candidates.append((cancelled, 0, "explicit cancellation"))
        if candidates:
            churned, _tie, rule = min(candidates)
            episodes.append({"churned": churned, "rule": rule, "won_back": following})
    return episodes


def _fingerprints(conn) -> dict[str, tuple]:
    """Row count and a content hash of each mart, independent of physical row order."""
    return {
        mart: conn.execute(
            f"select count(*), md5(string_agg(md5(m::text), '' order by md5(m::text))) "
            f"from marts.{mart} as m"
        ).fetchone()
        for mart in MARTS
    }


def test_repurchase_and_churn_marts_match_an_independent_recomputation(
    stand_ins, tmp_path, monkeypatch
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse, as_of=AS_OF)  # raises on any failed model or test

    with connect(stand_ins.warehouse) as conn:
        customers = conn.execute(
            "select customer_id, email, cancelled_at from raw.customers"
        ).fetchall()
        orders = conn.execute(
            "select order_id, customer_email, status, ordered_at from raw.orders"
        ).fetchall()
        lines = conn.execute("select order_id, line_amount from raw.order_lines").fetchall()
        responses = conn.execute(
            "select r.response_id, r.respondent_email, i.respondent_email, r.ltr, "
            "r.csat, r.responded_at, r.invitation_id from raw.survey_responses as r "
            "left join raw.invitations as i on r.invitation_id = i.invitation_id"
        ).fetchall()
        invitations = conn.execute(
            "select invitation_id, respondent_email, sent_at from raw.invitations"
        ).fetchall()
        referrals = conn.execute(
            "select referrer_customer_id, created_at from raw.referrals"
        ).fetchall()
        dim = dict(conn.execute("select customer_key, lifecycle_stage from marts.dim_customers"))
        # fct_customer_churn reads the segment from the CRM, beside dim_customers: the same
        segments_differing = conn.execute(
            "select count(*) from marts.fct_customer_churn as churn "
            "left join marts.dim_customers as customers using (customer_key) "
            "where churn.segment is distinct from coalesce(customers.segment, 'unknown') "
            "or customers.customer_key is null"
        ).fetchone()[0]
        assert segments_differing == 0
        # The two per-customer marts are views adding the as-of columns to stored tables: a
        # lookup by key goes through to the stored table's unique index, and the as-of date
        # is the one published with them.
        conn.execute("set enable_seqscan = off")  # so tiny tables show the index is reachable
        for view in ("fct_customer_repurchase", "fct_customer_churn"):
            plan = json.dumps(
                conn.execute(
                    f"explain (format json) select * from marts.{view} where customer_key = '1'"
                ).fetchone()[0]
            )
            assert f'"Relation Name": "{view}_stored"' in plan and "Index Scan" in plan, plan
            assert (
                conn.execute(
                    f"select count(*) from marts.{view} "
                    "where as_of_date is distinct from (select as_of_date from marts.dim_as_of_date)"
                ).fetchone()[0]
                == 0
            )
        conn.execute("reset enable_seqscan")
        repurchase = {
            row[0]: row[1:]
            for row in conn.execute(
                "select customer_key, frequency, recency_days, t_days, monetary_value, "
                "first_purchase_date, last_purchase_date from marts.fct_customer_repurchase"
            )
        }
        churn = {
            row[0]: row[1:]
            for row in conn.execute(
                "select customer_key, is_churned, churned_date, churn_rule, threshold_days, "
                "is_won_back, last_csat_before_churn, lifecycle_stage from marts.fct_customer_churn"
            )
        }
        advocacy = {
            row[0]: row[1:]
            for row in conn.execute(
                "select loyalty_category, customers, buyers, repeat_purchase_rate, churn_rate, "
                "referrers, referral_rate, invitations_sent, invitations_answered, response_rate "
                "from marts.fct_advocacy_by_loyalty_category"
            )
        }
        satisfied = {
            (row[0], row[1]): row[2:]
            for row in conn.execute(
                "select breakdown, breakdown_value, churned_customers, churned_customers_with_csat, "
                "satisfied_but_churned_share from marts.fct_satisfied_but_churned"
            )
        }
        monthly_churned, monthly_won_back, latest_month = conn.execute(
            "select sum(customers_churned), sum(customers_won_back), max(churn_month) "
            "from marts.fct_churn_monthly"
        ).fetchone()
        support_rows = conn.execute(
            "select case_outcome, cases, customers, followed_up_cases, churned_after_cases, "
            "repurchased_after_cases, churn_rate_after_case "
            "from marts.fct_churn_after_support_cases order by 1"
        ).fetchall()
        support = {row[0]: row[6] for row in support_rows}
        # The mart counts per customer, then per outcome; the same cases counted directly.
        support_counts = [row[:6] for row in support_rows if row[1] > 0]
        support_counted_directly = conn.execute(
            "select case_outcome, count(*), count(distinct customer_key), "
            "count(*) filter (where is_followed_up), "
            "count(*) filter (where is_followed_up and has_churned_within_window), "
            "count(*) filter (where is_followed_up and has_repurchased_within_window) "
            "from staging.int_support_cases_followed_up group by 1 order by 1"
        ).fetchall()
        first_build = _fingerprints(conn)

    # Identity: the CRM id when the normalised email is a CRM customer's, else inferred.
    crm_by_email: dict[str, int] = {}
    for customer_id, email, _cancelled in sorted(customers):
        crm_by_email.setdefault(normalise(email), customer_id)
    cancelled_on = {
        str(customer_id): utc_date(cancelled)
        for customer_id, _e, cancelled in customers
        if cancelled
    }

    def key_of(email: str | None) -> str | None:
        email = normalise(email)
        if email is None:
            return None
        return str(crm_by_email[email]) if email in crm_by_email else inferred_key(email)

    # Purchase days: orders not cancelled, on or before the as-of date.
    assert all(normalise(email) for _id, email, _s, _at in orders)  # keys by email suffice
    order_revenue: dict[int, Decimal] = defaultdict(Decimal)
    for order_id, amount in lines:
        order_revenue[order_id] += amount
    day_revenue: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for order_id, email, status, ordered_at in orders:
        if status != "cancelled" and utc_date(ordered_at) <= AS_OF:
            day_revenue[key_of(email)][utc_date(ordered_at)] += order_revenue[order_id]
    purchase_days = {key: sorted(days) for key, days in day_revenue.items()}
    assert any(utc_date(o[3]) > AS_OF for o in orders)  # the as-of date really cuts data off

    # Repurchase per customer (frequency, recency, T, monetary value) exactly.
    assert set(repurchase) == set(purchase_days)
    for key, days in purchase_days.items():
        repeat_values = [day_revenue[key][day] for day in days[1:]]
        monetary = (
            (sum(repeat_values) / len(repeat_values)).quantize(Decimal("0.01"), ROUND_HALF_UP)
            if repeat_values
            else None
        )
        assert repurchase[key] == (
            len(days) - 1,
            (days[-1] - days[0]).days,
            (AS_OF - days[0]).days,
            monetary,
            days[0],
            days[-1],
        ), key

    # Churn per customer: the walk over purchase gaps, as of the as-of date.
    episodes = {
        key: churn_episodes(days, cancelled_on.get(key), AS_OF)
        for key, days in purchase_days.items()
    }
    assert set(churn) == set(purchase_days)
    churned: dict[str, date] = {}
    for key, days in purchase_days.items():
        current = [e for e in episodes[key] if e["won_back"] is None]
        is_won_back = any(e["won_back"] for e in episodes[key])
        gaps = [(days[i] - days[i - 1]).days for i in range(1, len(days))]
        expected = (
            bool(current),
            current[0]["churned"] if current else None,
            current[0]["rule"] if current else None,
            threshold(gaps),
            is_won_back,
        )
        assert churn[key][:5] == expected, key
        if current:
            churned[key] = current[0]["churned"]
    assert churned and any(churn[key][4] for key in churn)  # some churn, some win-backs
    assert monthly_churned == sum(len(e) for e in episodes.values())
    assert monthly_won_back == sum(1 for es in episodes.values() for e in es if e["won_back"])
    assert latest_month == AS_OF.replace(day=1)

    # Lifecycle: churned exactly for the churned; prospects are the customers without purchases.
    for key, stage in dim.items():
        if key in churn:
            assert stage == churn[key][6], key
            assert (stage == "churned") == churn[key][0], key
        else:
            assert stage == "prospect", key

    # Loyalty category (last LTR answer, all loaded data) and the last CSAT before churn.
    ordered_responses = sorted(responses, key=lambda r: (r[5], r[0]))
    category: dict[str, str] = {}
    last_csat: dict[str, int] = {}
    for _id, email, invited_email, ltr, csat, responded_at, _inv in ordered_responses:
        key = key_of(normalise(email) or invited_email)
        if key is not None and ltr is not None:
            category[key] = nps_category(ltr)
        if key in churned and csat is not None and utc_date(responded_at) <= churned[key]:
            last_csat[key] = csat
    for key in churn:
        assert churn[key][5] == last_csat.get(key), key

    # Repeat-purchase rate and churn rate per loyalty category, nobody dropped.
    assert sum(row[0] for row in advocacy.values()) == len(dim)
    for name in ("promoter", "passive", "detractor", "unknown"):
        buyers = [key for key in purchase_days if category.get(key, "unknown") == name]
        customers_in = [key for key in dim if category.get(key, "unknown") == name]
        repeaters = [key for key in buyers if len(purchase_days[key]) > 1]
        churners = [key for key in buyers if key in churned]
        assert advocacy[name][:4] == (
            len(customers_in),
            len(buyers),
            rate(len(repeaters), len(buyers)),
            rate(len(churners), len(buyers)),
        ), name

    # Referral rate as of the as-of date: a customer whose first referral is on or before it.
    first_referral: dict[str, date] = {}
    for referrer_id, created_at in referrals:
        if referrer_id is not None:
            day = utc_date(created_at)
            key = str(referrer_id)
            first_referral[key] = min(day, first_referral.get(key, day))
    assert any(day > AS_OF for day in first_referral.values())  # the cut really drops some
    for name in ("promoter", "passive", "detractor", "unknown"):
        customers_in = [key for key in dim if category.get(key, "unknown") == name]
        referrers = [
            key for key in customers_in if first_referral.get(key, AS_OF + timedelta(1)) <= AS_OF
        ]
        assert advocacy[name][4:6] == (
            len(referrers),
            rate(len(referrers), len(customers_in)),
        ), name

    # Feedback as of the as-of date, by the invitee's category when the invitation was sent
    # (their last LTR answer strictly before sent_at), not by their current category.
    ltr_answers: dict[str, list[tuple]] = defaultdict(list)
    first_answered: dict[int, date] = {}
    for response_id, email, invited_email, ltr, _csat, responded_at, invitation_id in responses:
        key = key_of(normalise(email) or invited_email)
        if key is not None and ltr is not None:
            ltr_answers[key].append(((responded_at, response_id), nps_category(ltr)))
        if invitation_id is not None:
            day = utc_date(responded_at)
            first_answered[invitation_id] = min(day, first_answered.get(invitation_id, day))
    feedback: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for invitation_id, email, sent_at in invitations:
        if utc_date(sent_at) > AS_OF:
            continue
        earlier = [a for a in ltr_answers.get(key_of(email), []) if a[0][0] < sent_at]
        at_sending = max(earlier)[1] if earlier else "unknown"
        feedback[at_sending][0] += 1
        feedback[at_sending][1] += first_answered.get(invitation_id, AS_OF + timedelta(1)) <= AS_OF
    assert any(utc_date(i[2]) > AS_OF for i in invitations)
    for name in ("promoter", "passive", "detractor", "unknown"):
        sent, answered = feedback[name]
        assert advocacy[name][6:] == (sent, answered, rate(answered, sent)), name
    assert feedback["unknown"][1] > 0  # not near 0 by construction, as the current category made it

    # Satisfied-but-churned share, overall.
    satisfied_count = sum(1 for score in last_csat.values() if score >= 4)
    assert satisfied[("overall", "all")] == (
        len(churned),
        len(last_csat),
        rate(satisfied_count, len(last_csat)),
    )

    # Planted truths (plugins/cem_warehouse/sources/generator/params.py), directionally.
    assert advocacy["detractor"][3] > advocacy["promoter"][3]  # detractors churn more
    assert advocacy["promoter"][2] > advocacy["detractor"][2]  # promoters repurchase more
    assert satisfied[("overall", "all")][2] > Decimal("0.65")  # ~80% of churners satisfied
    assert support["unresolved"] > support["resolved at first contact"]
    assert support["unresolved"] > support["resolved after more contacts"]
    assert support_counts == support_counted_directly
    # some customer has two cases of one outcome, and counts once there: the distinct count matters
    assert any(row[2] < row[1] for row in support_counts)

    # Reproducible: the same data and as-of date give identical marts.
    build_marts(stand_ins.warehouse, as_of=AS_OF)
    with connect(stand_ins.warehouse) as conn:
        assert _fingerprints(conn) == first_build
