"""Fill the three stand-ins: day 0 (the full history) or one more day (``--next-day``).

Chunks of customers are generated and written as they are made (sales via COPY, CRM as
Parquet parts, surveys as CSV / JSON Lines), so memory stays flat whatever N is. Sales
writes run on a background thread so PostgreSQL ingests while NumPy draws the next chunk.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cem_warehouse.errors import CemError
from cem_warehouse.sources import connections
from cem_warehouse.sources.crm import CrmStore
from cem_warehouse.sources.generator import catalog, model
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS, GeneratorParams
from cem_warehouse.sources.sales import SalesWriter
from cem_warehouse.sources.surveys import LandingWriter
from cem_warehouse.warehouse.settings import WarehouseLocation

Progress = Callable[[int, int], None]  # (done, total) in customers / steps


@dataclass
class Targets:
    """Where generated data goes: the sales database, the CRM store, the survey landing."""

    sales: WarehouseLocation
    crm_store: Path
    surveys_url: str
    state: Path

    @staticmethod
    def default() -> Targets:
        sales = connections.sales_connection(ensure=True)
        return Targets(
            sales.postgres(),
            connections.crm_store_dir(),
            connections.surveys_connection().path,
            connections.sources_state_dir() / "generator",
        )


@dataclass
class Result:
    day: int
    customers: int
    export_date: str
    rows: dict[str, int] = field(default_factory=dict)
    bad_cases: list[dict] = field(default_factory=list)

    def count(self, out: model.Output) -> None:
        for key, value in out.rows().items():
            self.rows[key] = self.rows.get(key, 0) + value


def _clock(p: GeneratorParams) -> model.Clock:
    end_us = int(p.history_end.timestamp() * 1_000_000)
    return model.Clock(end_us - p.history_days * model.DAY_US)


def export_date(p: GeneratorParams, end_day: float) -> str:
    return (p.history_end - timedelta(days=p.history_days - end_day + 1)).date().isoformat()


LATE_KEYS = {
    "customers": "customer_id",
    "support_cases": "customer_id",
    "interactions": "customer_id",
    "referrals": "referred_customer_id",
}


def _split_late(out: model.Output, late_ids: np.ndarray) -> dict[str, pa.Table]:
    """Take late-arriving customers' CRM rows out of ``out``; they are released the next day."""
    withheld = {}
    value_set = pa.array(late_ids)
    for entity, key in LATE_KEYS.items():
        table = out.tables["crm"].get(entity)
        if table is None:
            continue
        mask = pc.is_in(table.column(key), value_set=value_set)
        withheld[entity] = table.filter(mask)
        out.tables["crm"][entity] = table.filter(pc.invert(mask))
    return withheld


class _Writers:
    def __init__(self, targets: Targets) -> None:
        self.sales = SalesWriter(targets.sales)
        self.crm = CrmStore(targets.crm_store)
        self.landing = LandingWriter(targets.surveys_url)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: Future | None = None

    def write(self, out: model.Output, part: str, export: str, chunk_no: int) -> None:
        # CRM and surveys on this thread; sales COPY on the background thread.
        self.wait()
        sales_tables = dict(out.tables["sales"])
        self.pending = self.pool.submit(self._sales, sales_tables)
        for entity, table in out.tables["crm"].items():
            self.crm.write(entity, table, part)
        fmt = "jsonl" if chunk_no % 3 == 1 else "csv"
        for entity, table in out.tables["surveys"].items():
            if table.num_rows:
                self.landing.write(
                    entity,
                    table,
                    export,
                    f"{entity}-{part}",
                    "csv" if entity == "invitations" else fmt,
                )

    def _sales(self, tables: dict[str, pa.Table]) -> None:
        for entity, table in tables.items():
            self.sales.copy(entity, table)

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def close(self) -> None:
        self.wait()
        self.pool.shutdown()
        self.sales.close()


