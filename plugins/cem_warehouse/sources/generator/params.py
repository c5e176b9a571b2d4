"""Every rate the generator uses, with its documented default.

The generator draws a hidden loyalty category per customer (promoter / passive /
detractor) and lets it drive what the customer *does*. The planted truths the marts must
recover, and the parameters that plant them:

* promoters repurchase more often ............ ``purchase_gap_days`` (shorter gap = more orders)
* promoters buy more product lines ........... ``extra_product_lines``
* promoters refer more ........................ ``referrer_weight`` with ``referred_share``
* promoters give more feedback ............... ``response_rate``
* detractors churn more ...................... ``mean_lifetime_days``
* an unresolved support contact raises churn . ``unresolved_churn_probability``, ``unresolved_churn_delay_days``
* ~80% of churned customers were satisfied ... ``churned_satisfied_share`` (CSAT >= 4 at their last survey)
* referred customers have a customer referrer  (by construction: referrers are drawn from earlier customers)
* loyalty shows in revenue ................... orders x ``premium_tier_probability`` (higher tiers cost more)
* some leavers are won back .................. ``winback_rate``, ``winback_pause_days``

Per-category tuples are ordered (promoter, passive, detractor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

CATEGORIES = ("promoter", "passive", "detractor")


@dataclass(frozen=True)
class GeneratorParams:
    """Knobs of the synthetic population. Defaults give ~10 order lines, ~1 survey response
    and ~1 support interaction per customer, over two years of history."""

    #: last instant of the day-0 history (UTC); ``--next-day`` runs add one day after it each time.
    history_end: datetime = datetime(2025, 12, 31, tzinfo=UTC)
    #: length of the day-0 history; acquisitions are uniform over it.
    history_days: int = 730
    #: customers generated (and held in memory) per chunk.
    chunk_size: int = 50_000

    # --- who the customers are -------------------------------------------------------
    #: hidden loyalty category shares (promoter, passive, detractor): NPS ~ +20.
    category_shares: tuple[float, float, float] = (0.45, 0.30, 0.25)
    segment_shares: tuple[float, float, float] = (0.70, 0.22, 0.08)
    #: share of customers acquired through a referral (the rest use the other channels).
    referred_share: float = 0.12
    #: relative chance a customer of each category is the referrer of a referred customer.
    referrer_weight: tuple[float, float, float] = (1.0, 0.30, 0.08)
    email_consent_rate: float = 0.62

    # --- behaviour ----------------------------------------------------------------------
    #: mean days between orders while active (a Poisson process after the first order).
    purchase_gap_days: tuple[float, float, float] = (55.0, 85.0, 125.0)
    #: mean of the hidden lifetime (exponential) from acquisition until the customer leaves.
    mean_lifetime_days: tuple[float, float, float] = (1400.0, 700.0, 300.0)
    #: share of leavers who cancel explicitly in the CRM (the rest just stop buying).
    explicit_cancel_share: float = 0.30
    #: share of leavers who come back (won back) after a pause of ~``winback_pause_days`` (exponential).
    winback_rate: float = 0.12
    winback_pause_days: float = 150.0
    #: mean number of product lines owned beyond the first (Poisson, capped at 6 lines).
    extra_product_lines: tuple[float, float, float] = (1.8, 0.9, 0.4)
    #: mean extra lines per order beyond the first (Poisson).
    extra_order_lines: tuple[float, float, float] = (1.3, 1.2, 1.0)
    #: probability an order line is the premium / plus tier (rest: basic).
    premium_tier_probability: tuple[float, float, float] = (0.35, 0.22, 0.12)
    plus_tier_probability: tuple[float, float, float] = (0.35, 0.33, 0.30)
    refund_rate: tuple[float, float, float] = (0.02, 0.03, 0.07)
    order_cancel_rate: float = 0.015

    # --- contact center ---------------------------------------------------------------
    #: support cases per active customer-year.
    cases_per_year: float = 0.85
    #: outcome shares: resolved in the first contact, resolved later, never resolved.
    case_outcome_shares: tuple[float, float, float] = (0.60, 0.28, 0.12)
    #: probability that a resolved case is reopened (within 0.5-10 days of resolution).
    reopen_rate: float = 0.08
    #: probability an unresolved case makes the customer leave (after ~``unresolved_churn_delay_days``).
    unresolved_churn_probability: float = 0.5
    unresolved_churn_delay_days: float = 30.0

    # --- surveys ----------------------------------------------------------------------
    #: first relationship survey this many days after acquisition, then yearly.
    relationship_first_days: float = 60.0
    post_purchase_invite_rate: float = 0.20
    post_support_invite_rate: float = 0.80
    #: invitation response rate per category: promoters give more feedback.
    response_rate: tuple[float, float, float] = (0.50, 0.38, 0.28)
    #: mean and spread of the latent likelihood-to-recommend per category (rounded, 0-10).
    ltr_mean: tuple[float, float, float] = (9.4, 7.5, 4.3)
    ltr_sd: tuple[float, float, float] = (0.7, 0.8, 1.9)
    #: P(CSAT >= 4) per category for ordinary responses.
    satisfied_rate: tuple[float, float, float] = (0.92, 0.80, 0.62)
    #: P(CSAT >= 4) at a leaver's last survey: the "80% of switchers were satisfied" finding.
    churned_satisfied_share: float = 0.80
    #: P(CES >= 5) per category.
    easy_rate: tuple[float, float, float] = (0.85, 0.65, 0.35)
    #: mean of the loyalty-index items per category (0-10 scale, sd 1.4).
    loyalty_item_mean: tuple[float, float, float] = (8.7, 7.0, 4.5)
    #: days from an order to its post-purchase invitation (uniform); next-day runs invite same-day.
    post_purchase_delay_days: tuple[float, float] = (2.0, 3.0)
    #: mean days from invitation to response (exponential).
    response_delay_days: float = 1.5
    comment_rate: float = 0.35
    #: share of emails written with other case or surrounding whitespace in sales and surveys.
    email_variant_rate: float = 0.15

    # --- CRM realism ---------------------------------------------------------------
    #: share of CRM customers touched by one bulk update (a burst of one cursor timestamp).
    bulk_update_share: float = 0.02
    #: customers acquired in the last ``late_window_days`` are withheld from the CRM with this
    #: probability: their orders arrive in sales first, the CRM record on the next day.
    late_arrival_rate: float = 0.30
    late_window_days: float = 3.0

    # --- next-day deltas (per run, relative to the customer count) -------------------
    new_customers_per_day: float = 0.002
    refunds_per_day: float = 0.0004
    crm_updates_per_day: float = 0.002
    archive_per_day: float = 0.0001
    #: share of a day's survey responses exported one day late (into the previous day's folder).
    late_survey_share: float = 0.10

    extras: dict = field(default_factory=dict)


DEFAULT_PARAMS = GeneratorParams()
