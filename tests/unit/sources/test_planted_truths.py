"""The planted truths hold in the generated data itself, measured as the marts will measure them:
from the three systems' records (emails joined after normalising), not from hidden state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cem_warehouse.sources.generator import model, run
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS

CUSTOMERS = 20_000
AS_OF = pd.Timestamp(DEFAULT_PARAMS.history_end)


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    clock = run._clock(DEFAULT_PARAMS)
    out, _, late = model.generate_chunk(
        DEFAULT_PARAMS,
        11,
        0,
        CUSTOMERS,
        model.Counters(),
        clock,
        float(DEFAULT_PARAMS.history_days),
    )
    run._split_late(out, run.latent_ids(0, late))  # late arrivals reach the CRM only the next day
    frames = {f"{s}.{e}": t.to_pandas() for s, ents in out.tables.items() for e, t in ents.items()}
    frames["late"] = pd.DataFrame({"customer_id": np.flatnonzero(late) + model.CRM_ID_OFFSET})
    return frames


def _norm(emails: pd.Series) -> pd.Series:
    return emails.str.strip().str.lower()


@pytest.fixture(scope="module")
def customers(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per CRM customer with NPS category (last LTR), behaviour and churn per CEM_DOMAIN.md."""
    crm = data["crm.customers"].set_index("customer_id")
    email_to_id = pd.Series(crm.index, index=crm["email"])
    orders = data["sales.orders"].assign(email=lambda d: _norm(d["customer_email"]))
    orders["customer_id"] = orders["email"].map(email_to_id)
    orders = orders[orders["status"] != "cancelled"].dropna(subset=["customer_id"])
    orders["day"] = orders["ordered_at"].dt.floor("D")
    days = orders.groupby("customer_id")["day"].agg(["nunique", "max"])
    gaps = (
        orders.drop_duplicates(["customer_id", "day"])
        .sort_values(["customer_id", "day"])
        .assign(gap=lambda d: d.groupby("customer_id")["day"].diff().dt.days)
        .groupby("customer_id")["gap"]
        .median()
    )
    threshold = np.maximum(90, 3 * gaps.reindex(days.index).fillna(0))
    silent = (AS_OF - days["max"]).dt.days
    lines = data["sales.order_lines"].merge(orders[["order_id", "customer_id"]], on="order_id")
    lines["product_line"] = (lines["product_id"] - 1) // 3
    responses = data["surveys.responses"].assign(email=lambda d: _norm(d["respondent_email"]))
    responses["customer_id"] = responses["email"].map(email_to_id)
    last = responses.sort_values("responded_at").groupby("customer_id").last()
    cases = data["crm.support_cases"]
    unresolved = (
        cases[(cases["status"] == "closed") & ~cases["is_resolved"]].groupby("customer_id").size()
    )
    referrers = data["crm.referrals"].groupby("referrer_customer_id").size()
    frame = pd.DataFrame(index=crm.index)
    frame["frequency"] = days["nunique"].reindex(crm.index).fillna(0) - 1
    frame["revenue"] = (
        orders.groupby("customer_id")["order_total"].sum().reindex(crm.index).fillna(0)
    )
    frame["order_value"] = frame["revenue"] / orders.groupby("customer_id").size().reindex(
        crm.index
    )
    frame["product_lines"] = (
        lines.groupby("customer_id")["product_line"].nunique().reindex(crm.index).fillna(0)
    )
    frame["churned"] = (silent > threshold).reindex(crm.index).fillna(False) | crm[
        "cancelled_at"
    ].notna()
    frame["ltr"] = last["ltr"].reindex(crm.index)
    frame["category"] = pd.cut(
        frame["ltr"], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"]
    )
    frame["is_referrer"] = referrers.reindex(crm.index).fillna(0) > 0
    frame["has_unresolved"] = unresolved.reindex(crm.index).fillna(0) > 0
    frame["has_cases"] = cases.groupby("customer_id").size().reindex(crm.index).fillna(0) > 0
    return frame


def _by_category(customers: pd.DataFrame, column: str) -> pd.Series:
    return customers.groupby("category", observed=True)[column].mean()


@pytest.mark.parametrize(
    "column, min_ratio",
    [
        ("frequency", 1.8),  # repurchase: distinct purchase days - 1
        ("product_lines", 1.5),  # cross-sell: distinct product lines bought
        ("is_referrer", 3.0),  # referral rate
        ("revenue", 2.0),  # loyalty shows in revenue
        ("order_value", 1.35),  # ... also per order: promoters buy higher tiers
    ],
)
def test_promoters_do_more_than_passives_than_detractors(
    customers: pd.DataFrame, column: str, min_ratio: float
) -> None:
    """Ordered by category, and by a margin the planted rates produce but behaviour alone does not."""
    means = _by_category(customers, column)
    assert means["promoter"] > means["passive"] > means["detractor"], means
    assert means["promoter"] / means["detractor"] > min_ratio, means


