"""The loyalty, referral and contact-center marts on really loaded generated data, checked
against an independent recomputation in Python from the raw tables (never by re-running the
dbt SQL), and for the generator's planted truths (plugins/cem_warehouse/sources/generator/
params.py): promoters refer more and answer more surveys than detractors.

Definitions checked (docs/metrics.md, the marts' yml files):
* customer: the CRM customer_id when the normalised email is a CRM customer's, else
  'inferred-' || md5(email); segment 'unknown' for customers the CRM does not know.
* loyalty category: NPS category (9-10 promoter, 7-8 passive, 0-6 detractor) of the
  customer's last LTR answer; 'unknown' without one.
* NPS = 100 x (promoters - detractors) / responses, per month x segment x touchpoint.
* response rate = invitations answered / invitations sent, in the month of sending, and by
  the invitee's loyalty category WHEN THE INVITATION WAS SENT (their last LTR answer before
  sent_at; 'unknown' without one), in both fct_survey_response_rates_by_loyalty_category and
  the feedback columns of fct_advocacy_by_loyalty_category.
* referral rate = referrers / customers, by loyalty category, over dim_customers (a referrer
  the CRM lacks is in fct_referrers only); converted when the referred customer placed a
  first (not cancelled) order. The same rate in fct_advocacy_by_loyalty_category.
* This build has no as-of date before the data, so the advocacy mart (as of a date) and the
  loyalty and referral marts (all loaded data) must agree exactly.
* FCR: resolved in one contact and not reopened within 7 days of the resolution.
Rounding is half-up, as PostgreSQL's round(numeric).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from cem_warehouse.cli import main
from cem_warehouse.transform.dbt import dbt_target_dir
from cem_warehouse.warehouse.connection import connect

MY_MARTS = (
    "fct_nps_monthly",
    "fct_satisfaction_monthly",
    "fct_loyalty_indices_monthly",
    "fct_survey_response_rates",
    "fct_survey_response_rates_by_loyalty_category",
    "fct_referrers",
    "fct_referral_rates_by_loyalty_category",
    "fct_first_contact_resolution_monthly",
    "fct_support_contacts_monthly",
)


SURVEY_ONLY_EMAIL = " Survey.Only@Example.COM"  # a respondent the CRM has never seen


def _plant_survey_only_respondent(landing: Path) -> None:
    """An invitation and its answer (a detractor) from an email the CRM does not know: the
    response must count under segment 'unknown', not be dropped."""
    ids = {}
    for entity, key in (("invitations", "invitation_id"), ("responses", "response_id")):
        path = sorted(landing.glob(f"{entity}/*/*.csv"))[-1]
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        ids[entity] = (path, list(rows[0]), max(int(row[key]) for row in rows) + 1, rows[-1])
    invitation_id = ids["invitations"][2]
    path, header, _next, last = ids["invitations"]
    planted = dict.fromkeys(header, "")
    planted.update(
        invitation_id=invitation_id,
        survey_id="pp-v3",
        touchpoint="post_purchase",
        respondent_email=SURVEY_ONLY_EMAIL,
        sent_at=last["sent_at"],
    )
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, header).writerow(planted)
    path, header, response_id, last = ids["responses"]
    planted = dict.fromkeys(header, "")
    planted.update(
        response_id=response_id,
        invitation_id=invitation_id,
        survey_id="pp-v3",
        touchpoint="post_purchase",
        respondent_email=SURVEY_ONLY_EMAIL,
        ltr=3,
        csat=2,
        ces=4,
        sent_at=last["sent_at"],
        responded_at=last["responded_at"],
    )
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, header).writerow(planted)


def normalise(email: str | None) -> str | None:
    return (email or "").strip(" \t\r\n").lower() or None


def inferred_key(email: str) -> str:
    return "inferred-" + hashlib.md5(email.encode()).hexdigest()


def nps_category(ltr: int | None) -> str | None:
    if ltr is None:
        return None
    return "promoter" if ltr >= 9 else "passive" if ltr >= 7 else "detractor"


def rounded(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def ratio(numerator: int, denominator: int, places: int = 4) -> Decimal | None:
    return rounded(Decimal(numerator) / denominator, places) if denominator else None


def mean(items: list, places: int = 2) -> Decimal | None:
    answered = [Decimal(item) for item in items if item is not None]
    return rounded(sum(answered) / len(answered), places) if answered else None


def month_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date().replace(day=1)


def _query(conn, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


class Raw:
    """The raw tables, and the customer rules recomputed from them."""

    def __init__(self, conn) -> None:
        self.customers = _query(conn, "select customer_id, email, segment from raw.customers")
        self.as_of = conn.execute(
            "select max(as_of_date) from marts.fct_advocacy_by_loyalty_category"
        ).fetchone()[0]
        self.orders = _query(
            conn, "select order_id, customer_email, status, ordered_at from raw.orders"
        )
        self.lines = _query(conn, "select order_id, line_amount from raw.order_lines")
        self.invitations = _query(
            conn,
            "select invitation_id, survey_id, touchpoint, respondent_email, sent_at "
            "from raw.invitations",
        )
        self.responses = _query(
            conn,
            "select response_id, invitation_id, respondent_email, touchpoint, ltr, csat, ces, "
            "overall_satisfaction, choose_again, buy_different_products, expand_use, "
            "switch_to_competitor, renew, responded_at from raw.survey_responses",
        )
        self.referrals = _query(
            conn,
            "select referral_id, referrer_customer_id, referred_customer_id, created_at "
            "from raw.referrals",
        )
        self.cases = _query(
            conn,
            "select case_id, channel, is_resolved, resolved_first_contact, resolved_at, "
            "reopened_at, opened_at from raw.support_cases",
        )
        self.interactions = _query(
            conn, "select interaction_id, channel, handle_seconds, started_at from raw.interactions"
        )

        self.crm_by_email: dict[str, int] = {}
        for customer_id, email, _segment in sorted(self.customers):
            self.crm_by_email.setdefault(normalise(email), customer_id)
        self.segment = {str(c[0]): c[2] for c in self.customers}
        invitation_email = {i[0]: i[3] for i in self.invitations}
        # A response's customer: its own email, else the invitation's (fct_survey_responses).
        self.response_key = {
            r[0]: self.key_of(r[2] if normalise(r[2]) else invitation_email.get(r[1]))
            for r in self.responses
        }
        seen = {normalise(o[1]) for o in self.orders}
        seen |= {normalise(r[2]) for r in self.responses}
        seen |= {normalise(i[3]) for i in self.invitations}
        seen.discard(None)
        self.customer_keys = {str(c[0]) for c in self.customers} | {
            inferred_key(e) for e in seen - set(self.crm_by_email)
        }

    def key_of(self, email: str | None) -> str | None:
        email = normalise(email)
        if email is None:
            return None
        return str(self.crm_by_email[email]) if email in self.crm_by_email else inferred_key(email)

    def segment_of(self, key: str | None) -> str:
        return self.segment.get(key) or "unknown"

    def ltr_answers(self) -> dict[str, list[tuple]]:
        """Per customer key, their LTR answers as ((responded_at, response_id), category)."""
        answers: dict[str, list[tuple]] = defaultdict(list)
        for response_id, *_rest in self.responses:
            ltr, responded_at = _rest[3], _rest[-1]
            key = self.response_key[response_id]
            if key is not None and ltr is not None:
                answers[key].append(((responded_at, response_id), nps_category(ltr)))
        return answers

    def loyalty_category(self) -> dict[str, str]:
        return {key: max(answers)[1] for key, answers in self.ltr_answers().items()}


def check_nps_monthly(conn, raw: Raw) -> None:
    mart = {
        (row[0], row[1], row[2]): row[3:]
        for row in _query(
            conn,
            "select response_month, segment, touchpoint, responses, promoters, passives, "
            "detractors, nps, nps_margin_of_error, is_small_sample, nps_monthly_id "
            "from marts.fct_nps_monthly",
        )
    }
    cells: dict[tuple, Counter] = defaultdict(Counter)
    for response_id, _inv, _email, touchpoint, ltr, *_rest in raw.responses:
        if ltr is not None:
            key = raw.response_key[response_id]
            cell = (month_of(_rest[-1]), raw.segment_of(key), touchpoint)
            cells[cell][nps_category(ltr)] += 1
    assert set(mart) == set(cells)
    assert {cell[1] for cell in cells} >= {"consumer", "unknown"}
    for cell, counts in cells.items():
        n = sum(counts.values())
        p, a, d = counts["promoter"], counts["passive"], counts["detractor"]
        responses, promoters, passives, detractors, nps, margin, small, pk = mart[cell]
        assert (responses, promoters, passives, detractors) == (n, p, a, d), cell
        assert nps == rounded(Decimal(100 * (p - d)) / n, 2), cell
        expected_margin = 196 * math.sqrt((p / n + d / n - ((p - d) / n) ** 2) / n)
        assert abs(float(margin) - expected_margin) <= 0.006, cell
        assert small == (n < 30), cell
        assert pk == f"{cell[0]}|{cell[1]}|{cell[2]}"
    # No LTR answer is dropped (inferred and unresolvable respondents count as 'unknown').
    assert sum(row[0] for row in mart.values()) == sum(r[4] is not None for r in raw.responses)


def check_satisfaction_and_indices(conn, raw: Raw) -> None:
    satisfaction = {
        (row[0], row[1], row[2]): row[3:]
        for row in _query(
            conn,
            "select response_month, segment, touchpoint, csat_responses, "
            "top_2_box_csat_responses, ces_responses, low_effort_responses, mean_csat, mean_ces "
            "from marts.fct_satisfaction_monthly",
        )
    }
    indices = {
        (row[0], row[1], row[2]): row[3:]
        for row in _query(
            conn,
            "select response_month, segment, touchpoint, advocacy_responses, purchasing_responses, "
            "retention_responses, advocacy_loyalty_index, purchasing_loyalty_index, "
            "retention_loyalty_index from marts.fct_loyalty_indices_monthly",
        )
    }
    csat: dict[tuple, list] = defaultdict(list)
    ces: dict[tuple, list] = defaultdict(list)
    per_response: dict[tuple, list[tuple]] = defaultdict(list)
    for row in raw.responses:
        response_id, _inv, _email, touchpoint, ltr, csat_score, ces_score = row[:7]
        overall, again, different, expand, switch, renew, responded_at = row[7:]
        cell = (month_of(responded_at), raw.segment_of(raw.response_key[response_id]), touchpoint)
        csat[cell].append(csat_score)
        ces[cell].append(ces_score)
        per_response[cell].append(
            (
                mean([overall, again, ltr]),
                mean([different, expand]),
                mean([None if switch is None else 10 - switch, renew]),
            )
        )
    assert set(satisfaction) == set(indices) == set(per_response)
    for cell in per_response:
        answered_csat = [c for c in csat[cell] if c is not None]
        answered_ces = [c for c in ces[cell] if c is not None]
        assert satisfaction[cell] == (
            len(answered_csat),
            sum(c >= 4 for c in answered_csat),
            len(answered_ces),
            sum(c >= 5 for c in answered_ces),
            mean(answered_csat),
            mean(answered_ces),
        ), cell
        columns = list(zip(*per_response[cell], strict=True))
        expected = tuple(sum(v is not None for v in column) for column in columns) + tuple(
            mean(list(column)) for column in columns
        )
        assert indices[cell] == expected, cell


def check_response_rates(conn, raw: Raw) -> dict[str, tuple[int, int]]:
    """Checks both response-rate marts; returns (invitations, responses) per category."""
    answered = {r[1] for r in raw.responses if r[1] is not None}
    mart = {
        (row[0], row[1], row[2]): row[3:]
        for row in _query(
            conn,
            "select sent_month, survey_id, touchpoint, invitations, responses, response_rate "
            "from marts.fct_survey_response_rates",
        )
    }
    sent: Counter = Counter()
    answered_by_cell: Counter = Counter()
    for invitation_id, survey_id, touchpoint, _email, sent_at in raw.invitations:
        cell = (month_of(sent_at), survey_id, touchpoint)
        sent[cell] += 1
        answered_by_cell[cell] += invitation_id in answered
    assert set(mart) == set(sent)
    for cell, invitations in sent.items():
        responses = answered_by_cell[cell]
        assert mart[cell] == (invitations, responses, ratio(responses, invitations)), cell
    assert sum(row[0] for row in mart.values()) == len(raw.invitations)

    # By the invitee's loyalty category when the invitation was sent.
    answers = raw.ltr_answers()
    by_category: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for invitation_id, _survey, touchpoint, email, sent_at in raw.invitations:
        earlier = [a for a in answers.get(raw.key_of(email), []) if a[0][0] < sent_at]
        category = max(earlier)[1] if earlier else "unknown"
        by_category[(category, touchpoint)][0] += 1
        by_category[(category, touchpoint)][1] += invitation_id in answered
    mart_by_category = {
        (row[0], row[1]): row[2:]
        for row in _query(
            conn,
            "select loyalty_category, touchpoint, invitations, responses, response_rate "
            "from marts.fct_survey_response_rates_by_loyalty_category",
        )
    }
    assert set(mart_by_category) == set(by_category)
    for cell, (invitations, responses) in by_category.items():
        assert mart_by_category[cell] == (invitations, responses, ratio(responses, invitations))
    totals: dict[str, tuple[int, int]] = {}
    for (category, _touchpoint), (invitations, responses) in by_category.items():
        before = totals.get(category, (0, 0))
        totals[category] = (before[0] + invitations, before[1] + responses)

    # The advocacy mart's feedback: the same category at sending, cut at its as-of date,
    # which here is no earlier than any invitation or response: the same numbers.
    assert max(i[4] for i in raw.invitations).astimezone(UTC).date() <= raw.as_of
    assert max(r[-1] for r in raw.responses).astimezone(UTC).date() <= raw.as_of
    advocacy = {
        row[0]: row[1:]
        for row in _query(
            conn,
            "select loyalty_category, invitations_sent, invitations_answered, response_rate "
            "from marts.fct_advocacy_by_loyalty_category",
        )
    }
    for category in ("promoter", "passive", "detractor", "unknown"):
        invitations, responses = totals.get(category, (0, 0))
        assert advocacy[category] == (invitations, responses, ratio(responses, invitations))
    return totals


def check_referrals(conn, raw: Raw) -> dict[str, tuple]:
    """Checks both referral marts; returns the by-category mart rows."""
    line_total: dict[int, Decimal] = defaultdict(Decimal)
    for order_id, amount in raw.lines:
        line_total[order_id] += amount
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    purchasers = set()
    for order_id, email, status, _at in raw.orders:
        if status != "cancelled":
            revenue[raw.key_of(email)] += line_total[order_id]
            purchasers.add(raw.key_of(email))
    made: Counter = Counter()
    converted: Counter = Counter()
    referred: dict[str, set[str]] = defaultdict(set)
    for _id, referrer, referred_id, _created_at in raw.referrals:
        made[str(referrer)] += 1
        converted[str(referrer)] += str(referred_id) in purchasers
        referred[str(referrer)].add(str(referred_id))
    referred_revenue = {
        key: sum((revenue.get(r, Decimal(0)) for r in keys), Decimal(0))
        for key, keys in referred.items()
    }
    category = raw.loyalty_category()

    referrers = {
        row[0]: row[1:]
        for row in _query(
            conn,
            "select referrer_customer_key, loyalty_category, referrals_made, converted_referrals, "
            "referred_customers, referred_customers_revenue from marts.fct_referrers",
        )
    }
    assert set(referrers) == set(made)
    for key in made:
        assert referrers[key] == (
            category.get(key, "unknown"),
            made[key],
            converted[key],
            len(referred[key]),
            referred_revenue[key],
        ), key

    expected: dict[str, list] = {
        c: [0, 0, 0, 0, Decimal(0)] for c in ("promoter", "passive", "detractor", "unknown")
    }
    # Customers are dim_customers' (CRM and inferred keys); a referrer the CRM lacks is in
    # fct_referrers only.
    for key in raw.customer_keys:
        row = expected[category.get(key, "unknown")]
        row[0] += 1
        if key in made:
            row[1] += 1
            row[2] += made[key]
            row[3] += converted[key]
            row[4] += referred_revenue[key]
    mart = {
        row[0]: row[1:]
        for row in _query(
            conn,
            "select loyalty_category, customers, referrers, referrals_made, converted_referrals, "
            "referred_customers_revenue, referral_rate from marts.fct_referral_rates_by_loyalty_category",
        )
    }
    assert set(mart) == set(expected)
    for category_name, (customers, n_referrers, n_made, n_converted, money) in expected.items():
        assert mart[category_name] == (
            customers,
            n_referrers,
            n_made,
            n_converted,
            money,
            ratio(n_referrers, customers),
        ), category_name
    # Nobody dropped: every customer is in exactly one category.
    assert sum(row[0] for row in mart.values()) == len(raw.customer_keys)

    # The advocacy mart's referral rate: the same rule, referrals cut at its as-of date,
    # which here is no earlier than any referral: the same numbers.
    assert max(r[3] for r in raw.referrals).astimezone(UTC).date() <= raw.as_of
    advocacy = {
        row[0]: row[1:]
        for row in _query(
            conn,
            "select loyalty_category, customers, referrers, referral_rate "
            "from marts.fct_advocacy_by_loyalty_category",
        )
    }
    for category_name, (customers, n_referrers, *_rest) in expected.items():
        assert advocacy[category_name] == (
            customers,
            n_referrers,
            ratio(n_referrers, customers),
        ), category_name
    return mart


def check_contact_center(conn, raw: Raw) -> None:
    cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for _id, channel, resolved, first_contact, resolved_at, reopened_at, opened_at in raw.cases:
        fcr = bool(
            resolved
            and first_contact
            and (reopened_at is None or reopened_at > resolved_at + timedelta(days=7))
        )
        cells[(month_of(opened_at), channel)][0] += 1
        cells[(month_of(opened_at), channel)][1] += fcr
    mart = {
        (row[0], row[1]): row[2:]
        for row in _query(
            conn,
            "select opened_month, channel, cases, first_contact_resolved_cases, fcr_rate "
            "from marts.fct_first_contact_resolution_monthly",
        )
    }
    assert set(mart) == set(cells)
    for cell, (cases, fcr) in cells.items():
        assert mart[cell] == (cases, fcr, ratio(fcr, cases)), cell
    assert 0 < sum(fcr for _cases, fcr in cells.values()) < len(raw.cases)

    handle: dict[tuple, list[int]] = defaultdict(list)
    for _id, channel, seconds, started_at in raw.interactions:
        handle[(month_of(started_at), channel)].append(seconds)
    contacts = {
        (row[0], row[1]): row[2:]
        for row in _query(
            conn,
            "select started_month, channel, contacts, total_handle_seconds, mean_handle_seconds "
            "from marts.fct_support_contacts_monthly",
        )
    }
    assert set(contacts) == set(handle)
    for cell, seconds in handle.items():
        assert contacts[cell] == (len(seconds), sum(seconds), mean(seconds, 1)), cell
    linked = conn.execute(
        "select sum(post_contact_csat_responses) from marts.fct_support_contacts_monthly"
    ).fetchone()[0]
    assert linked > 0


def _unit_tests_in_last_dbt_run() -> dict[str, str]:
    results = json.loads((dbt_target_dir() / "run_results.json").read_text())["results"]
    return {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}


def _unit_tests_in_manifest() -> set[str]:
    return set(json.loads((dbt_target_dir() / "manifest.json").read_text())["unit_tests"])


def test_loyalty_marts_match_an_independent_recomputation(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    _plant_survey_only_respondent(stand_ins.landing)
    stand_ins.ingest_all()

    # With the unit tests, through the command an operator runs after changing the project.
    monkeypatch.setenv("CEM_WAREHOUSE_URL", stand_ins.warehouse.url)
    assert main(["marts", "build", "--unit-tests"]) == 0  # fails on any failed model or test
    ran = _unit_tests_in_last_dbt_run()
    assert ran and set(ran.values()) == {"pass"}
    assert set(ran) == _unit_tests_in_manifest()

    with connect(stand_ins.warehouse) as conn:
        # Published as tables, never views (a view would follow the schema swap).
        kinds = dict(
            _query(
                conn,
                "select c.relname, c.relkind from pg_class c join pg_namespace n "
                "on n.oid = c.relnamespace where n.nspname = 'marts'",
            )
        )
        assert {mart: kinds.get(mart) for mart in MY_MARTS} == dict.fromkeys(MY_MARTS, "r")

        raw = Raw(conn)
        check_nps_monthly(conn, raw)
        check_satisfaction_and_indices(conn, raw)
        response_totals = check_response_rates(conn, raw)
        referral_rates = check_referrals(conn, raw)
        check_contact_center(conn, raw)

    # Planted truths: promoters refer more and give more feedback than detractors.
    assert referral_rates["promoter"][-1] > referral_rates["detractor"][-1]
    assert referral_rates["promoter"][-1] > referral_rates["passive"][-1]

    def rate(category: str) -> float:
        invitations, responses = response_totals[category]
        return responses / invitations

    assert rate("promoter") > rate("detractor")
