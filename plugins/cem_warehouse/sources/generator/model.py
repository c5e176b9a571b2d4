"""The synthetic population: vectorised NumPy draws turned into the three systems' records.

One call of :func:`generate_chunk` makes a cohort of customers and everything they did
(CRM records, support cases and interactions, referrals, sales orders, lines, refunds,
status changes, survey invitations and responses). A chunk's random stream is seeded by
``(seed, chunk number)``, so a seed always yields the same data.
No per-row Python loops: every step is an array operation.

Identity differs per system on purpose: the CRM knows ``customer_id`` and a lowercase
email; sales orders carry a ``sales_account_id`` and the email as typed (case and
whitespace vary); survey responses carry the respondent's email only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cem_warehouse.sources.generator.params import GeneratorParams

DAY_US = 86_400_000_000
SECOND_US = 1_000_000
CRM_ID_OFFSET = 1_000_000

FIRST_NAMES = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Chloé",
    "José",
    "Søren",
    "Zoë",
]
LAST_NAMES = [
    "Smith",
    "Jones",
    "Müller",
    "Garcia",
    "Rossi",
    "Dubois",
    "Novak",
    "Kowalski",
    "Jensen",
    "Silva",
    "Nguyen",
    "Kim",
    "Okafor",
    "Haddad",
    "Ivanova",
    "Brown",
    "O'Neill",
    "Schmidt",
    "Larsen",
    "Costa",
    "Patel",
    "Wright",
    "Young",
    "Zimmer",
]
DOMAINS = ["example.com", "mail.example.org", "inbox.example.net", "corp.example.com"]
SEGMENTS = ["consumer", "small_business", "enterprise"]
REGIONS = ["north", "south", "east", "west", "international"]
CHANNELS = ["organic_search", "paid_search", "social", "partner", "retail", "referral"]
CHANNEL_SHARES = [0.30, 0.25, 0.20, 0.10, 0.15]  # of the non-referral channels
SUPPORT_CHANNELS = ["phone", "email", "chat", "social"]
SUPPORT_TOPICS = ["billing", "delivery", "product_fault", "account", "returns", "how_to"]
PRODUCT_LINES = ["home", "garden", "kitchen", "outdoor", "office", "kids"]
TIERS = ["basic", "plus", "premium"]
BASE_PRICE_CENTS = np.array([4900, 3900, 2900, 8900, 5900, 2400])
TIER_FACTOR = np.array([1.0, 1.8, 3.2])
COST_SHARE = np.array([0.62, 0.55, 0.48])
TOUCHPOINTS = ["relationship", "post_purchase", "post_support"]
SURVEY_IDS = ["rel-2024", "pp-v3", "ps-v2"]
REFUND_REASONS = ["damaged", "not_as_described", "changed_mind", "late_delivery"]
COMMENTS = [
    # promoter
    [
        "Great service, will buy again",
        "Fast delivery and friendly staff",
        "Love the product 👍",
        "Excellent quality; told my friends",
        'Support was "above and beyond"',
    ],
    # passive
    [
        "It was fine",
        "OK, nothing special",
        "Good product, delivery a bit slow",
        "Decent, price could be lower",
        "Fine,\nbut the app is clunky",
    ],
    # detractor
    [
        "Took three calls to fix my issue",
        "Product broke after a week",
        "Too expensive, switching",
        "Nobody answered my email",
        "Terrible; never again, sorry",
    ],
]
COMMENT_ARRAYS = [pa.array(c) for c in COMMENTS]
LOYALTY_ITEMS = [
    "overall_satisfaction",
    "choose_again",
    "buy_different_products",
    "expand_use",
    "switch_to_competitor",
    "renew",
]


def product_table(updated_at_us: int) -> pa.Table:
    """The fixed catalogue: 6 product lines x 3 tiers; product_id = line * 3 + tier + 1."""
    line = np.repeat(np.arange(len(PRODUCT_LINES)), len(TIERS))
    tier = np.tile(np.arange(len(TIERS)), len(PRODUCT_LINES))
    price = np.round(BASE_PRICE_CENTS[line] * TIER_FACTOR[tier], -2) - 1
    cost = np.round(price * COST_SHARE[tier])
    ts = pa.array(np.full(len(line), updated_at_us), pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "product_id": pa.array(line * 3 + tier + 1, pa.int32()),
            "sku": [
                f"{PRODUCT_LINES[a][:3].upper()}-{TIERS[b][:1].upper()}{a * 3 + b + 1:03d}"
                for a, b in zip(line, tier, strict=True)
            ],
            "product_name": [
                f"{PRODUCT_LINES[a].title()} {TIERS[b].title()}"
                for a, b in zip(line, tier, strict=True)
            ],
            "product_line": [PRODUCT_LINES[a] for a in line],
            "tier": pa.array(tier + 1, pa.int16()),
            "tier_name": [TIERS[b] for b in tier],
            "list_price": price / 100.0,
            "unit_cost": cost / 100.0,
            "currency": ["EUR"] * len(line),
            "created_at": ts,
            "updated_at": ts,
        }
    )


PRICE_CENTS = (
    np.round(
        BASE_PRICE_CENTS[np.repeat(np.arange(6), 3)] * TIER_FACTOR[np.tile(np.arange(3), 6)], -2
    )
    - 1
).astype(np.int64)


# --------------------------------------------------------------------------- identity
def _hash(index: np.ndarray) -> np.ndarray:
    return (index.astype(np.uint64) * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2**32)


def _take(values: list[str], positions: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(positions.astype(np.int64)))


_ASCII_FOLD = {"é": "e", "ë": "e", "ø": "o", "ü": "u", "'": ""}


def _ascii_local(names: pa.Array) -> pa.Array:
    """Email local parts are ASCII (names keep their accents): lower() then agrees in every locale."""
    out = pc.utf8_lower(names)
    for char, plain in _ASCII_FOLD.items():
        out = pc.replace_substring(out, char, plain)
    return out


def identity(index: np.ndarray) -> dict[str, pa.Array]:
    """Names, canonical email, phone and sales account of customers, a pure function of the index."""
    h = _hash(index)
    first = _take(FIRST_NAMES, h % len(FIRST_NAMES))
    last = _take(LAST_NAMES, (h >> np.uint64(8)) % len(LAST_NAMES))
    domain = _take(DOMAINS, (h >> np.uint64(16)) % len(DOMAINS))
    number = pa.array(index.astype(np.int64)).cast(pa.string())
    local_first, local_last = _ascii_local(first), _ascii_local(last)
    email = pc.binary_join_element_wise(local_first, ".", local_last, number, "@", domain, "")
    account = pc.binary_join_element_wise(
        "SA-", pc.utf8_lpad(pa.array(h.astype(np.int64)).cast(pa.string()), 10, "0"), ""
    )
    phone = pc.binary_join_element_wise(
        "+44 7",
        pc.utf8_lpad(
            pa.array(((h * np.uint64(7)) % np.uint64(10**9)).astype(np.int64)).cast(pa.string()),
            9,
            "0",
        ),
        "",
    )
    return {
        "first_name": first,
        "last_name": last,
        "email": email,
        "sales_account_id": account,
        "phone": phone,
    }


def vary_email(rng: np.random.Generator, email: pa.Array, rate: float) -> pa.Array:
    """The same address as people type it: other case, stray spaces (rate = share changed)."""
    kind = np.where(rng.random(len(email)) < rate, rng.integers(1, 5, len(email)), 0)
    upper = pc.utf8_upper(email)
    capital = pc.utf8_capitalize(email)
    spaced = pc.binary_join_element_wise("  ", email, " ", "")
    trailing = pc.binary_join_element_wise(capital, "\t", "")
    out = pc.if_else(pa.array(kind == 1), upper, email)
    out = pc.if_else(pa.array(kind == 2), capital, out)
    out = pc.if_else(pa.array(kind == 3), spaced, out)
    return pc.if_else(pa.array(kind == 4), trailing, out)


# --------------------------------------------------------------------------- helpers
@dataclass
class Clock:
    """Days (floats) since the start of the history <-> UTC microsecond timestamps."""

    start_us: int

    def ts(self, days: np.ndarray) -> pa.Array:
        us = self.start_us + (np.asarray(days, dtype=np.float64) * DAY_US).astype(np.int64)
        return pa.array(us - us % SECOND_US, pa.timestamp("us", tz="UTC"))

    def ts_masked(self, days: np.ndarray, valid: np.ndarray) -> pa.Array:
        us = self.start_us + (np.nan_to_num(days) * DAY_US).astype(np.int64)
        return pa.array(us - us % SECOND_US, pa.timestamp("us", tz="UTC"), mask=~valid)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts per parent: (parent index per child, position of the child within its parent)."""
    parent = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return parent, np.arange(len(parent)) - starts[parent]