def test_repeat_purchase_rate_is_higher_for_promoters(customers: pd.DataFrame) -> None:
    rate = (
        customers.assign(repeat=customers["frequency"] >= 1)
        .groupby("category", observed=True)["repeat"]
        .mean()
    )
    assert rate["promoter"] - rate["detractor"] > 0.05, rate


def test_detractors_churn_more(customers: pd.DataFrame) -> None:
    churn = _by_category(customers, "churned")
    assert churn["detractor"] > churn["passive"] > churn["promoter"], churn
    assert churn["detractor"] - churn["promoter"] > 0.10, churn


def test_an_unresolved_support_contact_raises_churn(customers: pd.DataFrame) -> None:
    with_cases = customers[customers["has_cases"]]
    churn = with_cases.groupby("has_unresolved")["churned"].mean()
    assert churn[True] > churn[False] + 0.10, churn


def test_about_80_percent_of_churned_customers_were_satisfied_at_their_last_survey(
    data: dict,
) -> None:
    crm = data["crm.customers"]
    email_to_id = pd.Series(crm["customer_id"].to_numpy(), index=crm["email"])
    responses = data["surveys.responses"].assign(
        customer_id=lambda d: _norm(d["respondent_email"]).map(email_to_id)
    )
    # churned per the hidden model: those who cancelled explicitly have a known churn instant
    cancelled = crm.dropna(subset=["cancelled_at"])[["customer_id", "cancelled_at"]]
    before = responses.merge(cancelled, on="customer_id")
    before = before[before["responded_at"] <= before["cancelled_at"]]
    last = before.sort_values("responded_at").groupby("customer_id").last()
    share = (last["csat"] >= 4).mean()
    assert len(last) > 300
    assert 0.74 <= share <= 0.86, share


def test_referred_customers_have_an_earlier_customer_as_referrer(data: dict) -> None:
    crm = data["crm.customers"].set_index("customer_id")
    referrals = data["crm.referrals"]
    assert len(referrals) > 0.08 * CUSTOMERS
    known = referrals["referrer_customer_id"].isin(crm.index)
    assert known.all()
    referred = crm["acquisition_channel"] == "referral"
    assert set(referrals["referred_customer_id"]) <= set(crm.index[referred]) | set(
        data["late"]["customer_id"]
    )
    acquired = crm["created_at"]
    assert (
        acquired.reindex(referrals["referrer_customer_id"]).to_numpy()
        <= acquired.reindex(referrals["referred_customer_id"]).fillna(AS_OF).to_numpy()
    ).all()
    assert (referrals["referrer_customer_id"] != referrals["referred_customer_id"]).all()


def test_answers_are_in_their_documented_ranges(data: dict) -> None:
    responses = data["surveys.responses"]
    assert responses["ltr"].between(0, 10).all()
    assert responses["csat"].between(1, 5).all()
    assert responses["ces"].dropna().between(1, 7).all()
    for item in model.LOYALTY_ITEMS:
        assert responses[item].dropna().between(0, 10).all()
    relationship = responses["touchpoint"] == "relationship"
    assert responses.loc[relationship, model.LOYALTY_ITEMS].notna().all().all()
    assert responses.loc[~relationship, "ces"].notna().all()
    assert set(responses["touchpoint"]) == {"relationship", "post_purchase", "post_support"}
    assert (responses["responded_at"] >= responses["sent_at"]).all()


def test_volumes_per_customer_match_the_documented_scale(data: dict) -> None:
    per_customer = {k: len(v) / CUSTOMERS for k, v in data.items()}
    assert 8 <= per_customer["sales.order_lines"] <= 13
    assert 0.7 <= per_customer["surveys.responses"] <= 1.4
    assert 0.7 <= per_customer["crm.interactions"] <= 1.3


def test_emails_vary_in_sales_but_resolve_to_crm_identities(data: dict) -> None:
    orders = data["sales.orders"]
    crm_emails = set(data["crm.customers"]["email"])
    raw = orders["customer_email"]
    assert (raw != _norm(raw)).mean() > 0.05  # varied case and whitespace
    late = set(
        model.identity(data["late"]["customer_id"].to_numpy() - model.CRM_ID_OFFSET)[
            "email"
        ].to_pylist()
    )
    assert set(_norm(raw)) <= crm_emails | late


def test_late_arriving_customers_are_in_sales_but_not_in_the_crm(data: dict) -> None:
    late_ids = data["late"]["customer_id"].to_numpy()
    assert len(late_ids) > 0
    assert not set(late_ids) & set(data["crm.customers"]["customer_id"])
    late_emails = set(model.identity(late_ids - model.CRM_ID_OFFSET)["email"].to_pylist())
    assert late_emails & set(_norm(data["sales.orders"]["customer_email"]))


