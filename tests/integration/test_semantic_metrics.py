"""The semantic layer's metrics (defined once in dbt_project/models/marts/semantic/) give
the same numbers as the marts analysts query, and NPS and the referral rate also match
a recomputation in Python from the raw tables.

The marts themselves are checked against independent Python arithmetic in
test_dbt_loyalty_marts.py (NPS, referral rate) and test_dbt_repurchase_churn_marts.py
(repeat-purchase rate, churn rate, satisfied-but-churned share); here the point is that
the one metric definition and the marts cannot drift apart.
"""

from __future__ import annotations

from decimal import Decimal

from cem_warehouse.transform.manifest import ensure_manifest
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.transform.semantic import ALL, SemanticLayer
from cem_warehouse.warehouse.connection import connect

HEADLINE_METRICS = {
    "nps",
    "repeat_purchase_rate",
    "churn_rate",
    "satisfied_but_churned_share",
    "referral_rate",
}


def _ratio(numerator, denominator) -> Decimal | None:
    return None if not denominator else Decimal(numerator) / Decimal(denominator)


def _nps_from_raw(conn) -> Decimal:
    """Promoters 9-10, detractors 0-6, over responses with an LTR (raw.survey_responses)."""
    answers = [
        row[0] for row in conn.execute("select ltr from raw.survey_responses where ltr is not null")
    ]
    promoters = sum(1 for ltr in answers if ltr >= 9)
    detractors = sum(1 for ltr in answers if ltr <= 6)
    return Decimal(100) * (promoters - detractors) / len(answers)


def test_headline_metrics_are_defined_once_and_agree_with_the_marts(
    stand_ins, tmp_path, monkeypatch
):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    build_marts(stand_ins.warehouse)

    layer = SemanticLayer.from_manifest(ensure_manifest())
    assert set(layer.metrics) >= HEADLINE_METRICS
    location = stand_ins.warehouse

    with connect(location) as conn:
        # NPS: the metric, the monthly mart and the raw answers agree.
        nps = layer.evaluate(location, "nps")[ALL]
        p, d, n = conn.execute(
            "select sum(promoters), sum(detractors), sum(responses) from marts.fct_nps_monthly"
        ).fetchone()
        assert round(nps, 10) == round(Decimal(100) * (p - d) / n, 10)
        assert round(nps, 10) == round(_nps_from_raw(conn), 10)
        by_touchpoint = layer.evaluate(location, "nps", by="touchpoint")
        for touchpoint, tp_p, tp_d, tp_n in conn.execute(
            "select touchpoint, sum(promoters), sum(detractors), sum(responses) "
            "from marts.fct_nps_monthly group by 1"
        ):
            assert round(by_touchpoint[touchpoint], 10) == round(
                Decimal(100) * (tp_p - tp_d) / tp_n, 10
            )

        # Repeat-purchase rate: share of buyers with frequency >= 1.
        repeat, buyers = conn.execute(
            "select count(*) filter (where is_repeat_customer), count(*) from marts.fct_customer_repurchase"
        ).fetchone()
        assert layer.evaluate(location, "repeat_purchase_rate")[ALL] == _ratio(repeat, buyers)

        # Monthly churn rate, month by month, as fct_churn_monthly states it.
        by_month = layer.evaluate(location, "churn_rate", by="churn_month")
        months = conn.execute(
            "select churn_month, customers_churned, customers_active_at_start, churn_rate from marts.fct_churn_monthly"
        ).fetchall()
        assert months
        for month, churned, active, stated in months:
            assert by_month[str(month)] == _ratio(churned, active)
            if stated is not None:
                assert round(by_month[str(month)], 4) == round(stated, 4)

        # Satisfied-but-churned share, overall.
        share = layer.evaluate(location, "satisfied_but_churned_share")[ALL]
        stated = conn.execute(
            "select satisfied_churned_customers, churned_customers_with_csat, satisfied_but_churned_share "
            "from marts.fct_satisfied_but_churned where breakdown = 'overall'"
        ).fetchone()
        assert share == _ratio(stated[0], stated[1])
        assert round(share, 4) == round(stated[2], 4)
        assert share > Decimal("0.5")  # the planted "most switchers were satisfied"

        # Referral rate by loyalty category: the metric, the mart, and a count from raw.
        rates = layer.evaluate(location, "referral_rate", by="loyalty_category")
        for category, customers, stated_rate in conn.execute(
            "select loyalty_category, customers, referral_rate from marts.fct_referral_rates_by_loyalty_category"
        ):
            if customers:
                assert round(rates[category], 4) == round(stated_rate, 4), category
        referrer_ids = {
            row[0]
            for row in conn.execute(
                "select distinct referrer_customer_id from raw.referrals where referrer_customer_id is not null"
            )
        }
        customers_total = conn.execute("select count(*) from marts.dim_customers").fetchone()[0]
        referrers_in_dim = conn.execute(
            "select count(*) from marts.dim_customers where customer_id = any(%s)",
            (list(referrer_ids),),
        ).fetchone()[0]
        referrers = layer.evaluate(location, "referrers")[ALL]
        customers = layer.evaluate(location, "customers")[ALL]
        assert (referrers, customers) == (referrers_in_dim, customers_total)
        assert rates["promoter"] > rates["detractor"]  # planted: promoters refer more
