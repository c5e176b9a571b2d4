"""Bad inputs real sources send: a fixed catalog of named cases, and ``--bad-rate`` mixing.

:data:`CASES` names every case once. :func:`produce_all` writes each into its source
(survey files named ``bad-<case>...``, sales rows, CRM records) and returns where it put
them, so a test can find each case by name. API behaviours (repeated pages, timeouts,
429, 5xx) are switched on in the CRM server (:class:`~cem_warehouse.sources.crm_server.Faults`).
:func:`mix` corrupts a share ``rate`` of ordinary generated rows with the row-level cases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cem_warehouse.sources.generator import model
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS
from cem_warehouse.sources.surveys import to_csv

if TYPE_CHECKING:
    from cem_warehouse.sources.generator.run import Targets, _Writers


@dataclass(frozen=True)
class BadCase:
    name: str
    source: str  # crm | crm_api | sales | surveys
    description: str


CASES: dict[str, BadCase] = {
    c.name: c
    for c in [
        BadCase("duplicate_rows", "surveys", "the same response rows twice in one file"),
        BadCase(
            "replay_changed_values",
            "surveys",
            "a later file re-sends response ids with a changed LTR and comment",
        ),
        BadCase(
            "malformed_csv_line",
            "surveys",
            "a line with an unclosed quote and a line with too many fields",
        ),
        BadCase("wrong_types", "surveys", "csat 'five', ltr '9.5', responded_at 'yesterday'"),
        BadCase("nul_bytes", "surveys", "a NUL byte inside a comment"),
        BadCase("non_utf8_text", "surveys", "a comment in Latin-1, not UTF-8"),
        BadCase("ltr_out_of_range_high", "surveys", "ltr 11"),
        BadCase("ltr_negative", "surveys", "ltr -1"),
        BadCase("ltr_text", "surveys", "ltr '10 - very likely'"),
        BadCase("ltr_blank", "surveys", "ltr empty"),
        BadCase(
            "email_case_whitespace",
            "surveys",
            "one respondent's email in other case and with spaces",
        ),
        BadCase("future_timestamp", "surveys", "responded_at years in the future"),
        BadCase("timestamp_without_timezone", "surveys", "sent_at / responded_at without a zone"),
        BadCase("new_column", "surveys", "an extra column the contract does not know"),
        BadCase("missing_column", "surveys", "the comment and ces columns are missing"),
        BadCase("empty_file", "surveys", "a zero-byte export file"),
        BadCase(
            "orders_for_unknown_customer",
            "sales",
            "orders whose email and account the CRM has never seen",
        ),
        BadCase(
            "sales_email_case_whitespace",
            "sales",
            "one customer's orders with the email in varied case and spaces",
        ),
        BadCase(
            "cursor_timestamp_burst",
            "crm",
            "more customer records than a page share one updated_at",
        ),
        BadCase(
            "crm_replay_changed_values",
            "crm",
            "a customer re-sent with changed values and the same updated_at",
        ),
        BadCase(
            "api_page_repeat", "crm_api", "the API serves a page twice (Faults.repeat_page_every)"
        ),
        BadCase(
            "api_timeout",
            "crm_api",
            "the API stalls beyond the client timeout (Faults.stall_every)",
        ),
        BadCase("api_rate_limit", "crm_api", "429 with Retry-After (Faults.rate_limit_every)"),
        BadCase("api_server_error", "crm_api", "occasional 5xx (Faults.error_every)"),
    ]
}

BURST_SIZE = 2_500
# catalog orders: no cancellations, refunds or email noise, so the rows are exactly as named
_NO_NOISE = replace(
    DEFAULT_PARAMS, order_cancel_rate=0.0, refund_rate=(0.0, 0.0, 0.0), email_variant_rate=0.0
)
BAD_LTR = ["11", "-1", "10 - very likely", ""]


def _base_responses(
    ids: model.Counters, clock: model.Clock, end_day: float, n: int = 6
) -> pa.Table:
    """A few valid responses to corrupt (fresh ids, emails of existing customers)."""
    index = np.arange(n, dtype=np.int64)
    email = model.identity(index)["email"]
    sent = np.full(n, end_day - 1.0) + index * 0.01
    table = pa.table(
        {
            "response_id": ids.take("response", n),
            "invitation_id": ids.take("invitation", n),
            "survey_id": ["rel-2024"] * n,
            "touchpoint": ["relationship"] * n,
            "respondent_email": email,
            "ltr": pa.array(np.array([10, 9, 8, 7, 3, 0][:n], dtype=np.int16)).cast(pa.string()),
            "csat": pa.array(np.array([5, 4, 4, 3, 2, 1][:n])).cast(pa.string()),
            "ces": pa.array(np.array([7, 6, 5, 4, 2, 1][:n])).cast(pa.string()),
        }
    )
    for item in model.LOYALTY_ITEMS:
        table = table.append_column(item, pa.array(["7"] * n))
    return (
        table.append_column("comment", pa.array(["fine"] * n))
        .append_column("sent_at", clock.ts(sent))
        .append_column("responded_at", clock.ts(sent + 0.1))
    )


def _set(table: pa.Table, name: str, values: list) -> pa.Table:
    return table.set_column(
        table.column_names.index(name), name, pa.array(values, table.schema.field(name).type)
    )


def _survey_files(base: pa.Table, clock: model.Clock) -> dict[str, bytes]:
    n = base.num_rows
    files = {
        "duplicate_rows": to_csv(pa.concat_tables([base, base])),
        "ltr_out_of_range_high": to_csv(_set(base, "ltr", ["11"] * n)),
        "ltr_negative": to_csv(_set(base, "ltr", ["-1"] * n)),
        "ltr_text": to_csv(_set(base, "ltr", ["10 - very likely"] * n)),
        "ltr_blank": to_csv(_set(base, "ltr", [""] * n)),
        "email_case_whitespace": to_csv(
            _set(
                base,
                "respondent_email",
                [f"  {e.upper()} " for e in base.column("respondent_email").to_pylist()],
            )
        ),
        "future_timestamp": to_csv(
            base.set_column(
                base.column_names.index("responded_at"),
                "responded_at",
                pa.array([4_070_908_800_000_000] * n, pa.timestamp("us", tz="UTC")),
            )
        ),
        "new_column": to_csv(base.append_column("nps_channel", pa.array(["sms"] * n))),
        "missing_column": to_csv(base.drop_columns(["comment", "ces"])),
        "empty_file": b"",
    }
    csv = to_csv(base).decode()
    header, first, *rest = csv.splitlines()
    files["malformed_csv_line"] = "\n".join(
        [header, first, first.replace(",", ',"unclosed', 1), first + ",extra,fields", *rest, ""]
    ).encode()
    files["wrong_types"] = to_csv(_wrong_types(base))
    files["nul_bytes"] = to_csv(_set(base, "comment", ["bad\x00byte"] * n))
    files["non_utf8_text"] = to_csv(_set(base, "comment", ["café ok"] * n)).replace(
        "café".encode(), "café".encode("latin-1")
    )
    naive = pc.strftime(base.column("sent_at"), format="%Y-%m-%d %H:%M:%S")
    naive_table = base.set_column(base.column_names.index("sent_at"), "sent_at", naive)
    naive_table = naive_table.set_column(
        naive_table.column_names.index("responded_at"),
        "responded_at",
        pc.strftime(base.column("responded_at"), format="%Y-%m-%d %H:%M:%S"),
    )
    files["timestamp_without_timezone"] = to_csv(naive_table)
    return files


def _wrong_types(base: pa.Table) -> pa.Table:
    n = base.num_rows
    table = _set(_set(base, "csat", ["five"] * n), "ltr", ["9.5"] * n)
    return table.set_column(
        table.column_names.index("responded_at"), "responded_at", pa.array(["yesterday"] * n)
    )


def produce_all(
    targets: Targets,
    writers: _Writers,
    ids: model.Counters,
    clock: model.Clock,
    end_day: float,
    export: str,
) -> list[dict]:
    """Write every catalog case once; return ``{"case", "source", "location", ...}`` per case."""
    produced = []
    base = _base_responses(ids, clock, end_day)
    for name, data in _survey_files(base, clock).items():
        fname = f"bad-{name}.csv"
        path = writers.landing.write_bytes("responses", export, fname, data)
        produced.append({"case": name, "source": "surveys", "location": path})
    replay = _set(
        _set(base, "ltr", ["0"] * base.num_rows), "comment", ["changed my mind"] * base.num_rows
    )
    path = writers.landing.write_bytes(
        "responses", export, "bad-replay_changed_values-1-original.csv", to_csv(base)
    )
    path2 = writers.landing.write_bytes(
        "responses", export, "bad-replay_changed_values-2-replay.csv", to_csv(replay)
    )
    produced.append(
        {
            "case": "replay_changed_values",
            "source": "surveys",
            "location": path2,
            "original": path,
            "keys": base.column("response_id").to_pylist(),
        }
    )

    # sales: orders for customers the CRM has never seen, and one customer's email spelled many ways
    out = model.Output()
    rng = np.random.default_rng([int(end_day), 99])
    unknown_index = np.array([10**9 + int(end_day)], dtype=np.int64)
    ghost = model.Cohort(
        index=unknown_index,
        category=np.array([1]),
        acq_day=np.array([end_day - 1]),
        churn_day=np.array([end_day + 100]),
        segment=np.zeros(1, np.int64),
        region=np.zeros(1, np.int64),
        channel=np.zeros(1, np.int64),
        consent=np.zeros(1, bool),
        owned_lines=np.array([2]),
        line_perm=np.array([[0, 1, 2, 3, 4, 5]], np.int8),
        cancels=np.zeros(1, bool),
    )
    ghost_orders = model.orders_for(
        rng,
        _NO_NOISE,
        ghost,
        np.zeros(3, np.int64),
        end_day - 1 + np.array([0.1, 0.2, 0.3]),
        end_day,
        clock,
        ids,
        out,
    )
    known_index = np.array([0], dtype=np.int64)
    known = model.Cohort(**{**ghost.__dict__, "index": known_index})
    variant_orders = model.orders_for(
        rng,
        _NO_NOISE,
        known,
        np.zeros(4, np.int64),
        end_day - 1 + np.array([0.4, 0.5, 0.6, 0.7]),
        end_day,
        clock,
        ids,
        out,
    )
    orders = out.tables["sales"]["orders"]
    email = model.identity(known_index)["email"][0].as_py()
    variants = [email, email.upper(), f"  {email} ", email.capitalize() + "\t"]
    is_variant = pc.is_in(orders.column("order_id"), value_set=pa.array(variant_orders["order_id"]))
    spelled = orders.column("customer_email").to_pylist()
    vi = iter(variants)
    spelled = [
        next(vi) if flag else e for e, flag in zip(spelled, is_variant.to_pylist(), strict=True)
    ]
    out.tables["sales"]["orders"] = _set(orders, "customer_email", spelled)
    for entity, table in out.tables["sales"].items():
        writers.sales.copy(entity, table)
    produced.append(
        {
            "case": "orders_for_unknown_customer",
            "source": "sales",
            "location": f"{targets.sales.dbname}.orders",
            "keys": ghost_orders["order_id"].tolist(),
        }
    )
    produced.append(
        {
            "case": "sales_email_case_whitespace",
            "source": "sales",
            "location": f"{targets.sales.dbname}.orders",
            "keys": variant_orders["order_id"].tolist(),
        }
    )

    # CRM: a burst of records sharing one updated_at, and a replay with changed values
    current = writers.crm.read("customers")
    burst_at = clock.ts(np.array([end_day - 0.5]))[0]
    if current.num_rows:
        picked = current.slice(0, min(BURST_SIZE, current.num_rows))
        burst = picked.set_column(
            picked.column_names.index("updated_at"),
            "updated_at",
            pa.array([burst_at.value] * picked.num_rows, pa.timestamp("us", tz="UTC")),
        )
        writers.crm.write("customers", burst, f"bad-burst-{int(end_day):05d}")
        produced.append(
            {
                "case": "cursor_timestamp_burst",
                "source": "crm",
                "location": "customers",
                "updated_at": burst_at.as_py().isoformat(),
                "rows": picked.num_rows,
            }
        )
        one = burst.slice(0, 1)
        one = _set(
            one,
            "segment",
            ["enterprise" if one.column("segment")[0].as_py() != "enterprise" else "consumer"],
        )
        writers.crm.write("customers", one, f"bad-replay-{int(end_day):05d}")
        produced.append(
            {
                "case": "crm_replay_changed_values",
                "source": "crm",
                "location": "customers",
                "keys": one.column("customer_id").to_pylist(),
            }
        )
    for case in CASES.values():
        if case.source == "crm_api":
            produced.append(
                {"case": case.name, "source": "crm_api", "location": "cem sources serve --faults"}
            )
    return produced


def mix(
    out: model.Output, rng: np.random.Generator, rate: float, clock: model.Clock, end_day: float
) -> None:
    """Corrupt about ``rate`` of ordinary rows with row-level cases (in place)."""
    responses = out.tables["surveys"].get("responses")
    if responses is not None and responses.num_rows:
        n = responses.num_rows
        bad = rng.random(n) < rate
        ltr = responses.column("ltr").cast(pa.string())
        ltr = pc.if_else(
            pa.array(bad), pa.array(np.array(BAD_LTR, dtype=object)[rng.integers(0, 4, n)]), ltr
        )
        responses = responses.set_column(responses.column_names.index("ltr"), "ltr", ltr)
        future = rng.random(n) < rate / 4
        responded = responses.column("responded_at")
        later = pc.add(responded, pa.scalar(np.timedelta64(400, "D").astype("timedelta64[us]")))
        responses = responses.set_column(
            responses.column_names.index("responded_at"),
            "responded_at",
            pc.if_else(pa.array(future), later, responded),
        )
        dup = np.flatnonzero(rng.random(n) < rate / 2)
        responses = pa.concat_tables([responses, responses.take(pa.array(dup))])
        out.tables["surveys"]["responses"] = responses
    customers = out.tables["crm"].get("customers")
    if customers is not None and customers.num_rows:
        email = model.vary_email(rng, customers.column("email").combine_chunks(), rate)
        out.tables["crm"]["customers"] = customers.set_column(
            customers.column_names.index("email"), "email", email
        )
    orders = out.tables["sales"].get("orders")
    if orders is not None and orders.num_rows:
        email = model.vary_email(rng, orders.column("customer_email").combine_chunks(), rate)
        out.tables["sales"]["orders"] = orders.set_column(
            orders.column_names.index("customer_email"), "customer_email", email
        )