def test_support_cases_carry_fcr_reopen_and_handle_time(data: dict) -> None:
    cases = data["crm.support_cases"]
    interactions = data["crm.interactions"]
    fcr = cases["resolved_first_contact"]
    assert 0.5 < fcr.mean() < 0.7
    assert (cases.loc[fcr, "is_resolved"]).all()
    reopened = cases["reopened_at"].notna()
    assert 0.03 < reopened.mean() < 0.12
    assert (
        (cases.loc[reopened, "reopened_at"] - cases.loc[reopened, "resolved_at"]).dt.days < 11
    ).all()
    assert (interactions["handle_seconds"] > 0).all()
    contacts = interactions.groupby("case_id").size()
    assert (
        contacts.reindex(cases["case_id"]).fillna(0).to_numpy() == cases["contact_count"].to_numpy()
    ).all()
    assert set(interactions["case_id"]) <= set(cases["case_id"])


def test_satisfied_but_churned_share_per_the_glossary_definition_is_about_80_percent(
    data: dict,
) -> None:
    """Churn as CEM_DOMAIN.md defines it (silence > max(90d, 3 x median gap), or cancellation);
    share of churned customers whose last CSAT before churned_at was >= 4."""
    crm = data["crm.customers"]
    email_to_id = pd.Series(crm["customer_id"].to_numpy(), index=crm["email"])
    orders = data["sales.orders"].query("status != 'cancelled'").copy()
    orders["customer_id"] = _norm(orders["customer_email"]).map(email_to_id)
    orders["day"] = orders["ordered_at"].dt.floor("D")
    days = (
        orders.dropna(subset=["customer_id"])
        .drop_duplicates(["customer_id", "day"])
        .sort_values(["customer_id", "day"])
    )
    days["gap"] = days.groupby("customer_id")["day"].diff().dt.days
    rhythm = days.groupby("customer_id").agg(last=("day", "max"), median_gap=("gap", "median"))
    threshold = np.maximum(90, 3 * rhythm["median_gap"].fillna(0))
    churned_at = rhythm["last"] + pd.to_timedelta(threshold, unit="D")
    cancelled = crm.set_index("customer_id")["cancelled_at"].reindex(rhythm.index)
    churned_at = pd.concat([churned_at, cancelled], axis=1).min(axis=1)
    churned = churned_at[churned_at <= AS_OF].rename("churned_at")
    responses = data["surveys.responses"].assign(
        customer_id=lambda d: _norm(d["respondent_email"]).map(email_to_id)
    )
    before = responses.merge(churned, left_on="customer_id", right_index=True)
    last = (
        before[before["responded_at"] <= before["churned_at"]]
        .sort_values("responded_at")
        .groupby("customer_id")
        .last()
    )
    assert len(last) > 1_000
    assert 0.75 <= (last["csat"] >= 4).mean() <= 0.88


def test_promoters_give_more_feedback(data: dict) -> None:
    """Response rate to the invitations sent after a customer's first answer, by that answer's
    NPS category (conditioning on later invitations avoids counting the first answer itself)."""
    crm = data["crm.customers"]
    email_to_id = pd.Series(crm["customer_id"].to_numpy(), index=crm["email"])
    responses = data["surveys.responses"].assign(
        customer_id=lambda d: _norm(d["respondent_email"]).map(email_to_id)
    )
    first = responses.sort_values("responded_at").groupby("customer_id").first()
    first["category"] = pd.cut(
        first["ltr"], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"]
    )
    invitations = data["surveys.invitations"].assign(
        customer_id=lambda d: d["respondent_email"].map(email_to_id)
    )
    later = invitations.merge(
        first[["responded_at", "category"]], left_on="customer_id", right_index=True
    )
    later = later[later["sent_at"] > later["responded_at"]]
    later["answered"] = later["invitation_id"].isin(responses["invitation_id"])
    rate = later.groupby("category", observed=True)["answered"].mean()
    assert rate["promoter"] > rate["passive"] > rate["detractor"], rate
    assert rate["promoter"] - rate["detractor"] > 0.1, rate


def _winback_share(params) -> float:
    """Share of explicitly cancelled customers who bought again after cancelling: won back."""
    out, _, _ = model.generate_chunk(
        params, 12, 0, 8_000, model.Counters(), run._clock(params), float(params.history_days)
    )
    crm = out.tables["crm"]["customers"].to_pandas().dropna(subset=["cancelled_at"])
    orders = out.tables["sales"]["orders"].to_pandas()
    last = orders.assign(email=_norm(orders["customer_email"])).groupby("email")["ordered_at"].max()
    return float((last.reindex(crm["email"]).to_numpy() > crm["cancelled_at"].to_numpy()).mean())


def test_some_churned_customers_are_won_back() -> None:
    from dataclasses import replace

    assert _winback_share(replace(DEFAULT_PARAMS, winback_rate=0.0)) == 0.0
    assert 0.03 < _winback_share(DEFAULT_PARAMS) < 0.12