def _by_category(values: tuple[float, ...], category: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[category]


@dataclass
class Counters:
    """Next id of each entity; advanced as chunks are produced (kept across ``--next-day`` runs)."""

    customer: int = 0
    order: int = 1
    order_line: int = 1
    refund: int = 1
    status_change: int = 1
    case: int = 1
    interaction: int = 1
    referral: int = 1
    invitation: int = 1
    response: int = 1

    def take(self, name: str, n: int) -> np.ndarray:
        first = getattr(self, name)
        setattr(self, name, first + int(n))
        return np.arange(first, first + int(n), dtype=np.int64)


@dataclass
class Cohort:
    """Hidden and visible attributes of a set of customers (one row per customer)."""

    index: np.ndarray  # global customer index; CRM customer_id = CRM_ID_OFFSET + index
    category: np.ndarray  # 0 promoter, 1 passive, 2 detractor (hidden)
    acq_day: np.ndarray  # acquisition, days since history start
    churn_day: np.ndarray  # when the customer leaves (hidden; may be after the horizon)
    segment: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    consent: np.ndarray
    owned_lines: np.ndarray  # number of product lines the customer buys from
    line_perm: np.ndarray  # (n, 6) the customer's product lines in order of preference
    cancels: np.ndarray  # leaves with an explicit cancellation in the CRM

    def __len__(self) -> int:
        return len(self.index)


def draw_cohort(
    rng: np.random.Generator,
    p: GeneratorParams,
    first_index: int,
    n: int,
    acq_lo: float,
    acq_hi: float,
) -> Cohort:
    category = rng.choice(3, n, p=p.category_shares).astype(np.int8)
    acq = np.sort(rng.uniform(acq_lo, acq_hi, n))
    life = rng.exponential(_by_category(p.mean_lifetime_days, category))
    referred = rng.random(n) < p.referred_share
    channel = np.where(referred, 5, rng.choice(5, n, p=CHANNEL_SHARES))
    extra = rng.poisson(_by_category(p.extra_product_lines, category))
    return Cohort(
        index=first_index + np.arange(n, dtype=np.int64),
        category=category,
        acq_day=acq,
        churn_day=acq + life,
        segment=rng.choice(3, n, p=p.segment_shares),
        region=rng.integers(0, len(REGIONS), n),
        channel=channel,
        consent=rng.random(n) < p.email_consent_rate,
        owned_lines=np.minimum(1 + extra, len(PRODUCT_LINES)),
        line_perm=np.argsort(rng.random((n, len(PRODUCT_LINES))), axis=1).astype(np.int8),
        cancels=rng.random(n) < p.explicit_cancel_share,
    )


# --------------------------------------------------------------------------- output
@dataclass
class Output:
    """Arrow tables per source and entity, e.g. ``tables["sales"]["orders"]``."""

    tables: dict[str, dict[str, pa.Table]] = field(
        default_factory=lambda: {"crm": {}, "sales": {}, "surveys": {}}
    )

    def add(self, source: str, entity: str, table: pa.Table) -> None:
        existing = self.tables[source].get(entity)
        self.tables[source][entity] = (
            table if existing is None else pa.concat_tables([existing, table])
        )

    def rows(self) -> dict[str, int]:
        return {f"{s}.{e}": t.num_rows for s, ents in self.tables.items() for e, t in ents.items()}


# --------------------------------------------------------------------------- support
def support(
    rng: np.random.Generator,
    p: GeneratorParams,
    cohort: Cohort,
    lo_day: np.ndarray,
    end_day: float,
    clock: Clock,
    ids: Counters,
    out: Output,
) -> dict[str, np.ndarray]:
    """Support cases and their contacts; an unresolved case may make the customer leave.

    Returns per-case arrays the survey step needs (post-support invitations).
    """
    active_end = np.minimum(cohort.churn_day, end_day)
    span = np.maximum(active_end - lo_day, 0.0)
    n_cases = rng.poisson(p.cases_per_year * span / 365.0)
    cust, _ = _ragged(n_cases)
    m = len(cust)
    opened = lo_day[cust] + rng.random(m) * span[cust]
    outcome = rng.choice(3, m, p=p.case_outcome_shares)
    # Planted truth: an unresolved contact raises churn.
    trigger = (outcome == 2) & (rng.random(m) < p.unresolved_churn_probability)
    leave = opened + rng.exponential(p.unresolved_churn_delay_days, m)
    np.minimum.at(cohort.churn_day, cust[trigger], leave[trigger])
    keep = opened <= cohort.churn_day[cust]
    cust, opened, outcome = cust[keep], opened[keep], outcome[keep]
    m = len(cust)

    base_contacts = np.where(
        outcome == 0, 1, np.where(outcome == 1, 2 + rng.poisson(0.5, m), 1 + rng.poisson(1.0, m))
    )
    resolved = outcome < 2
    reopened = resolved & (rng.random(m) < p.reopen_rate)
    contacts = base_contacts + reopened
    case_of, pos = _ragged(contacts)
    gaps = np.where(pos == 0, 0.0, rng.uniform(0.1, 2.0, len(case_of)))
    cum = np.cumsum(gaps)
    first = np.cumsum(contacts) - contacts
    offset = cum - cum[first][case_of]
    start = opened[case_of] + offset
    channel = rng.integers(0, len(SUPPORT_CHANNELS), m)
    icontact_channel = np.where(
        rng.random(len(case_of)) < 0.8, channel[case_of], rng.integers(0, 4, len(case_of))
    )
    handle = np.round(
        rng.lognormal(np.log(420), 0.6, len(case_of))
        * np.array([1.0, 0.6, 0.8, 0.5])[icontact_channel]
    )
    last_base = first + base_contacts - 1
    resolved_day = np.where(resolved, start[last_base] + handle[last_base] / 86400.0, np.nan)
    reopen_day = np.where(reopened, resolved_day + rng.uniform(0.5, 10.0, m), np.nan)
    # the reopening contact happens at the reopen time
    is_reopen_contact = reopened[case_of] & (pos == contacts[case_of] - 1)
    start = np.where(is_reopen_contact, reopen_day[case_of], start)
    end_contact = start + handle / 86400.0
    last_contact = first + contacts - 1
    final_day = end_contact[last_contact]
    unresolved_closed = ~resolved & (final_day + 3.0 < end_day)
    closed_day = np.where(resolved, final_day, np.where(unresolved_closed, final_day + 3.0, np.nan))
    # Nothing after the horizon: contacts after it have not happened yet.
    visible_contact = start < end_day
    resolved_day = np.where(resolved_day < end_day, resolved_day, np.nan)
    reopen_day = np.where(reopen_day < end_day, reopen_day, np.nan)
    closed_day = np.where(closed_day < end_day, closed_day, np.nan)
    status = np.where(~np.isnan(closed_day), np.where(resolved, "solved", "closed"), "open")
    status = np.where(~np.isnan(reopen_day) & np.isnan(closed_day), "reopened", status)

    case_ids = ids.take("case", m)
    customer_id = cohort.index[cust] + CRM_ID_OFFSET
    updated = np.fmax(
        np.fmax(opened, np.nan_to_num(closed_day, nan=-1)), np.nan_to_num(reopen_day, nan=-1)
    )
    n_visible = np.bincount(case_of[visible_contact], minlength=m)
    out.add(
        "crm",
        "support_cases",
        pa.table(
            {
                "case_id": case_ids,
                "customer_id": customer_id,
                "channel": _take(SUPPORT_CHANNELS, channel),
                "topic": _take(SUPPORT_TOPICS, rng.integers(0, len(SUPPORT_TOPICS), m)),
                "status": pa.array(status),
                "opened_at": clock.ts(opened),
                "resolved_at": clock.ts_masked(resolved_day, ~np.isnan(resolved_day)),
                "reopened_at": clock.ts_masked(reopen_day, ~np.isnan(reopen_day)),
                "closed_at": clock.ts_masked(closed_day, ~np.isnan(closed_day)),
                "is_resolved": pa.array(~np.isnan(resolved_day)),
                "resolved_first_contact": pa.array((outcome == 0) & ~np.isnan(resolved_day)),
                "contact_count": pa.array(n_visible, pa.int32()),
                "created_at": clock.ts(opened),
                "updated_at": clock.ts(updated),
            }
        ),
    )
    iv = visible_contact
    k = int(iv.sum())
    inter_ids = ids.take("interaction", k)
    out.add(
        "crm",
        "interactions",
        pa.table(
            {
                "interaction_id": inter_ids,
                "case_id": case_ids[case_of[iv]],
                "customer_id": customer_id[case_of[iv]],
                "channel": _take(SUPPORT_CHANNELS, icontact_channel[iv]),
                "direction": pa.array(
                    np.where(
                        pos[iv] == 0,
                        "inbound",
                        np.where(rng.random(k) < 0.5, "inbound", "outbound"),
                    )
                ),
                "agent_id": pa.array(rng.integers(1000, 1400, k)),
                "started_at": clock.ts(start[iv]),
                "ended_at": clock.ts(end_contact[iv]),
                "handle_seconds": pa.array(handle[iv].astype(np.int32)),
                "created_at": clock.ts(start[iv]),
                "updated_at": clock.ts(end_contact[iv]),
            }
        ),
    )
    # last visible interaction per case, for the post-contact survey link
    last_vis = np.full(m, -1, dtype=np.int64)
    np.maximum.at(last_vis, case_of[iv], inter_ids)
    return {
        "cust": cust,
        "case_id": case_ids,
        "closed_day": closed_day,
        "last_interaction_id": last_vis,
    }


# --------------------------------------------------------------------------- sales
def orders_for(
    rng: np.random.Generator,
    p: GeneratorParams,
    cohort: Cohort,
    cust: np.ndarray,
    day: np.ndarray,
    end_day: float,
    clock: Clock,
    ids: Counters,
    out: Output,
) -> dict[str, np.ndarray]:
    """Orders at the given days for the given cohort rows, with lines, refunds, status changes."""
    order_sort = np.argsort(day, kind="stable")
    cust, day = cust[order_sort], day[order_sort]
    k = len(cust)
    cat = cohort.category[cust]
    order_ids = ids.take("order", k)
    n_lines = 1 + rng.poisson(_by_category(p.extra_order_lines, cat))
    line_order, line_pos = _ragged(n_lines)
    lc = cust[line_order]
    lcat = cat[line_order]
    pick = (rng.random(len(lc)) * cohort.owned_lines[lc]).astype(np.int64)
    product_line = cohort.line_perm[lc, pick].astype(np.int64)
    u = rng.random(len(lc))
    tier = np.where(
        u < _by_category(p.premium_tier_probability, lcat),
        2,
        np.where(
            u
            < _by_category(p.premium_tier_probability, lcat)
            + _by_category(p.plus_tier_probability, lcat),
            1,
            0,
        ),
    )
    product = product_line * 3 + tier + 1
    qty = 1 + (rng.random(len(lc)) < 0.2) + (rng.random(len(lc)) < 0.05)
    unit = PRICE_CENTS[product - 1]
    amount = unit * qty
    total = np.bincount(line_order, weights=amount, minlength=k).astype(np.int64)

    cancelled = rng.random(k) < p.order_cancel_rate
    cancel_day = day + rng.uniform(0.01, 1.0, k)
    cancelled &= cancel_day < end_day
    refunded = ~cancelled & (rng.random(k) < _by_category(p.refund_rate, cat))
    refund_day = day + rng.uniform(3.0, 30.0, k)
    refunded &= refund_day < end_day
    shipped = day > end_day - 2.0
    status = np.where(
        cancelled,
        "cancelled",
        np.where(refunded, "refunded", np.where(shipped, "shipped", "delivered")),
    )
    updated = np.where(cancelled, cancel_day, np.where(refunded, refund_day, day))

    ident = identity(cohort.index[cust])
    email = vary_email(rng, ident["email"], p.email_variant_rate)
    out.add(
        "sales",
        "orders",
        pa.table(
            {
                "order_id": order_ids,
                "sales_account_id": ident["sales_account_id"],
                "customer_email": email,
                "status": pa.array(status),
                "currency": pa.array(np.full(k, "EUR")),
                "order_total": total / 100.0,
                "ordered_at": clock.ts(day),
                "created_at": clock.ts(day),
                "updated_at": clock.ts(updated),
            }
        ),
    )
    out.add(
        "sales",
        "order_lines",
        pa.table(
            {
                "order_line_id": ids.take("order_line", len(lc)),
                "order_id": order_ids[line_order],
                "line_number": pa.array((line_pos + 1).astype(np.int16)),
                "product_id": pa.array(product.astype(np.int32)),
                "quantity": pa.array(qty.astype(np.int32)),
                "unit_price": unit / 100.0,
                "line_amount": amount / 100.0,
                "created_at": clock.ts(day[line_order]),
                "updated_at": clock.ts(day[line_order]),
            }
        ),
    )
    r = np.flatnonzero(refunded)
    partial = rng.random(len(r)) < 0.3
    refund_amount = np.where(partial, np.round(total[r] * rng.uniform(0.2, 0.8, len(r))), total[r])
    out.add(
        "sales",
        "refunds",
        pa.table(
            {
                "refund_id": ids.take("refund", len(r)),
                "order_id": order_ids[r],
                "amount": refund_amount / 100.0,
                "reason": _take(REFUND_REASONS, rng.integers(0, 4, len(r))),
                "refunded_at": clock.ts(refund_day[r]),
                "created_at": clock.ts(refund_day[r]),
                "updated_at": clock.ts(refund_day[r]),
            }
        ),
    )
    changed = np.flatnonzero(cancelled | refunded)
    out.add(
        "sales",
        "order_status_changes",
        pa.table(
            {
                "status_change_id": ids.take("status_change", len(changed)),
                "order_id": order_ids[changed],
                "from_status": pa.array(np.where(cancelled[changed], "placed", "delivered")),
                "to_status": pa.array(status[changed]),
                "changed_at": clock.ts(updated[changed]),
                "created_at": clock.ts(updated[changed]),
                "updated_at": clock.ts(updated[changed]),
            }
        ),
    )
    return {"cust": cust, "day": day, "order_id": order_ids, "cancelled": cancelled}


def history_orders(
    rng: np.random.Generator,
    p: GeneratorParams,
    cohort: Cohort,
    end_day: float,
    clock: Clock,
    ids: Counters,
    out: Output,
) -> dict[str, np.ndarray]:
    """First order right after acquisition, then a Poisson process until the customer leaves.

    A share ``winback_rate`` of leavers comes back after a pause and buys again at their old
    rhythm (won back); they answer no more surveys.
    """
    gap = _by_category(p.purchase_gap_days, cohort.category)
    active_end = np.minimum(cohort.churn_day, end_day)
    first_day = np.minimum(cohort.acq_day + rng.random(len(cohort)) * 0.5, end_day - 1e-4)
    first_day = np.maximum(
        np.minimum(first_day, cohort.churn_day - 1e-4), cohort.acq_day
    )  # before leaving
    span = np.maximum(active_end - first_day, 0.0)
    n_orders = 1 + rng.poisson(span / gap)
    cust, pos = _ragged(n_orders)
    day = np.where(pos == 0, first_day[cust], first_day[cust] + rng.random(len(cust)) * span[cust])
    back_day = cohort.churn_day + rng.exponential(p.winback_pause_days, len(cohort))
    back = (rng.random(len(cohort)) < p.winback_rate) & (back_day < end_day)
    back_span = np.where(back, end_day - back_day, 0.0)
    n_back = np.where(back, 1 + rng.poisson(back_span / gap), 0)
    bcust, bpos = _ragged(n_back)
    bday = np.where(
        bpos == 0, back_day[bcust], back_day[bcust] + rng.random(len(bcust)) * back_span[bcust]
    )
    return orders_for(
        rng,
        p,
        cohort,
        np.concatenate([cust, bcust]),
        np.concatenate([day, bday]),
        end_day,
        clock,
        ids,
        out,
    )


# --------------------------------------------------------------------------- surveys
def surveys(
    rng: np.random.Generator,
    p: GeneratorParams,
    cohort: Cohort,
    orders: dict,
    cases: dict,
    lo_day: float,
    end_day: float,
    clock: Clock,
    ids: Counters,
    out: Output,
    relationship: bool = True,
    purchase_delay: tuple[float, float] | None = None,
) -> None:
    """Invitations at the three touchpoints and the responses customers give."""
    active_end = np.minimum(cohort.churn_day, end_day)
    parts = []
    if relationship:
        first_rel = cohort.acq_day + p.relationship_first_days
        n_rel = np.where(
            active_end > first_rel, np.floor((active_end - first_rel) / 365.0) + 1, 0
        ).astype(np.int64)
        rc, rpos = _ragged(n_rel)
        rday = first_rel[rc] + 365.0 * rpos + rng.uniform(0, 5, len(rc))
        parts.append(
            (
                rc,
                np.zeros(len(rc), np.int8),
                rday,
                np.full(len(rc), -1),
                np.full(len(rc), -1),
                np.full(len(rc), -1),
            )
        )
    inv = (rng.random(len(orders["cust"])) < p.post_purchase_invite_rate) & ~orders["cancelled"]
    parts.append(
        (
            orders["cust"][inv],
            np.ones(inv.sum(), np.int8),
            orders["day"][inv]
            + rng.uniform(*(purchase_delay or p.post_purchase_delay_days), inv.sum()),
            orders["order_id"][inv],
            np.full(inv.sum(), -1),
            np.full(inv.sum(), -1),
        )
    )
    closed = ~np.isnan(cases["closed_day"])
    inv = closed & (rng.random(len(closed)) < p.post_support_invite_rate)
    parts.append(
        (
            cases["cust"][inv],
            np.full(inv.sum(), 2, np.int8),
            cases["closed_day"][inv] + rng.uniform(0.05, 1, inv.sum()),
            np.full(inv.sum(), -1),
            cases["case_id"][inv],
            cases["last_interaction_id"][inv],
        )
    )
    cust, touch, sent, order_id, case_id, inter_id = (
        np.concatenate(a) for a in zip(*parts, strict=True)
    )
    keep = (sent < end_day) & (sent >= lo_day) & (sent < cohort.churn_day[cust] + 30)
    cust, touch, sent, order_id, case_id, inter_id = (
        cust[keep],
        touch[keep],
        sent[keep],
        order_id[keep],
        case_id[keep],
        inter_id[keep],
    )
    srt = np.argsort(sent, kind="stable")
    cust, touch, sent, order_id, case_id, inter_id = (
        cust[srt],
        touch[srt],
        sent[srt],
        order_id[srt],
        case_id[srt],
        inter_id[srt],
    )
    m = len(cust)
    inv_ids = ids.take("invitation", m)
    email = identity(cohort.index[cust])["email"]
    survey_id = _take(SURVEY_IDS, touch)
    touch_arr = _take(TOUCHPOINTS, touch)
    out.add(
        "surveys",
        "invitations",
        pa.table(
            {
                "invitation_id": inv_ids,
                "survey_id": survey_id,
                "touchpoint": touch_arr,
                "respondent_email": email,
                "related_order_id": pa.array(order_id, mask=order_id < 0),
                "related_case_id": pa.array(case_id, mask=case_id < 0),
                "related_interaction_id": pa.array(inter_id, mask=inter_id < 0),
                "sent_at": clock.ts(sent),
            }
        ),
    )

    cat = cohort.category[cust]
    responded_day = sent + rng.exponential(p.response_delay_days, m)
    responds = (
        (rng.random(m) < _by_category(p.response_rate, cat))
        & (responded_day < end_day)
        & (responded_day <= cohort.churn_day[cust])
    )
    r = np.flatnonzero(responds)
    rc, rcat, rtouch = cust[r], cat[r], touch[r]
    k = len(r)
    ltr = np.clip(
        np.round(rng.normal(_by_category(p.ltr_mean, rcat), _by_category(p.ltr_sd, rcat))), 0, 10
    ).astype(np.int16)
    satisfied = rng.random(k) < _by_category(p.satisfied_rate, rcat)
    # Planted truth: a leaver's last response before leaving is "satisfied" with churned_satisfied_share.
    left = cohort.churn_day[rc] < end_day
    by_cust = np.lexsort((responded_day[r], rc))
    sorted_cust = rc[by_cust]
    last = np.ones(k, dtype=bool)
    last[:-1] = sorted_cust[:-1] != sorted_cust[1:]
    is_last = np.zeros(k, dtype=bool)
    is_last[by_cust[last]] = True
    override = left & is_last
    satisfied = np.where(override, rng.random(k) < p.churned_satisfied_share, satisfied)
    csat = np.where(satisfied, 4 + (rng.random(k) < 0.5), 1 + rng.integers(0, 3, k)).astype(
        np.int16
    )
    easy = rng.random(k) < _by_category(p.easy_rate, rcat)
    ces = np.where(easy, 5 + rng.integers(0, 3, k), 1 + rng.integers(0, 4, k)).astype(np.int16)
    has_comment = rng.random(k) < p.comment_rate
    comment_cat = np.where(ltr >= 9, 0, np.where(ltr >= 7, 1, 2))
    comment_pick = rng.integers(0, 5, k)
    comment = pc.if_else(
        pa.array(comment_cat == 0),
        COMMENT_ARRAYS[0].take(pa.array(comment_pick)),
        pc.if_else(
            pa.array(comment_cat == 1),
            COMMENT_ARRAYS[1].take(pa.array(comment_pick)),
            COMMENT_ARRAYS[2].take(pa.array(comment_pick)),
        ),
    )
    comment = pc.if_else(pa.array(has_comment), comment, pa.scalar(None, pa.string()))
    rel = rtouch == 0
    columns = {
        "response_id": ids.take("response", k),
        "invitation_id": inv_ids[r],
        "survey_id": survey_id.take(pa.array(r)),
        "touchpoint": touch_arr.take(pa.array(r)),
        "respondent_email": vary_email(rng, email.take(pa.array(r)), p.email_variant_rate / 3),
        "ltr": pa.array(ltr),
        "csat": pa.array(csat),
        "ces": pa.array(ces, mask=rel),
    }
    for item in LOYALTY_ITEMS:
        value = np.clip(np.round(rng.normal(_by_category(p.loyalty_item_mean, rcat), 1.4)), 0, 10)
        if item == "switch_to_competitor":  # asked as "how likely to switch": reverse of loyalty
            value = 10 - value
        columns[item] = pa.array(value.astype(np.int16), mask=~rel)
    columns.update(
        {
            "comment": comment,
            "sent_at": clock.ts(sent[r]),
            "responded_at": clock.ts(responded_day[r]),
        }
    )
    out.add("surveys", "responses", pa.table(columns))


def survey_definitions(updated_at_us: int) -> pa.Table:
    ts = pa.array([updated_at_us] * 3, pa.timestamp("us", tz="UTC"))
    base = ["ltr", "csat", "comment"]
    return pa.table(
        {
            "survey_id": SURVEY_IDS,
            "survey_name": [
                "Relationship survey 2024",
                "After your purchase",
                "After your support contact",
            ],
            "touchpoint": TOUCHPOINTS,
            "questions": [base + LOYALTY_ITEMS, base + ["ces"], base + ["ces"]],
            "version": [1, 3, 2],
            "created_at": ts,
            "updated_at": ts,
        }
    )


# --------------------------------------------------------------------------- CRM
def referrals(
    rng: np.random.Generator,
    cohort: Cohort,
    pool_index: np.ndarray,
    pool_acq: np.ndarray,
    pool_weight: np.ndarray,
    clock: Clock,
    ids: Counters,
    out: Output,
) -> np.ndarray:
    """Each referral-channel customer gets a referrer drawn from earlier customers of the pool,
    weighted by the referrer's category weight (promoters refer more). Returns referrer indices."""
    referred = np.flatnonzero(cohort.channel == 5)
    order = np.argsort(pool_acq, kind="stable")
    cw = np.cumsum(pool_weight[order])
    eligible = np.searchsorted(pool_acq[order], cohort.acq_day[referred], side="left")
    ok = eligible > 0
    ok[ok] &= cw[eligible[ok] - 1] > 0
    referred, eligible = referred[ok], eligible[ok]
    draw = rng.random(len(referred)) * cw[eligible - 1]
    pick = np.minimum(np.searchsorted(cw, draw, side="right"), eligible - 1)
    referrer = pool_index[order[pick]]
    created = np.maximum(
        cohort.acq_day[referred] - rng.uniform(0.0, 3.0, len(referred)), pool_acq[order[pick]]
    )
    code = pc.binary_join_element_wise(
        "REF-", pc.utf8_upper(pa.array(_hash(referrer).astype(np.int64)).cast(pa.string())), ""
    )
    out.add(
        "crm",
        "referrals",
        pa.table(
            {
                "referral_id": ids.take("referral", len(referred)),
                "referrer_customer_id": referrer + CRM_ID_OFFSET,
                "referred_customer_id": cohort.index[referred] + CRM_ID_OFFSET,
                "referral_code": code,
                "created_at": clock.ts(created),
                "updated_at": clock.ts(cohort.acq_day[referred]),
            }
        ),
    )
    return referrer


def crm_customers(
    rng: np.random.Generator,
    p: GeneratorParams,
    cohort: Cohort,
    end_day: float,
    clock: Clock,
    bulk_day: float | None,
) -> pa.Table:
    n = len(cohort)
    ident = identity(cohort.index)
    cancelled = cohort.cancels & (cohort.churn_day < end_day)
    updated = np.where(cancelled, cohort.churn_day, cohort.acq_day)
    if bulk_day is not None:  # one bulk update touches many records at the same instant
        bulk = (rng.random(n) < p.bulk_update_share) & (updated < bulk_day)
        updated = np.where(bulk, bulk_day, updated)
    return pa.table(
        {
            "customer_id": cohort.index + CRM_ID_OFFSET,
            "email": ident["email"],
            "first_name": ident["first_name"],
            "last_name": ident["last_name"],
            "phone": ident["phone"],
            "segment": _take(SEGMENTS, cohort.segment),
            "region": _take(REGIONS, cohort.region),
            "acquisition_date": clock.ts(np.floor(cohort.acq_day))
            .cast(pa.timestamp("us"))
            .cast(pa.date32()),
            "acquisition_channel": _take(CHANNELS, cohort.channel),
            "email_consent": pa.array(cohort.consent),
            "cancelled_at": clock.ts_masked(cohort.churn_day, cancelled),
            "is_archived": pa.array(np.zeros(n, dtype=bool)),
            "created_at": clock.ts(cohort.acq_day),
            "updated_at": clock.ts(updated),
        }
    )


# --------------------------------------------------------------------------- chunk
@dataclass
class Latent:
    """Hidden state kept for ``--next-day`` runs (one row per customer)."""

    category: np.ndarray
    acq_day: np.ndarray
    churn_day: np.ndarray
    owned_lines: np.ndarray
    line_perm: np.ndarray

    @staticmethod
    def of(cohort: Cohort) -> Latent:
        return Latent(
            cohort.category,
            cohort.acq_day.astype(np.float32),
            cohort.churn_day.astype(np.float32),
            cohort.owned_lines.astype(np.int8),
            cohort.line_perm,
        )

    @staticmethod
    def concat(parts: list[Latent]) -> Latent:
        return Latent(
            *(
                np.concatenate([getattr(x, f) for x in parts])
                for f in ("category", "acq_day", "churn_day", "owned_lines", "line_perm")
            )
        )


def generate_chunk(
    p: GeneratorParams,
    seed: int,
    chunk_no: int,
    n: int,
    ids: Counters,
    clock: Clock,
    end_day: float,
) -> tuple[Output, Latent, np.ndarray]:
    """Day-0 history of ``n`` customers. Returns the tables, the hidden state, and the mask of
    customers withheld from the CRM (late arrivals: acquired in the last days, first seen in sales)."""
    rng = np.random.default_rng([seed, chunk_no])
    out = Output()
    cohort = draw_cohort(rng, p, ids.take("customer", n)[0] if n else ids.customer, n, 0.0, end_day)
    cases = support(rng, p, cohort, cohort.acq_day, end_day, clock, ids, out)
    orders = history_orders(rng, p, cohort, end_day, clock, ids, out)
    surveys(rng, p, cohort, orders, cases, 0.0, end_day, clock, ids, out)
    weight = _by_category(p.referrer_weight, cohort.category)
    referrals(rng, cohort, cohort.index, cohort.acq_day, weight, clock, ids, out)
    bulk_day = end_day - 200.0 + (seed % 7)
    out.add("crm", "customers", crm_customers(rng, p, cohort, end_day, clock, bulk_day))
    late = (cohort.acq_day > end_day - p.late_window_days) & (rng.random(n) < p.late_arrival_rate)
    return out, Latent.of(cohort), late