def _save_state(targets: Targets, state: dict, latent: model.Latent) -> None:
    targets.state.mkdir(parents=True, exist_ok=True)
    np.savez(targets.state / "latent.npz", **asdict(latent))
    (targets.state / "state.json").write_text(json.dumps(state, indent=2))


def _load_state(targets: Targets) -> tuple[dict, model.Latent]:
    path = targets.state / "state.json"
    if not path.exists():
        raise CemError(
            "No generated data to extend: run `cem generate --customers N --seed S` first, then `--next-day`."
        )
    state = json.loads(path.read_text())
    with np.load(targets.state / "latent.npz") as data:
        latent = model.Latent(**{k: data[k] for k in data.files})
    return state, latent


def _save_pending(targets: Targets, name: str, tables: dict[str, pa.Table]) -> None:
    folder = targets.state / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for entity, table in tables.items():
        if table.num_rows:
            pq.write_table(table, folder / f"{entity}.parquet")


def _load_pending(targets: Targets, name: str) -> dict[str, pa.Table]:
    folder = targets.state / name
    return (
        {f.stem: pq.read_table(f) for f in sorted(folder.glob("*.parquet"))}
        if folder.exists()
        else {}
    )


def generate(
    customers: int,
    seed: int,
    targets: Targets,
    params: GeneratorParams = DEFAULT_PARAMS,
    bad_rate: float = 0.0,
    progress: Progress | None = None,
) -> Result:
    """Day 0: replace the stand-ins' contents with ``customers`` customers' full history."""
    if customers < 1:
        raise CemError("--customers must be at least 1.")
    if not 0.0 <= bad_rate <= 1.0:
        raise CemError("--bad-rate must be between 0 and 1 (e.g. 0.01 for 1% bad inputs).")
    p = params
    clock = _clock(p)
    end_day = float(p.history_days)
    export = export_date(p, end_day)
    ids = model.Counters()
    result = Result(day=0, customers=customers, export_date=export)
    writers = _Writers(targets)
    writers.sales.open()
    try:
        writers.sales.check_stand_in()  # both checks before anything is emptied
        writers.landing.check_stand_in()
        writers.sales.reset()
        writers.crm.reset()
        writers.landing.reset()
        if targets.state.exists():
            shutil.rmtree(targets.state)
        writers.sales.copy("products", model.product_table(clock.start_us))
        writers.landing.write(
            "survey_definitions",
            model.survey_definitions(clock.start_us),
            export,
            "survey_definitions-d0000",
            "jsonl",
        )
        latents, late_parts = [], []
        n_chunks = -(-customers // p.chunk_size)
        for chunk_no in range(n_chunks):
            n = min(p.chunk_size, customers - chunk_no * p.chunk_size)
            out, latent, late = model.generate_chunk(p, seed, chunk_no, n, ids, clock, end_day)
            late_parts.append(_split_late(out, latent_ids(ids.customer - n, late)))
            if bad_rate > 0:
                catalog.mix(
                    out, np.random.default_rng([seed, chunk_no, 7]), bad_rate, clock, end_day
                )
            result.count(out)
            writers.write(out, f"d0000-c{chunk_no:05d}", export, chunk_no)
            latents.append(latent)
            if progress:
                progress(chunk_no * p.chunk_size + n, customers)
        writers.wait()
        writers.sales.finish_bulk()
        withheld = {e: pa.concat_tables([x[e] for x in late_parts if e in x]) for e in LATE_KEYS}
        _save_pending(targets, "pending_crm", withheld)
        if bad_rate > 0:
            result.bad_cases = catalog.produce_all(targets, writers, ids, clock, end_day, export)
        writers.crm.touch()
        state = {
            "seed": seed,
            "customers": customers,
            "day": 0,
            "counters": asdict(ids),
            "bad_rate": bad_rate,
        }
        _save_state(targets, state, model.Latent.concat(latents))
    finally:
        writers.close()
    return result


def latent_ids(first_index: int, late_mask: np.ndarray) -> np.ndarray:
    return first_index + np.flatnonzero(late_mask).astype(np.int64) + model.CRM_ID_OFFSET


def _existing_cohort(latent: model.Latent) -> model.Cohort:
    n = len(latent.category)
    zeros = np.zeros(n, dtype=np.int64)
    return model.Cohort(
        index=np.arange(n, dtype=np.int64),
        category=latent.category.astype(np.int64),
        acq_day=latent.acq_day.astype(np.float64),
        churn_day=latent.churn_day.astype(np.float64),
        segment=zeros,
        region=zeros,
        channel=zeros,
        consent=zeros.astype(bool),
        owned_lines=latent.owned_lines.astype(np.int64),
        line_perm=latent.line_perm,
        cancels=np.zeros(n, dtype=bool),
    )


def generate_next_day(
    targets: Targets,
    params: GeneratorParams = DEFAULT_PARAMS,
    bad_rate: float | None = None,
    progress: Progress | None = None,
) -> Result:
    """One more day: new customers and orders, changed and refunded old orders, late survey
    files, updated CRM records (and yesterday's late-arriving customers)."""
    p = params
    state, latent = _load_state(targets)
    seed, day = state["seed"], state["day"] + 1
    bad_rate = state.get("bad_rate", 0.0) if bad_rate is None else bad_rate
    ids = model.Counters(**state["counters"])
    clock = _clock(p)
    end_day = float(p.history_days + day)
    lo_day = end_day - 1.0
    export = export_date(p, end_day)
    part = f"d{day:04d}"
    rng = np.random.default_rng([seed, 1_000_000 + day])
    base = state["customers"]
    result = Result(day=day, customers=len(latent.category), export_date=export)
    writers = _Writers(targets)
    writers.sales.open()
    steps = 6
    try:
        if not writers.sales.has_schema():
            raise CemError(
                f"The sales database {targets.sales.dbname!r} has no generated tables: run `cem generate` first."
            )
        # 1. existing customers: today's orders, support contacts, relationship surveys
        existing = _existing_cohort(latent)
        out = model.Output()
        active = existing.churn_day > lo_day
        buys = active & (
            rng.random(len(existing)) < 1.0 / np.asarray(p.purchase_gap_days)[existing.category]
        )
        cust = np.flatnonzero(buys)
        orders = model.orders_for(
            rng, p, existing, cust, lo_day + rng.random(len(cust)), end_day, clock, ids, out
        )
        cases = model.support(
            rng, p, existing, np.full(len(existing), lo_day), end_day, clock, ids, out
        )
        model.surveys(
            rng,
            p,
            existing,
            orders,
            cases,
            lo_day,
            end_day,
            clock,
            ids,
            out,
            purchase_delay=(0.02, 0.3),
        )
        if progress:
            progress(1, steps)
        # 2. new customers (some arrive in sales before the CRM)
        n_new = max(1, round(base * p.new_customers_per_day))
        first_new = ids.customer
        ids.take("customer", n_new)
        cohort = model.draw_cohort(rng, p, first_new, n_new, lo_day, end_day)
        new_cases = model.support(rng, p, cohort, cohort.acq_day, end_day, clock, ids, out)
        new_orders = model.history_orders(rng, p, cohort, end_day, clock, ids, out)
        model.surveys(
            rng,
            p,
            cohort,
            new_orders,
            new_cases,
            lo_day,
            end_day,
            clock,
            ids,
            out,
            purchase_delay=(0.02, 0.3),
        )
        pool_weight = np.asarray(p.referrer_weight)[existing.category] * (
            existing.churn_day > lo_day
        )
        model.referrals(rng, cohort, existing.index, existing.acq_day, pool_weight, clock, ids, out)
        out.add("crm", "customers", model.crm_customers(rng, p, cohort, end_day, clock, None))
        late = rng.random(n_new) < p.late_arrival_rate
        withheld = _split_late(out, latent_ids(first_new, late))
        if progress:
            progress(2, steps)
        # 3. yesterday's late customers reach the CRM today
        for entity, table in _load_pending(targets, "pending_crm").items():
            arrived = rng.uniform(lo_day, end_day, table.num_rows)
            table = table.set_column(
                table.column_names.index("updated_at"), "updated_at", clock.ts(arrived)
            )
            out.add("crm", entity, table)
        _save_pending(targets, "pending_crm", withheld)
        # 4. updated CRM records: cancellations, segment / consent changes, archiving
        out.add(
            "crm",
            "customers",
            _crm_updates(rng, p, targets, existing, lo_day, end_day, clock, base),
        )
        cases, contacts = _progress_open_cases(rng, targets, lo_day, end_day, clock, ids)
        out.add("crm", "support_cases", cases)
        out.add("crm", "interactions", contacts)
        if progress:
            progress(3, steps)
        # 5. late survey files: part of today's responses is exported tomorrow, into today's folder
        responses = out.tables["surveys"].get("responses")
        if responses is not None and responses.num_rows:
            late_mask = pa.array(rng.random(responses.num_rows) < p.late_survey_share)
            out.tables["surveys"]["responses"] = responses.filter(pc.invert(late_mask))
            held = responses.filter(late_mask)
        else:
            held = None
        previous = _load_pending(targets, "pending_surveys").get("responses")
        if previous is not None and previous.num_rows:
            writers.landing.write(
                "responses", previous, export_date(p, end_day - 1), f"responses-{part}-late", "csv"
            )
            result.rows["surveys.responses_late"] = previous.num_rows
        _save_pending(targets, "pending_surveys", {"responses": held} if held is not None else {})
        if bad_rate > 0:
            catalog.mix(
                out, np.random.default_rng([seed, 1_000_000 + day, 7]), bad_rate, clock, end_day
            )
        result.count(out)
        writers.write(out, part, export, day)
        writers.wait()
        if progress:
            progress(4, steps)
        # 6. old orders change: shipped -> delivered, refunds of delivered orders
        at_us = clock.start_us + int((lo_day + 0.5) * model.DAY_US)
        before_us = clock.start_us + int((end_day - 2.0) * model.DAY_US)
        moved = writers.sales.shipped_to_delivered(before_us, at_us, ids.status_change)
        ids.take("status_change", moved)
        n_ref = max(1, round(base * p.refunds_per_day))
        picked = np.unique(rng.integers(1, ids.order, n_ref))
        at = clock.start_us + ((lo_day + rng.random(len(picked))) * model.DAY_US).astype(np.int64)
        refunds, changes = writers.sales.refund_old_orders(
            picked, at - at % 1_000_000, ids.refund, ids.status_change
        )
        ids.take("refund", refunds)
        ids.take("status_change", changes)
        result.rows["sales.orders_delivered_today"] = moved
        result.rows["sales.refunds_of_old_orders"] = refunds
        if bad_rate > 0:
            result.bad_cases = catalog.produce_all(targets, writers, ids, clock, end_day, export)
        writers.crm.touch()
        if progress:
            progress(5, steps)
        new_latent = model.Latent.of(cohort)
        existing_latent = model.Latent.of(existing)
        state.update(day=day, counters=asdict(ids))
        _save_state(targets, state, model.Latent.concat([existing_latent, new_latent]))
        result.customers = len(existing) + n_new
        if progress:
            progress(6, steps)
    finally:
        writers.close()
    return result


def _crm_updates(
    rng: np.random.Generator,
    p: GeneratorParams,
    targets: Targets,
    existing: model.Cohort,
    lo_day: float,
    end_day: float,
    clock: model.Clock,
    base: int,
) -> pa.Table:
    current = CrmStore(targets.crm_store).read("customers")
    if current.num_rows == 0:
        return current
    n = current.num_rows
    ids = current.column("customer_id").to_numpy() - model.CRM_ID_OFFSET
    leaving = (
        (existing.churn_day[ids] >= lo_day)
        & (existing.churn_day[ids] < end_day)
        & (rng.random(n) < p.explicit_cancel_share)
        & current.column("cancelled_at").is_null().to_numpy(zero_copy_only=False)
    )
    changed = rng.random(n) < p.crm_updates_per_day
    archived = rng.random(n) < p.archive_per_day
    touched = leaving | changed | archived
    rows = current.filter(pa.array(touched))
    t = np.flatnonzero(touched)
    when = rng.uniform(lo_day, end_day, len(t))
    cancel_at = np.where(leaving[t], existing.churn_day[ids[t]], np.nan)
    old_cancel = rows.column("cancelled_at")
    new_cancel = pc.if_else(
        pa.array(leaving[t]), clock.ts_masked(cancel_at, leaving[t]), old_cancel
    )
    seg = pc.if_else(
        pa.array(changed[t] & (rng.random(len(t)) < 0.5)),
        model._take(model.SEGMENTS, rng.integers(0, 3, len(t))),
        rows.column("segment"),
    )
    consent = pc.if_else(
        pa.array(changed[t] & (rng.random(len(t)) < 0.5)),
        pc.invert(rows.column("email_consent")),
        rows.column("email_consent"),
    )
    archived_col = pc.or_(rows.column("is_archived"), pa.array(archived[t]))
    for name, column in (
        ("cancelled_at", new_cancel),
        ("segment", seg),
        ("email_consent", consent),
        ("is_archived", archived_col),
        ("updated_at", clock.ts(when)),
    ):
        rows = rows.set_column(rows.column_names.index(name), name, column)
    return rows


def _progress_open_cases(
    rng: np.random.Generator,
    targets: Targets,
    lo_day: float,
    end_day: float,
    clock: model.Clock,
    ids: model.Counters,
) -> tuple[pa.Table, pa.Table]:
    """Cases still open from earlier days get a contact today; half of them end: mostly solved,
    some closed unresolved. Returns the updated cases and the new interactions."""
    store = CrmStore(targets.crm_store)
    cases = store.read("support_cases")
    if cases.num_rows == 0:
        return cases, store.read("interactions").slice(0, 0)
    lo_ts = pa.scalar(clock.start_us + int(lo_day * model.DAY_US), pa.timestamp("us", tz="UTC"))
    still_open = pc.and_(
        pc.is_in(cases.column("status"), value_set=pa.array(["open", "reopened"])),
        pc.less(cases.column("opened_at"), lo_ts),
    )
    cases = cases.filter(still_open)
    cases = cases.filter(pa.array(rng.random(cases.num_rows) < 0.5))
    n = cases.num_rows
    start = rng.uniform(lo_day, end_day - 0.05, n)
    handle = np.round(rng.lognormal(np.log(420), 0.6, n)).astype(np.int32)
    end = start + handle / 86400.0
    solved = rng.random(n) < 0.8
    interactions = pa.table(
        {
            "interaction_id": ids.take("interaction", n),
            "case_id": cases.column("case_id"),
            "customer_id": cases.column("customer_id"),
            "channel": cases.column("channel"),
            "direction": pa.array(np.full(n, "inbound")),
            "agent_id": pa.array(rng.integers(1000, 1400, n)),
            "started_at": clock.ts(start),
            "ended_at": clock.ts(end),
            "handle_seconds": pa.array(handle, pa.int32()),
            "created_at": clock.ts(start),
            "updated_at": clock.ts(end),
        }
    )
    changes = {
        "status": pa.array(np.where(solved, "solved", "closed")),
        "resolved_at": pc.if_else(pa.array(solved), clock.ts(end), cases.column("resolved_at")),
        "closed_at": clock.ts(end),
        "is_resolved": pc.or_(cases.column("is_resolved"), pa.array(solved)),
        "contact_count": pc.add(cases.column("contact_count"), pa.scalar(1, pa.int32())),
        "updated_at": clock.ts(end),
    }
    for name, column in changes.items():
        cases = cases.set_column(cases.column_names.index(name), name, column)
    return cases, interactions
