"""Incremental builds of the large facts equal a full refresh, after several days of deltas.

The sources get several ``--next-day`` deltas (new customers, some arriving in sales a day
before the CRM, refunds of old orders, CRM updates and archives, late survey files), plus
an order placed before the customer's first one but loaded late, a product whose cost
changed, an old order cancelled, a support case that a contact makes shared by two
customers, one of whom buys the next day, a post-support survey naming only its case (it
follows the case's last contact, moves to a contact added the next day, and to the contact
its invitation names once exported again), and contacts without a case, numbered together
across days. After each delta the marts are built
incrementally and published; under write-audit-publish a build starts from the previous
generation, which the publication brought up to the published one from the change log
(checked: equal, row for row), or, where that failed (made to fail after day 2), from the
generation before the last one, so it must catch up from an older state. Finally a
``--full-refresh`` build into marts_build (not published) is compared, row for row, with
the published incremental facts.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cem_warehouse import paths
from cem_warehouse.cli import main
from cem_warehouse.errors import CemError
from cem_warehouse.quality.catalog_answers import kept_row_count
from cem_warehouse.sources.contracts import BY_SOURCE, SOURCE_FILE, SURVEY_FOLDERS
from cem_warehouse.sources.crm import CrmStore
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS
from cem_warehouse.sources.generator.run import generate_next_day
from cem_warehouse.sources.surveys import LandingWriter
from cem_warehouse.transform.dbt import dbt_target_dir, run_dbt
from cem_warehouse.transform.marts import build_marts
from cem_warehouse.warehouse.connection import connect

INCREMENTAL_FACTS = (
    "fct_orders",
    "fct_order_lines",
    "fct_survey_responses",
    "fct_support_interactions",
    "fct_referrals",
)
# Busier days than the default rates give 300 customers: enough late CRM customers, refunds,
# CRM updates and archives that every kind of change happens.
BUSY_DAY = replace(
    DEFAULT_PARAMS,
    new_customers_per_day=0.1,
    late_arrival_rate=0.6,
    refunds_per_day=0.03,
    crm_updates_per_day=0.05,
    archive_per_day=0.02,
)
DAYS = 3

# fct_orders with the orders changed since its last build, found beside identity resolution
ORDERS_AND_THEIR_CHANGES = "int_orders_changed_since_last_build fct_orders"


def _repeat_customers(conn, count: int) -> list[tuple]:
    """`count` customers of the sales system with three purchases or more, by email: (email,
    first purchase's order_id, its ordered_at, the last purchase's ordered_at)."""
    return conn.execute(
        "select lower(btrim(customer_email, E' \\t\\r\\n')), "
        "(array_agg(order_id order by ordered_at, order_id))[1], min(ordered_at), max(ordered_at) "
        "from orders where status <> 'cancelled' and customer_email is not null group by 1 "
        "having count(*) >= 3 order by 1 limit %s",
        (count,),
    ).fetchall()


def _after_every_order_update(conn):
    """An update time later than any order's: the sales loader reads the rows changed since."""
    return conn.execute("select max(updated_at) + interval '1 second' from orders").fetchone()[0]


def _plant_late_earlier_order(stand_ins) -> int:
    """An order of a repeat customer placed a day before their first order, but written to
    the sales system only now (it sorts first: every later order is renumbered)."""
    with connect(stand_ins.sales_db) as conn:
        ((email, _, first_at, _),) = _repeat_customers(conn, 1)
        ordered_at = conn.execute("select %s - interval '1 day'", (first_at,)).fetchone()[0]
        now = _after_every_order_update(conn)
    return _plant_order(stand_ins, 900_000_001, "SA-LATE-ORDER", email, ordered_at, now)


def _plant_newest_order_of(stand_ins, email: str) -> int:
    """An order of the customer with ``email``, on the newest order's day."""
    with connect(stand_ins.sales_db) as conn:
        ordered_at = conn.execute("select max(ordered_at) from orders").fetchone()[0]
        now = _after_every_order_update(conn)
    return _plant_order(stand_ins, 900_000_002, "SA-PLANTED-ORDER", email, ordered_at, now)


def _plant_order(stand_ins, order_id: int, account: str, email: str, ordered_at, now) -> int:
    # ids far above the generator's counters, which keep counting on the next days
    stand_ins.insert_sales_order(
        order_id=order_id,
        line_id=order_id,
        account=account,
        email=email,
        ordered_at=ordered_at,
        updated_at=now,
    )
    return order_id


def _cancel_order(sales_db, order_id: int) -> None:
    """The order is cancelled in the sales system, updated after every other order: only
    its own row changes."""
    with connect(sales_db) as conn:
        conn.execute(
            "update orders set status = 'cancelled', updated_at = %s where order_id = %s",
            (_after_every_order_update(conn), order_id),
        )
        conn.commit()


def _cancel_an_old_order(sales_db) -> int:
    """The first delivered order is cancelled: each of its lines must say so
    (fct_order_lines.is_cancelled)."""
    with connect(sales_db) as conn:
        order_id = conn.execute(
            "select min(order_id) from orders where status = 'delivered'"
        ).fetchone()[0]
    _cancel_order(sales_db, order_id)
    return order_id


def _cancel_a_referred_customers_first_order(
    warehouse, sales_db, *, besides: int
) -> tuple[int, int]:
    """A converted referral's first order is cancelled in the sales system (not ``besides``,
    cancelled already): nothing of the referral is loaded again, yet its conversion moves to
    the customer's next order or goes. Returns (referral_id, the cancelled order_id)."""
    with connect(warehouse) as conn:
        referral_id, order_id = conn.execute(
            "select referral_id, referred_first_order_id from marts.fct_referrals "
            "where is_converted and referred_first_order_id <> %s order by referral_id limit 1",
            (besides,),
        ).fetchone()
    _cancel_order(sales_db, order_id)
    return referral_id, order_id


def _change_a_product_cost(sales_db) -> int:
    """A product's unit cost changes: the margin of every order with a line of it changes."""
    with connect(sales_db) as conn:
        product_id = conn.execute(
            "update products set unit_cost = unit_cost + 1, updated_at = updated_at + interval '400 days' "
            "where product_id = (select max(product_id) from products) returning product_id"
        ).fetchone()[0]
        conn.commit()
    return product_id


def _assert_facts_equal(warehouse, full_schema: str) -> None:
    """Every incremental fact in `marts` has exactly the rows of its full refresh."""
    with connect(warehouse) as conn:
        for fact in INCREMENTAL_FACTS:
            only_incremental, only_full = conn.execute(
                f"select (select count(*) from (select * from marts.{fact} "
                f"except all select * from {full_schema}.{fact}) as missing), "
                f"(select count(*) from (select * from {full_schema}.{fact} "
                f"except all select * from marts.{fact}) as extra)"
            ).fetchone()
            total = conn.execute(f"select count(*) from marts.{fact}").fetchone()[0]
            assert total > 0, fact
            assert (only_incremental, only_full) == (0, 0), (
                f"{fact}: {only_incremental} rows only in the incremental build, "
                f"{only_full} only in the full refresh (of {total})"
            )


# The marts that log every row they replace: after each publication marts_build is brought
# up to the published generation from the log (transform/generations.py).
LOGGING_MARTS = (
    "dim_customers_stored",
    "fct_customer_churn_stored",
    "fct_customer_repurchase_stored",
    "fct_order_lines",
    "fct_orders",
    "fct_referrals",
    "fct_referrers",
    "fct_support_interactions",
    "fct_survey_responses",
)
# Those that read the change log themselves: the retired table takes over the published
# table's position.
READING_MARTS = (
    "dim_customers_stored",
    "fct_customer_churn_stored",
    "fct_customer_repurchase_stored",
    "fct_order_lines",
    "fct_referrals",
    "fct_referrers",
)


# The marts whose rows their write triggers count for the audit (dbt post-hook
# keep_row_count), in both generations: built, caught up or copied.
KEPT_COUNT_MARTS = (
    "fct_orders",
    "fct_order_lines",
    "dim_customers_stored",
    "fct_survey_responses",
    "fct_support_interactions",
    "fct_customer_churn_stored",
    "fct_customer_repurchase_stored",
)


def _assert_row_counts_kept(warehouse) -> None:
    with connect(warehouse) as conn:
        for schema in ("marts", "marts_build"):
            for mart in KEPT_COUNT_MARTS:
                counted = conn.execute(f"select count(*) from {schema}.{mart}").fetchone()[0]
                assert kept_row_count(conn, schema, mart) == counted, f"{schema}.{mart}"


def _fail_to_catch_up(*args, **kwargs):
    raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")


def _build_with_a_failed_catch_up(monkeypatch, warehouse) -> None:
    """An incremental build, published, whose catch-up of marts_build then fails: the next
    build starts from the generation before the last one."""
    with monkeypatch.context() as failing:
        failing.setattr(
            "cem_warehouse.transform.generations.catch_up_retired_generation", _fail_to_catch_up
        )
        publication = build_marts(warehouse)
    assert "error" in publication.retired_generation


# Tables a full build writes in the order their incremental readers look them up by
# (macros/stored_in_order_of.sql): the key columns, in order.
STORED_IN_READERS_ORDER = {
    "staging.int_identity_observations": ["customer_email"],
    "staging.int_purchase_gaps_assessed_for_churn": ["customer_key", "purchase_day_number"],
}


def _assert_stored_in_readers_order(warehouse) -> None:
    """Each table's rows, read in their physical order (ctid), never step back in its key
    order; nulls last, as ORDER BY puts them."""
    with connect(warehouse) as conn:
        for table, columns in STORED_IN_READERS_ORDER.items():
            key = ", ".join(columns)
            out_of_order, rows = conn.execute(
                f"select count(*) filter (where row({key}) < previous "
                f"or (previous_has_null and not row({key}) is null)), count(*) "
                f"from (select {key}, lag(row({key})) over physical as previous, "
                f"lag(not row({key}) is not null) over physical as previous_has_null "
                f"from {table} window physical as (order by ctid)) as stored"
            ).fetchone()
            assert rows > 0, table
            assert out_of_order == 0, f"{table}: {out_of_order} of {rows} rows out of order"


def _assert_retired_generation_caught_up(warehouse, *, expect_all: bool) -> None:
    """What the last publication says it caught up in marts_build equals the published
    table row for row, and each reading mart took over the published table's log position."""
    with connect(warehouse) as conn:
        retired = conn.execute(
            "select retired_generation from ops.mart_publications "
            "order by publication_id desc limit 1"
        ).fetchone()[0]
        assert set(retired) == set(LOGGING_MARTS), retired
        for mart in LOGGING_MARTS:
            if not retired[mart].startswith(("caught up", "copied in full")):
                assert not expect_all, f"{mart}: {retired[mart]}"
                continue
            differing = conn.execute(
                f"select (select count(*) from (select * from marts.{mart} "
                f"except all select * from marts_build.{mart}) as published_only), "
                f"(select count(*) from (select * from marts_build.{mart} "
                f"except all select * from marts.{mart}) as retired_only)"
            ).fetchone()
            assert differing == (0, 0), f"{mart}: {retired[mart]}, yet {differing} rows differ"
        for mart in READING_MARTS:
            positions = conn.execute(
                "select count(distinct (change_id, as_of_date, built_at)), count(*) "
                "from ops.mart_change_positions where consumer in ("
                "%(mart)s || '#' || cast(cast(to_regclass('marts.' || %(mart)s) as oid) as text), "
                "%(mart)s || '#' || cast(cast(to_regclass('marts_build.' || %(mart)s) as oid) as text))",
                {"mart": mart},
            ).fetchone()
            if retired[mart].startswith(("caught up", "copied in full")):
                assert positions == (1, 2), f"the retired {mart} kept its own log position"
    _assert_row_counts_kept(warehouse)


def _assert_equal_to_a_side_full_refresh(warehouse) -> None:
    """After a day: the core facts fully refreshed into a schema of their own (marts_build
    keeps the state the next incremental build starts from), then compared. Checked every
    day because a later day can re-derive, and so hide, what an earlier build missed."""
    run_dbt(
        warehouse,
        [
            "run",
            "--full-refresh",
            "--select",
            "marts.core",
            # a view over dim_customers_stored and the churn mart, which is not built here
            "--exclude",
            "dim_customers",
            "--vars",
            '{"marts_build_schema": "marts_full"}',
        ],
    )
    _assert_facts_equal(warehouse, "marts_full")


# Per-customer models that rebuild only the customers whose facts changed: their folder
# under models/ and the schema holding the generation the last build computed.
PER_CUSTOMER_MODELS = {
    "int_identity_observations": ("intermediate/customers", "staging"),
    "int_customers_resolved_across_sources": ("intermediate/customers", "staging"),
    "int_orders_aggregated_to_purchase_days": ("intermediate/repurchase", "staging"),
    "int_order_lines_aggregated_to_customers": ("intermediate/repurchase", "staging"),
    "int_purchase_gaps_assessed_for_churn": ("intermediate/churn", "staging"),
    # per support case, from the contacts', purchase days' and churn gaps' logs and what
    # the moving as-of date lets in (contacts, resolutions, ended follow-up windows)
    "int_support_cases_followed_up": ("intermediate/churn", "staging"),
    # per invitation, from the responses' and identity resolution's logs
    "int_invitations_categorised_at_sending": ("intermediate/surveys", "staging"),
    # marts: built in marts_build, published (swapped into marts) by then
    # dim_customers is a view adding the lifecycle stage from fct_customer_churn_stored's dates
    "dim_customers_stored": ("marts/core", "marts"),
    # the stored parts of the per-customer marts whose views add the as-of columns
    "fct_customer_repurchase_stored": ("marts/repurchase", "marts"),
    # churn per customer and the dates its lifecycle stage is decided from, from the churn
    # gaps', the responses' and the CRM records' logs (the stage itself moves with the as-of
    # date alone: the views work it out, _lifecycle_inputs)
    "fct_customer_churn_stored": ("marts/churn", "marts"),
    # per referrer, from the referrals' and dim_customers_stored's logs (the referrers of referred
    # customers whose revenue changed included)
    "fct_referrers": ("marts/referral", "marts"),
    # what the advocacy mart counts per customer, from those three marts' logs, the
    # referrals' log and the referrals the moving as-of date lets in
    "int_customers_advocate_behaviours": ("intermediate/customers", "staging"),
    # not per customer but per month: the contacts' cells of the months whose contacts
    # fct_support_interactions logged (its month keys, macros/contact_month_keys.sql)
    "int_support_contacts_counted_by_month": ("intermediate/contact_center", "staging"),
}


# Counts kept by their producer's writes (macros/counted_by_triggers.sql): their folder and
# schema. The per-customer comparison below counts them in full too, in the same compile.
COUNTED_MODELS = {
    "int_purchase_days_counted_by_cohort_month": ("intermediate/repurchase", "staging"),
    "int_churn_events_counted_by_month": ("intermediate/churn", "staging"),
    "int_invitations_counted_by_sent_month": ("intermediate/surveys", "staging"),
    "int_invitations_counted_by_day": ("intermediate/surveys", "staging"),
    "int_customers_counted_by_loyalty_category": ("intermediate/customers", "staging"),
}
KEPT_BY_TRIGGERS = "counts kept by the triggers on"


def _assert_counts_kept_by_their_producers(*, kept: bool = True) -> None:
    """The last build left each counted model's counting to its producer's triggers
    (``kept``), or counted it again in full."""
    target = dbt_target_dir()
    for model, (folder, _) in COUNTED_MODELS.items():
        statement = (
            target / "run" / "cem_warehouse" / "models" / folder / f"{model}.sql"
        ).read_text()
        assert (KEPT_BY_TRIGGERS in statement) == kept, (
            f"{model}: {'counted again' if kept else 'not counted again'} in this build"
        )


def _counting_triggers(warehouse) -> set[tuple[str, int]]:
    """The counted models' triggers on their producers, by name and oid: an incremental build
    must leave them in place (dropping one locks the producer against its readers)."""
    with connect(warehouse) as conn:
        return set(
            conn.execute(
                "select tgname, cast(oid as bigint) from pg_catalog.pg_trigger "
                "where not tgisinternal and tgname like 'keeps\\_%'"
            ).fetchall()
        )


# where_in_scope's filter as keys_in_order renders it (macros/change_log.sql): the customers
# in scope, distinct and sorted, in a subquery kept whole
SCOPE_FILTER_IN_KEY_ORDER = re.compile(
    r"in \(select distinct key_value from \(\s*select key_value from customers_in_scope\s*"
    r"\) as keys\s*order by key_value\s*offset 0\s*\)"
)
# where_in_scope_by_array's filter instead (the churn mart and the churn gaps, whose
# joins are hashed): the customers in scope as one sorted array
SCOPE_FILTER_BY_SORTED_ARRAY = re.compile(
    r"customer_key = any\(array\(select distinct key_value from customers_in_scope "
    r"order by key_value\)\)"
)


def _assert_per_customer_models_equal_a_full_recompute(
    warehouse,
    *,
    built_incrementally: bool,
    models: dict[str, tuple[str, str]] | None = None,
    counted: dict[str, tuple[str, str]] = COUNTED_MODELS,
) -> None:
    """Each per-customer model (``models``, by default all of them) holds exactly what its
    SQL computes in full from the facts it was built from (published in `marts` by now):
    compiled with --full-refresh, so without the changed-customers filter. So does each
    counted model (``counted``): a full count of its producer."""
    models = PER_CUSTOMER_MODELS if models is None else models
    if built_incrementally:
        target = dbt_target_dir()
        for model, (folder, _) in models.items():
            # the strategy's statement (run/) or the model's select (compiled/) reads, or
            # for a fact writes, the change log
            statements = [
                (target / kind / "cem_warehouse" / "models" / folder / f"{model}.sql").read_text()
                for kind in ("run", "compiled")
            ]
            assert any("mart_key_changes" in sql for sql in statements), (
                f"{model} was rebuilt in full, not for the changed customers only"
            )
            # where_in_scope (macros/change_log.sql) filters its inputs to those customers
            source = (paths.dbt_project_dir() / "models" / folder / f"{model}.sql").read_text()
            if "where_in_scope(" in source:
                assert any(SCOPE_FILTER_IN_KEY_ORDER.search(sql) for sql in statements), (
                    f"{model} read every customer's rows, or not in key order: where_in_scope "
                    "left out its filter or keys_in_order"
                )
            if "where_in_scope_by_array(" in source:
                assert any(SCOPE_FILTER_BY_SORTED_ARRAY.search(sql) for sql in statements), (
                    f"{model} read every customer's rows: its sorted array of the customers "
                    "in scope is missing from its select"
                )
            # dated changes (change_log_replaced_from / change_log_rows_from): the producer
            # logs the first date it changed, the reader replaces a customer's rows from it
            run_sql, compiled_sql = statements
            if "change_log_replaced_from=" in source:
                assert "changed_from" in run_sql, f"{model} logged its customers without a date"
            if "change_log_rows_from=" in source:
                assert "__rows_from" in run_sql and "rows_from" in compiled_sql, (
                    f"{model} recomputed and replaced every row of its customers, not those "
                    "from the date their changes start"
                )
    run_dbt(
        warehouse,
        [
            "compile",
            "--full-refresh",
            "--select",
            " ".join([*models, *counted]),
            "--vars",
            '{"marts_build_schema": "marts"}',
        ],
    )
    compiled = dbt_target_dir() / "compiled" / "cem_warehouse" / "models"
    with connect(warehouse) as conn:
        for model, (folder, schema) in {**models, **counted}.items():
            full = (compiled / folder / f"{model}.sql").read_text()
            assert "mart_key_changes" not in full, "compiled with the incremental filter"
            only_incremental, only_full, total = conn.execute(
                f"with full_recompute as ({full}) "
                f"select (select count(*) from (select * from {schema}.{model} "
                f"except all select * from full_recompute) as missing), "
                f"(select count(*) from (select * from full_recompute "
                f"except all select * from {schema}.{model}) as extra), "
                f"(select count(*) from {schema}.{model})"
            ).fetchone()
            assert total > 0, model
            if (only_incremental, only_full) != (0, 0):
                # only on failure: a few of the rows, to say which customers went wrong
                sample = conn.execute(
                    f"with full_recompute as ({full}) "
                    f"select * from (select * from {schema}.{model} "
                    f"except all select * from full_recompute) as missing limit 3"
                ).fetchall()
                raise AssertionError(
                    f"{model}: {only_incremental} rows only in the incremental build, "
                    f"{only_full} only in the full recompute (of {total}), e.g. {sample}"
                )


def _lifecycle_inputs(warehouse) -> dict[str, tuple]:
    """Each assessed customer's lifecycle stage, as the published view works it out, and
    the stored facts it is decided from."""
    with connect(warehouse) as conn:
        return {
            key: rest
            for key, *rest in conn.execute(
                "select customer_key, lifecycle_stage, is_churned, threshold_days, "
                "first_purchase_date, last_purchase_date, won_back_date "
                "from marts.fct_customer_churn"
            )
        }


def _stages_moved_by_the_date_alone(before: dict, after: dict) -> set[str]:
    """Customers whose stage changed while every fact it is decided from stayed the same:
    only the moved as-of date changed it (the stage comparison's part of the scope)."""
    return {
        key
        for key, (stage, *facts) in after.items()
        if key in before and before[key][0] != stage and before[key][1:] == facts
    }


def _plant_late_resolution(stand_ins, resolved_on: date) -> int:
    """A case left unresolved long before ``resolved_on`` is marked resolved on that day
    in the CRM, with no contact after its last: only the moving as-of date can bring the
    resolution into the marts. Returns its case id."""
    with connect(stand_ins.warehouse) as conn:
        case_id = conn.execute(
            "select case_id from staging.int_support_cases_followed_up "
            "where case_outcome = 'unresolved' and last_contact_date < %s "
            "order by case_id limit 1",
            (resolved_on - timedelta(days=60),),
        ).fetchone()[0]
    store = CrmStore(stand_ins.crm_store)
    cases = store.read("support_cases")
    newest = pc.max(cases.column("updated_at")).as_py()
    case = cases.filter(pc.equal(cases.column("case_id"), case_id)).to_pylist()[0]
    resolved_at = datetime.combine(resolved_on, time(12), tzinfo=UTC)
    case.update(
        status="solved",
        is_resolved=True,
        resolved_at=resolved_at,
        closed_at=resolved_at,
        updated_at=newest + timedelta(seconds=1),
    )
    store.write("support_cases", pa.Table.from_pylist([case], schema=cases.schema), "planted")
    store.touch()
    return case_id


class MovedCancellations(NamedTuple):
    withdrawn: str  # its stored gaps churned by an explicit cancellation, now withdrawn
    backdated: str  # cancelled now on a date inside its second gap, long past


def _move_cancellations(stand_ins) -> MovedCancellations:
    """Two CRM customers whose cancellation date changes with nothing else of theirs: one
    had churned by an explicit cancellation and has it withdrawn; another, never cancelled,
    is cancelled on a date inside its second gap, before the as-of date the last build used
    (not in the days it moves over). The churn gaps must find both gaps from the CRM records
    alone: the one a stored cancellation churned in, the one the new date falls in."""
    with connect(stand_ins.warehouse) as conn:
        (withdrawn,) = conn.execute(
            "select customer_key from staging.int_purchase_gaps_assessed_for_churn "
            "where churn_rule = 'explicit cancellation' and customer_key ~ '^[0-9]+$' "
            "order by customer_key limit 1"
        ).fetchone()
        # a gap of two days or more, with a later purchase day, that nothing churned
        backdated, second_day = conn.execute(
            "select gaps.customer_key, gaps.purchase_date "
            "from staging.int_purchase_gaps_assessed_for_churn as gaps "
            "inner join staging.stg_crm__customers as crm "
            "on cast(crm.customer_id as text) = gaps.customer_key "
            "where gaps.purchase_day_number = 2 and not gaps.is_churned "
            "and gaps.gap_end_date > gaps.purchase_date and crm.cancelled_at is null "
            "and gaps.customer_key <> %s order by gaps.customer_key limit 1",
            (withdrawn,),
        ).fetchone()
    _update_crm_customer(stand_ins, int(withdrawn), cancelled_at=None)
    _update_crm_customer(
        stand_ins,
        int(backdated),
        cancelled_at=datetime.combine(second_day + timedelta(days=1), time(12), tzinfo=UTC),
    )
    return MovedCancellations(withdrawn, backdated)


def _cancellation_churns(conn, customer_key: str) -> list[date]:
    """The purchase days whose gap an explicit cancellation churned, of one customer."""
    return [
        day
        for (day,) in conn.execute(
            "select purchase_date from staging.int_purchase_gaps_assessed_for_churn "
            "where customer_key = %s and churn_rule = 'explicit cancellation' order by 1",
            (customer_key,),
        )
    ]


class SharedCase(NamedTuple):
    case_id: int
    owner_key: str  # A: the case's only customer before the plant
    owner_email: str
    other_key: str  # B: sorts before A, so the case becomes B's
    contacts: int  # the case's contacts after the plant


def _plant_shared_case(stand_ins) -> SharedCase:
    """A contact of customer B on a case so far only customer A's, with B's key sorting
    first, so the case becomes B's. The new contact re-derives the whole case, so both
    customers are logged; after a later change of A alone (a new order), the support cases
    must follow the case from A to B (the recursion over customers sharing a case), or they
    recompute it from A's contacts alone next to B's stored row."""
    with connect(stand_ins.warehouse) as conn:
        case_id, owner, contacts, owner_email = conn.execute(
            "select cases.case_id, cases.customer_key, cases.contact_count, owners.customer_email "
            "from staging.int_support_cases_followed_up as cases "
            "inner join marts.dim_customers as owners on cases.customer_key = owners.customer_key "
            "where not owners.is_inferred and owners.customer_email is not null "
            "and cases.customer_key > "
            "(select min(customer_key) from marts.dim_customers where not is_inferred) "
            "order by cases.case_id limit 1"
        ).fetchone()
        other = conn.execute(
            "select customer_key from marts.dim_customers where not is_inferred "
            "and customer_key < %s and customer_key ~ '^[0-9]+$' "
            "and customer_key not in (select customer_key from marts.fct_support_interactions "
            "where case_id = %s) order by customer_key limit 1",
            (owner, case_id),
        ).fetchone()[0]
    store = CrmStore(stand_ins.crm_store)
    interactions = store.read("interactions")
    newest = pc.max(interactions.column("updated_at")).as_py()
    template = interactions.filter(pc.equal(interactions.column("case_id"), case_id)).to_pylist()[0]
    template.update(
        interaction_id=900_000_001,  # far above the generator's counter
        customer_id=int(other),
        started_at=template["started_at"] + timedelta(hours=1),
        ended_at=template["ended_at"] + timedelta(hours=1) if template["ended_at"] else None,
        created_at=newest + timedelta(seconds=1),
        updated_at=newest + timedelta(seconds=1),
    )
    store.write(
        "interactions", pa.Table.from_pylist([template], schema=interactions.schema), "planted"
    )
    store.touch()
    return SharedCase(case_id, owner, owner_email, other, contacts + 1)


class CaseOnlySurvey(NamedTuple):
    case_id: int
    customer_id: int
    last_contact_id: int  # the case's last contact when the survey came
    response_id: int
    invitation: dict  # as exported


def _reexport_naming_the_contact(stand_ins, survey: CaseOnlySurvey) -> None:
    """The survey tool exports the survey's invitation again, now naming the contact it
    followed (the case's last contact when it came), and not the response: the stored
    response must follow the invitation, though nothing of its own was loaded again."""
    _write_survey_files(
        stand_ins,
        # a file's path is its rows' version: this one sorts after the first export's
        "planted-d3-case-only",
        {"invitations": {**survey.invitation, "related_interaction_id": survey.last_contact_id}},
    )


def _write_survey_files(stand_ins, name: str, rows: dict[str, dict]) -> None:
    """One record per survey entity (contract name -> its values, the others null), each
    as a file in the survey landing folder under the newest export date there, with the
    columns its source contract declares."""
    arrow_types = {
        "bigint": pa.int64(),
        "integer": pa.int64(),
        "text": pa.string(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }
    contracts = {contract.entity: contract for contract in BY_SOURCE["surveys"]}
    landing = LandingWriter(str(stand_ins.landing))
    export = sorted(
        path.rsplit("export_date=", 1)[1].split("/", 1)[0] for path in landing.files("responses")
    )[-1]
    for entity, row in rows.items():
        schema = pa.schema(
            [
                (column.name, arrow_types[column.type])
                for column in contracts[entity].columns
                if column.name != SOURCE_FILE.name  # the loader's, not the export's
            ]
        )
        table = pa.Table.from_pylist([row], schema=schema)
        landing.write(SURVEY_FOLDERS[entity], table, export, name, "csv")


def _plant_case_only_survey(stand_ins) -> CaseOnlySurvey:
    """A post-support survey whose invitation names its case but not the contact (a survey
    tool that knows tickets, not calls): it counts for the case's last contact. A contact
    added to the case later (_plant_contact) becomes the last, and the survey moves to it."""
    with connect(stand_ins.warehouse) as conn:
        case_id, customer_id, email, last_contact_id, started_at = conn.execute(
            "select contacts.case_id, contacts.customer_id, customers.customer_email, "
            "contacts.interaction_id, contacts.started_at "
            "from marts.fct_support_interactions as contacts "
            "inner join staging.stg_crm__customers as customers "
            "on customers.customer_id = contacts.customer_id "
            "where contacts.is_last_contact_of_case and not contacts.has_post_contact_survey "
            "and contacts.case_status not in ('open', 'reopened') "
            "and customers.customer_email is not null "
            "order by contacts.case_id limit 1"
        ).fetchone()
    sent_at = started_at + timedelta(hours=2)
    response_id = 900_000_001  # far above the generator's counters
    invitation = {
        "invitation_id": 900_000_001,
        "survey_id": "ps-v2",
        "touchpoint": "post_support",
        "respondent_email": email,
        "related_case_id": case_id,
        "sent_at": sent_at,
    }
    _write_survey_files(
        stand_ins,
        "planted-d1-case-only",
        {
            "invitations": invitation,
            "survey_responses": {
                "response_id": response_id,
                "invitation_id": 900_000_001,
                "survey_id": "ps-v2",
                "touchpoint": "post_support",
                "respondent_email": email,
                "ltr": 9,
                "csat": 5,
                "ces": 6,
                "sent_at": sent_at,
                "responded_at": sent_at + timedelta(hours=1),
            },
        },
    )
    return CaseOnlySurvey(case_id, customer_id, last_contact_id, response_id, invitation)


def _plant_contact(
    stand_ins, interaction_id: int, case_id: int | None, customer_id: int, started_at
) -> None:
    """A contact of ``customer_id`` on ``case_id`` (None: a contact without a case), shaped
    like a generated one, updated after every contact so far."""
    store = CrmStore(stand_ins.crm_store)
    interactions = store.read("interactions")
    newest = pc.max(interactions.column("updated_at")).as_py()
    contact = interactions.slice(0, 1).to_pylist()[0]
    contact.update(
        interaction_id=interaction_id,
        case_id=case_id,
        customer_id=customer_id,
        started_at=started_at,
        ended_at=started_at + timedelta(minutes=5),
        created_at=newest + timedelta(seconds=1),
        updated_at=newest + timedelta(seconds=1),
    )
    store.write(
        "interactions", pa.Table.from_pylist([contact], schema=interactions.schema), "planted"
    )
    store.touch()


def _post_contact_surveys(conn, case_id: int) -> dict[int, tuple[bool, int | None]]:
    """The case's contacts: whether each is its last, and the survey it is followed by."""
    return {
        interaction_id: (is_last, response_id)
        for interaction_id, is_last, response_id in conn.execute(
            "select interaction_id, is_last_contact_of_case, post_contact_response_id "
            "from marts.fct_support_interactions where case_id = %s",
            (case_id,),
        )
    }


def _numbers_of_contacts_without_a_case(conn) -> dict[int, int]:
    return dict(
        conn.execute(
            "select interaction_id, contact_number from marts.fct_support_interactions "
            "where case_id is null"
        ).fetchall()
    )


def _case_owner_and_contacts(conn, case_id: int) -> tuple[str, int]:
    return conn.execute(
        "select customer_key, contact_count from staging.int_support_cases_followed_up "
        "where case_id = %s",
        (case_id,),
    ).fetchone()


def _followed_up_cases(warehouse) -> tuple[int, int, int]:
    """How many cases there are, how many are followed up, and how many resolved."""
    with connect(warehouse) as conn:
        return conn.execute(
            "select count(*), count(*) filter (where is_followed_up), count(*) filter (where is_resolved) "
            "from staging.int_support_cases_followed_up"
        ).fetchone()


def _order_keys(warehouse) -> dict[int, str]:
    with connect(warehouse) as conn:
        return dict(conn.execute("select order_id, customer_key from marts.fct_orders"))


def test_incremental_builds_equal_a_full_refresh(stand_ins, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    # First build, through the command an operator runs: the incremental facts are created
    # in full, audited and published.
    monkeypatch.setenv("CEM_WAREHOUSE_URL", warehouse.url)
    assert main(["marts", "build", "--full-refresh"]) == 0
    assert "published" in capsys.readouterr().out
    # The first publication leaves marts_build a copy of every logging mart, so that the
    # next build continues incrementally instead of building them in full again.
    _assert_retired_generation_caught_up(warehouse, expect_all=True)
    _assert_stored_in_readers_order(warehouse)

    late_order_id = None
    lifecycle = _lifecycle_inputs(warehouse)
    moved_by_the_date = set()
    counting_triggers = _counting_triggers(warehouse)
    assert len(counting_triggers) == 4 * len(COUNTED_MODELS), counting_triggers
    for day in range(1, DAYS + 1):
        generate_next_day(stand_ins.targets, params=BUSY_DAY)
        if day == 1:
            shared_case = _plant_shared_case(stand_ins)
            case_only_survey = _plant_case_only_survey(stand_ins)
            with connect(warehouse) as conn:
                newest_contact = conn.execute(
                    "select max(started_at) from marts.fct_support_interactions"
                ).fetchone()[0]
            # contacts without a case are numbered together: a first one now, an earlier
            # one on day 3 (renumbering it)
            _plant_contact(
                stand_ins, 900_000_101, None, case_only_survey.customer_id, newest_contact
            )
            cancelled_order_id = _cancel_an_old_order(stand_ins.sales_db)
            referral_id, referred_first_order_id = _cancel_a_referred_customers_first_order(
                warehouse, stand_ins.sales_db, besides=cancelled_order_id
            )
        if day == 2:
            # a later contact on the case-only survey's case: the survey moves to it
            _plant_contact(
                stand_ins,
                900_000_102,
                case_only_survey.case_id,
                case_only_survey.customer_id,
                newest_contact + timedelta(hours=1),
            )
            late_order_id = _plant_late_earlier_order(stand_ins)
            owner_order_id = _plant_newest_order_of(stand_ins, shared_case.owner_email)
            moved_cancellations = _move_cancellations(stand_ins)
        if day == 3:  # not on day 2: re-deriving its orders would mask missed identity changes
            _change_a_product_cost(stand_ins.sales_db)
            _plant_contact(
                stand_ins,
                900_000_103,
                None,
                case_only_survey.customer_id,
                newest_contact - timedelta(hours=1),
            )
            _reexport_naming_the_contact(stand_ins, case_only_survey)
        stand_ins.ingest_all()
        if day == 2:
            # Bringing marts_build up to date fails after this publication: day 3's build
            # must catch up from the generation before the last one, on two deltas.
            _build_with_a_failed_catch_up(monkeypatch, warehouse)
        else:
            build_marts(warehouse)  # incremental, from the previous generation brought up to date
            # Every logging mart is brought up to date from the log.
            _assert_retired_generation_caught_up(warehouse, expect_all=True)
        with connect(warehouse) as conn:
            contacts = _post_contact_surveys(conn, case_only_survey.case_id)
            caseless = _numbers_of_contacts_without_a_case(conn)
        # The case-only survey follows the case's last contact, whichever that is today (the
        # planted one from day 2 on, unless a generated one came later), until its
        # invitation, exported again on day 3, names the contact; the contacts without a
        # case are numbered in the order they started, across days.
        followed = [
            contact
            for contact, (_, survey) in contacts.items()
            if survey == case_only_survey.response_id
        ]
        last = [contact for contact, (is_last, _) in contacts.items() if is_last]
        assert len(last) == 1, (day, contacts)
        assert (900_000_102 in contacts) == (day >= 2), (day, contacts)
        if day < 3:
            assert followed == last, (day, contacts)
        else:
            assert followed == [case_only_survey.last_contact_id], (day, contacts)
        if day == 2:
            assert last[0] != case_only_survey.last_contact_id, "the survey did not move"
        assert caseless.get(900_000_101) == (1 if day < 3 else 2), (day, caseless)
        if day == 3:
            assert caseless.get(900_000_103) == 1, caseless
        if day == 1:
            # The planted contact moved its case to the other customer, with both contacts.
            with connect(warehouse) as conn:
                assert _case_owner_and_contacts(conn, shared_case.case_id) == (
                    shared_case.other_key,
                    shared_case.contacts,
                )
                assert conn.execute(
                    "select bool_and(is_cancelled) from marts.fct_order_lines where order_id = %s",
                    (cancelled_order_id,),
                ).fetchone() == (True,), "the cancelled order's lines do not say so"
                # fct_referrals learns it from fct_orders' log: the referral was not reloaded
                assert (
                    conn.execute(
                        "select referred_first_order_id from marts.fct_referrals where referral_id = %s",
                        (referral_id,),
                    ).fetchone()[0]
                    != referred_first_order_id
                ), "the referral kept its cancelled first order"
            # The generation this build retires gets a column the model does not have (as
            # after a change of the model's columns): it is replaced by a copy of the
            # published table, which the next build continues.
            with connect(warehouse) as conn:
                conn.execute("alter table marts.fct_survey_responses add column retired_extra int")
                conn.commit()
            # A second build with nothing new: both generations now hold day 1, so the next
            # build starts from a table where the late customers' orders are still inferred
            # and only the identity part of the predicate can re-key them.
            publication = build_marts(warehouse)
            assert "other columns" in publication.retired_generation["fct_survey_responses"]
            _assert_retired_generation_caught_up(warehouse, expect_all=True)
            inferred_in_start_state = {
                k for k, v in _order_keys(warehouse).items() if v.startswith("inferred-")
            }
        if day == 2:
            # The shared case's first customer (A) bought, the other did not: the case was
            # recomputed through A and still has both customers' contacts, under B's key.
            with connect(warehouse) as conn:
                assert conn.execute(
                    "select customer_key from marts.fct_orders where order_id = %s",
                    (owner_order_id,),
                ).fetchone() == (shared_case.owner_key,)
                assert _case_owner_and_contacts(conn, shared_case.case_id) == (
                    shared_case.other_key,
                    shared_case.contacts,
                )
            # Only the identity part of the predicate can re-key the day-1 late customers'
            # orders in this build (their CRM records arrived today, the orders did not change).
            keys = _order_keys(warehouse)
            rekeyed = [k for k in inferred_in_start_state if not keys[k].startswith("inferred-")]
            assert rekeyed, "no inferred order got its CRM key when the CRM record arrived"
            # The withdrawn cancellation churns no gap any more; the backdated one churns the
            # second gap (the full recompute below checks every other gap).
            with connect(warehouse) as conn:
                assert _cancellation_churns(conn, moved_cancellations.withdrawn) == []
                backdated_churns = _cancellation_churns(conn, moved_cancellations.backdated)
            assert len(backdated_churns) == 1, backdated_churns
        previous, lifecycle = lifecycle, _lifecycle_inputs(warehouse)
        moved_by_the_date |= _stages_moved_by_the_date_alone(previous, lifecycle)
        # Every day's build continues from the copies the first publication left in
        # marts_build: none rebuilds the per-customer models in full. (Checked before the
        # side refresh below replaces dbt's run files.)
        _assert_per_customer_models_equal_a_full_recompute(warehouse, built_incrementally=True)
        _assert_counts_kept_by_their_producers()
        assert _counting_triggers(warehouse) == counting_triggers, "triggers made again"
        _assert_equal_to_a_side_full_refresh(warehouse)

    with connect(warehouse) as conn:
        late = conn.execute(
            "select customer_order_number, is_first_order from marts.fct_orders where order_id = %s",
            (late_order_id,),
        ).fetchone()
        refunds_after_first_build = conn.execute(
            "select count(*) from raw.refunds where _loaded_at > "
            "(select min(published_at) from ops.mart_publications)"
        ).fetchone()[0]

    # The days moved some customer's stage with nothing else changing (a customer turning
    # at-risk, or ceasing to be new): the published view moved it from the stored dates,
    # and every stored row still equalled a full recompute.
    print(f"stages moved by the as-of date alone: {len(moved_by_the_date)}")
    assert moved_by_the_date, "no stage changed by the as-of date alone: the data misses that case"
    # Refunds of orders loaded before arrived later; the late earlier order renumbered.
    assert refunds_after_first_build > 0
    assert late == (1, True), "the late earlier order is the customer's first purchase"

    # The as-of date set back (the models that depend on it rebuild in full), then forward
    # again in one step: the per-customer models take in what 45 days let in (contacts
    # dated in them, cases resolved, follow-up windows ended, churns and stage changes),
    # and still equal a full recompute.
    with connect(warehouse) as conn:
        latest = conn.execute("select latest_data_date from staging.int_as_of_date").fetchone()[0]
    resolved_late = _plant_late_resolution(stand_ins, latest - timedelta(days=10))
    stand_ins.ingest_all()
    build_marts(warehouse, as_of=latest - timedelta(days=45))
    followed_up_before = _followed_up_cases(warehouse)
    build_marts(warehouse, as_of=latest)
    _assert_per_customer_models_equal_a_full_recompute(warehouse, built_incrementally=True)
    # set back, the purchase days and churn gaps were rebuilt in full by truncate and insert:
    # their triggers counted that too (compared with a full count just above)
    _assert_counts_kept_by_their_producers()
    with connect(warehouse) as conn:
        assert conn.execute(
            "select case_outcome from staging.int_support_cases_followed_up where case_id = %s",
            (resolved_late,),
        ).fetchone() == ("resolved after more contacts",)
    after = _followed_up_cases(warehouse)
    # more cases (contacts dated in the 45 days), more followed up, more resolved
    assert all(now > before for now, before in zip(after, followed_up_before, strict=True)), (
        followed_up_before,
        after,
    )

    build_marts(warehouse, full_refresh=True, publish=False)  # into marts_build only

    _assert_facts_equal(warehouse, "marts_build")

    # Published after a full refresh, the retired generation gets a copy of each mart rebuilt
    # in full; a view over a stored mart goes with the table it reads, and the next build
    # creates it again.
    publication = build_marts(warehouse, full_refresh=True)
    # (dim_customers reads two of them, copied on two connections: its view is dropped once)
    for mart in (
        "fct_customer_churn_stored",
        "fct_customer_repurchase_stored",
        "dim_customers_stored",
    ):
        assert publication.retired_generation[mart].startswith(
            "copied in full (the published build rebuilt it in full)"
        ), publication.retired_generation[mart]
    build_marts(warehouse)
    with connect(warehouse) as conn:
        views = conn.execute(
            "select table_schema, table_name from information_schema.views "
            "where table_schema in ('marts', 'marts_build') "
            "and table_name in ('fct_customer_churn', 'fct_customer_repurchase', 'dim_customers')"
        ).fetchall()
    assert len(views) == 6, views
    # the full refresh replaced the producers' tables: their triggers were made again (the
    # counts are compared with a full count after the next build)
    _assert_counts_kept_by_their_producers()

    # A producer's triggers lost (a --full-refresh of it alone): the next build counts again.
    with connect(warehouse) as conn:
        conn.execute(
            "drop trigger keeps_int_churn_events_counted_by_month_update "
            "on staging.int_purchase_gaps_assessed_for_churn"
        )
        conn.commit()
    build_marts(warehouse)
    with pytest.raises(AssertionError, match="int_churn_events_counted_by_month: counted again"):
        _assert_counts_kept_by_their_producers()
    _assert_per_customer_models_equal_a_full_recompute(
        warehouse, built_incrementally=False, models={}
    )
    build_marts(warehouse)
    _assert_counts_kept_by_their_producers()

    # Counts that no longer match their producer stop its writes, saying what to rebuild.
    with connect(warehouse) as conn:
        purchase_day_id, cell = conn.execute(
            "select purchase_day_id, cast(first_purchase_month as text) || '|' || "
            "cast(active_month as text) from staging.int_orders_aggregated_to_purchase_days "
            "where active_month is not null limit 1"
        ).fetchone()
        conn.execute(
            "delete from staging.int_purchase_days_counted_by_cohort_month "
            "where cohort_activity_cell_id = %s",
            (cell,),
        )
        with pytest.raises(psycopg.errors.RaiseException, match="--full-refresh --select"):
            conn.execute(
                "delete from staging.int_orders_aggregated_to_purchase_days "
                "where purchase_day_id = %s",
                (purchase_day_id,),
            )
        conn.rollback()


def _refund_the_newest_order(sales_db, refund_id: int) -> int:
    """A refund of the order written last (its lines came with it): the order becomes a
    candidate of the next incremental fct_orders, which must sum its lines again."""
    with connect(sales_db) as conn:
        order_id, now = conn.execute(
            "select o.order_id, greatest((select max(updated_at) from orders), "
            "(select max(updated_at) from refunds)) + interval '1 second' "
            "from orders as o where o.status <> 'cancelled' and o.order_total >= 1 "
            "and exists (select from order_lines as l where l.order_id = o.order_id) "
            "order by o.created_at desc, o.order_id desc limit 1"
        ).fetchone()
        conn.execute(
            "insert into refunds (refund_id, order_id, amount, reason, refunded_at, created_at, "
            "updated_at) values (%s, %s, 1.00, 'damaged', %s, %s, %s)",
            (refund_id, order_id, now, now, now),
        )
        conn.commit()
    return order_id


def _assert_fct_orders_equal_a_full_refresh(warehouse) -> None:
    run_dbt(
        warehouse,
        [
            "run",
            "--full-refresh",
            "--select",
            "fct_orders",
            "--vars",
            '{"marts_build_schema": "marts_full"}',
        ],
    )
    with connect(warehouse) as conn:
        differing = conn.execute(
            "select (select count(*) from (select * from marts_build.fct_orders "
            "except all select * from marts_full.fct_orders) as incremental_only), "
            "(select count(*) from (select * from marts_full.fct_orders "
            "except all select * from marts_build.fct_orders) as full_only)"
        ).fetchone()
    assert differing == (0, 0), f"fct_orders: {differing} rows only incremental / only full"


def test_orders_sum_their_lines_when_fct_order_lines_lags_behind_or_is_missing(
    stand_ins, tmp_path, monkeypatch
):
    """fct_orders finds its candidates' lines through fct_order_lines of the same generation
    and raw's rows loaded since the earlier of the two watermarks. A build that failed after
    fct_orders leaves fct_order_lines a day behind; one that failed before fct_order_lines
    was ever built leaves none, and fct_orders then scans raw."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", "+fct_order_lines"])
    generate_next_day(stand_ins.targets, params=BUSY_DAY)
    stand_ins.ingest_all()
    # The day's build stops after fct_orders: fct_order_lines keeps day 0 only.
    run_dbt(warehouse, ["run", "--select", "+fct_orders"])
    lagging = _refund_the_newest_order(stand_ins.sales_db, refund_id=900_000_101)
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", ORDERS_AND_THEIR_CHANGES])
    # fct_orders has moved on from the changed orders handed to it: alone, it would miss
    # whatever changed since, so it refuses to run.
    with pytest.raises(CemError, match="was built for another state of fct_orders"):
        run_dbt(warehouse, ["run", "--select", "fct_orders"])
    with connect(warehouse) as conn:
        line_count, refunded = conn.execute(
            "select line_count, refunded_amount from marts_build.fct_orders where order_id = %s",
            (lagging,),
        ).fetchone()
        stored_lines = conn.execute(
            "select count(*) from marts_build.fct_order_lines where order_id = %s", (lagging,)
        ).fetchone()[0]
        conn.execute("drop table marts_build.fct_order_lines")
        conn.commit()
    assert stored_lines == 0, "the refunded order's lines are in fct_order_lines already"
    assert line_count > 0 and refunded >= 1
    _assert_fct_orders_equal_a_full_refresh(warehouse)

    _refund_the_newest_order(stand_ins.sales_db, refund_id=900_000_102)
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", ORDERS_AND_THEIR_CHANGES])
    _assert_fct_orders_equal_a_full_refresh(warehouse)


def _move_orders_from_the_front(sales_db) -> tuple[int, int]:
    """Two customers' first purchases move where their later orders must be numbered again
    from the place they left: one to another customer (its email and account), one to after
    the customer's last order. Written to the sales system as updates."""
    with connect(sales_db) as conn:
        customers = _repeat_customers(conn, 3)
        (_, rekeyed, _, _), (_, moved_later, _, last_at), (_, receiving, _, _) = customers
        now = _after_every_order_update(conn)
        conn.execute(
            "update orders as o set customer_email = r.customer_email, "
            "sales_account_id = r.sales_account_id, updated_at = %s "
            "from orders as r where o.order_id = %s and r.order_id = %s",
            (now, rekeyed, receiving),
        )
        conn.execute(
            "update orders set ordered_at = %s + interval '1 day', updated_at = %s "
            "where order_id = %s",
            (last_at, now, moved_later),
        )
        conn.commit()
    return rekeyed, moved_later


def test_orders_numbered_again_from_the_place_an_order_left(stand_ins, tmp_path, monkeypatch):
    """An incremental fct_orders numbers a key's orders again only from the earliest place a
    re-derived order holds, before or after the change: a purchase moved to another
    customer, or to after the customer's last order, renumbers the orders that followed it
    in its old place (each one number lower), which no new row of that key points to."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", "+fct_orders"])
    with connect(warehouse) as conn:
        before = dict(
            conn.execute("select order_id, customer_order_number from marts_build.fct_orders")
        )
    moved = _move_orders_from_the_front(stand_ins.sales_db)
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", "+fct_orders"])
    with connect(warehouse) as conn:
        after = dict(
            conn.execute("select order_id, customer_order_number from marts_build.fct_orders")
        )
    followers = [
        order_id
        for order_id, number in after.items()
        if order_id not in moved and number and before.get(order_id) == number + 1
    ]
    # the orders that followed each moved purchase now count one purchase less
    assert len(followers) >= 4, f"only {followers} were numbered one lower"
    _assert_fct_orders_equal_a_full_refresh(warehouse)
    # Both orders were loaded again with another email, account or time: their observations
    # are replaced, not only given the new load time, and identity is resolved again.
    identity = ("int_identity_observations", "int_customers_resolved_across_sources")
    _assert_per_customer_models_equal_a_full_recompute(
        warehouse,
        built_incrementally=True,
        models={model: PER_CUSTOMER_MODELS[model] for model in identity},
        counted={},  # this test builds the models up to fct_orders only
    )


def _set_order_status(sales_db, order_id: int, status: str) -> None:
    with connect(sales_db) as conn:
        now = _after_every_order_update(conn)
        conn.execute(
            "update orders set status = %s, updated_at = %s where order_id = %s",
            (status, now, order_id),
        )
        conn.commit()


def test_order_lines_changed_back_after_a_failed_catch_up(stand_ins, tmp_path, monkeypatch):
    """fct_order_lines re-derives a stored line of an order in scope only when what the line
    takes from its order differs from its row in either generation. An order is cancelled,
    published with a catch-up that fails, then delivered again: the generation being built
    still holds its lines as not cancelled, as the order now is, while the published one
    says cancelled. The lines must be written all the same, so that the catch-up after the
    swap brings the retired generation (the one that said cancelled) back in line."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    build_marts(warehouse, full_refresh=True)
    order_id = _cancel_an_old_order(stand_ins.sales_db)
    stand_ins.ingest_all()
    _build_with_a_failed_catch_up(monkeypatch, warehouse)
    cancelled = "select bool_and(is_cancelled) from {}.fct_order_lines where order_id = %s"
    with connect(warehouse) as conn:
        assert conn.execute(cancelled.format("marts"), (order_id,)).fetchone() == (True,)
        assert conn.execute(cancelled.format("marts_build"), (order_id,)).fetchone() == (False,)

    _set_order_status(stand_ins.sales_db, order_id, "delivered")
    stand_ins.ingest_all()
    build_marts(warehouse)
    with connect(warehouse) as conn:
        for schema in ("marts", "marts_build"):
            assert conn.execute(cancelled.format(schema), (order_id,)).fetchone() == (False,), (
                f"{schema}.fct_order_lines still says the order delivered again is cancelled"
            )
    _assert_retired_generation_caught_up(warehouse, expect_all=True)


def _update_crm_customer(stand_ins, customer_id: int, **fields) -> None:
    """The CRM customer's ``fields`` take the values given, updated after every other CRM
    customer."""
    store = CrmStore(stand_ins.crm_store)
    customers = store.read("customers")
    newest = pc.max(customers.column("updated_at")).as_py()
    customer = customers.filter(pc.equal(customers.column("customer_id"), customer_id))
    (row,) = customer.to_pylist()
    row.update(**fields, updated_at=newest + timedelta(seconds=1))
    store.write("customers", pa.Table.from_pylist([row], schema=customers.schema), "planted")
    store.touch()


def test_orders_keyed_back_after_a_failed_catch_up(stand_ins, tmp_path, monkeypatch):
    """fct_orders re-derives an order a CRM change may have re-keyed only when its key now
    differs from its key in either generation. A CRM customer takes an inferred customer's
    email, is published with a catch-up that fails, then takes its own email back: the
    generation being built never saw the move, so its orders of both emails already hold
    the keys they have now, while the published generation holds the moved ones. Those
    orders must be written all the same, including the ones keyed to the CRM customer only
    in the published generation, so that the catch-up after the swap brings the retired
    generation back in line; and fct_order_lines, which follows the orders fct_orders
    writes, must give each of their lines its order's key in both generations."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    # an email no CRM customer has: its order gets an inferred key
    inferred_email = "keyed.back@example.com"
    _plant_newest_order_of(stand_ins, inferred_email)
    stand_ins.ingest_all()
    build_marts(warehouse, full_refresh=True)
    with connect(warehouse) as conn:
        customer_id, own_email = conn.execute(
            "select identities.customer_id, identities.identifier "
            "from staging.int_customers_resolved_across_sources as identities "
            "where identities.identifier_type = 'email' and not identities.is_inferred "
            "and exists (select from marts.fct_orders as o "
            "where o.customer_email = identities.identifier) "
            # no other CRM customer shares the email: without it, the email turns inferred
            "and not exists (select from staging.int_identity_observations as o "
            "where o.source = 'crm' and o.customer_email = identities.identifier "
            "and o.customer_id <> identities.customer_id) "
            "order by identities.customer_id limit 1"
        ).fetchone()
    keys_by_email = (
        "select customer_email, array_agg(distinct customer_key) from {}.fct_orders "
        "where customer_email = any(%s) group by 1"
    )
    emails = [own_email, inferred_email]

    def keys_of_both_emails(schema: str) -> dict[str, list[str]]:
        """Their orders' keys, once each line has been checked to hold its order's key."""
        with connect(warehouse) as conn:
            astray = conn.execute(
                f"select count(*) from {schema}.fct_order_lines as line "
                f"join {schema}.fct_orders as o on o.order_id = line.order_id "
                "where o.customer_email = any(%s) and line.customer_key <> o.customer_key",
                (emails,),
            ).fetchone()[0]
            assert astray == 0, f"{schema}: {astray} lines hold another key than their order"
            return dict(conn.execute(keys_by_email.format(schema), (emails,)).fetchall())

    as_they_were = keys_of_both_emails("marts")
    assert as_they_were[own_email] == [str(customer_id)]
    assert as_they_were[inferred_email][0].startswith("inferred-")

    # The CRM customer takes the inferred email (its own orders go to an inferred key);
    # the catch-up after that build fails, so marts_build keeps the keys as they were.
    _update_crm_customer(stand_ins, customer_id, email=inferred_email)
    stand_ins.ingest_all()
    _build_with_a_failed_catch_up(monkeypatch, warehouse)
    moved = keys_of_both_emails("marts")
    assert moved[inferred_email] == [str(customer_id)]
    assert moved[own_email][0].startswith("inferred-")
    assert keys_of_both_emails("marts_build") == as_they_were

    # Its own email back: every order has the key it had before the move, which the
    # generation now being built holds already.
    _update_crm_customer(stand_ins, customer_id, email=own_email)
    stand_ins.ingest_all()
    build_marts(warehouse)
    for schema in ("marts", "marts_build"):
        assert keys_of_both_emails(schema) == as_they_were, (
            f"{schema}.fct_orders kept keys the CRM customer's email no longer gives"
        )
    _assert_retired_generation_caught_up(warehouse, expect_all=True)


def test_observations_leave_a_record_loaded_again_unchanged(stand_ins, tmp_path, monkeypatch):
    """int_identity_observations keeps its watermark in ops.model_watermarks, not in its
    rows. An order loaded again for its status alone names the same email, account and time:
    its observation stays as it is (not rewritten, not logged), so identity resolution does
    not re-resolve it. A CRM record loaded again for its segment alone is still replaced and
    logged (the churn gaps read CRM fields from the log). The watermark moves to the newest
    record read, a build with nothing new reads nothing again, and a full refresh starts
    the new table's watermark afresh."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    observations = "staging.int_identity_observations"
    run_dbt(warehouse, ["run", "--select", "+int_identity_observations"])

    sources = (
        "stg_crm__customers",
        "stg_sales__orders",
        "stg_surveys__invitations",
        "stg_surveys__responses",
    )

    def state(order_id: int, customer_id: int) -> dict:
        with connect(warehouse) as conn:
            (watermark,) = conn.execute(
                "select loaded_through from ops.model_watermarks where reader like %s",
                ("int_identity_observations#%",),
            ).fetchone()
            return {
                "watermark": watermark,
                "newest_loaded": conn.execute(
                    "select greatest("
                    + ", ".join(
                        f"(select max(loaded_at) from staging.{source})" for source in sources
                    )
                    + ")"
                ).fetchone()[0],
                "order_row": conn.execute(
                    f"select ctid::text from {observations} where observation_id = %s",
                    (f"order:{order_id}",),
                ).fetchone(),
                "crm_row": conn.execute(
                    f"select ctid::text from {observations} where observation_id = %s",
                    (f"crm_customer:{customer_id}",),
                ).fetchone(),
                "last_change": conn.execute(
                    "select coalesce(max(change_id), 0) from ops.mart_key_changes"
                ).fetchone()[0],
            }

    def logged_since(change_id: int) -> set[str]:
        with connect(warehouse) as conn:
            return {
                key
                for (key,) in conn.execute(
                    "select key_value from ops.mart_key_changes where change_id > %s "
                    "and producer = %s",
                    (change_id, observations),
                )
            }

    crm_customer = CrmStore(stand_ins.crm_store).read("customers").slice(0, 1).to_pylist()[0]
    customer_id = crm_customer["customer_id"]
    other_segment = next(
        s for s in ("consumer", "small_business", "enterprise") if s != crm_customer["segment"]
    )
    with connect(stand_ins.sales_db) as conn:
        order_id, email, status = conn.execute(
            "select order_id, lower(trim(customer_email)), status from orders "
            "where customer_email is not null and status in ('placed', 'shipped', 'delivered') "
            # another customer's: the CRM record's replacement logs its own email
            "and lower(trim(customer_email)) <> lower(trim(%s)) order by order_id limit 1",
            (crm_customer["email"],),
        ).fetchone()
    before = state(order_id, customer_id)
    assert before["watermark"] == before["newest_loaded"], "the first build's watermark"

    _set_order_status(
        stand_ins.sales_db, order_id, "shipped" if status != "shipped" else "delivered"
    )
    _update_crm_customer(stand_ins, customer_id, segment=other_segment)
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", "int_identity_observations"])
    after = state(order_id, customer_id)
    assert after["newest_loaded"] > before["watermark"], "nothing was loaded again"
    assert after["watermark"] == after["newest_loaded"], "the watermark did not move on"
    assert after["order_row"] == before["order_row"], "the unchanged observation was rewritten"
    logged = logged_since(before["last_change"])
    assert f"email:{email}" not in logged, "the unchanged order's email was logged"
    assert str(customer_id) in logged, "the CRM record loaded again was not logged"
    assert after["crm_row"] != before["crm_row"], "the CRM record loaded again was not replaced"
    _assert_per_customer_models_equal_a_full_recompute(
        warehouse,
        built_incrementally=True,
        models={"int_identity_observations": PER_CUSTOMER_MODELS["int_identity_observations"]},
        counted={},
    )

    # Nothing new: nothing read, replaced or logged again; the watermark stays.
    run_dbt(warehouse, ["run", "--select", "int_identity_observations"])
    again = state(order_id, customer_id)
    assert again["watermark"] == after["watermark"]
    assert again["crm_row"] == after["crm_row"], "a record read again below the watermark"
    assert not logged_since(after["last_change"])

    # A full refresh replaces the table: the old table's watermark goes, the new one's is
    # the newest record, and it is the only one kept.
    run_dbt(warehouse, ["run", "--full-refresh", "--select", "int_identity_observations"])
    with connect(warehouse) as conn:
        kept = conn.execute(
            "select reader, loaded_through from ops.model_watermarks where reader like %s",
            ("int_identity_observations#%",),
        ).fetchall()
        (oid,) = conn.execute(f"select cast(cast('{observations}' as regclass) as oid)").fetchone()
    assert kept == [(f"int_identity_observations#{oid}", again["newest_loaded"])], kept


def test_added_records_that_change_no_identifier_are_not_resolved_again(
    stand_ins, tmp_path, monkeypatch
):
    """A new order of an account, naming the account's latest email and placed after the
    first time the account and the email were seen, changes neither, nor does a CRM record
    loaded again for its segment: identity observations do not log those emails and
    accounts (the CRM record's customer key still is), so identity resolution does not read
    their observations again. A new order naming another email moves the account's latest
    email, one placed before the first time an account or email was seen moves that time,
    a new account has no row yet, and a CRM record's new email moves the old and the new
    one: all of them are logged, and identity resolution still equals a full recompute."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = stand_ins.warehouse
    stand_ins.ingest_all()
    resolution = "staging.int_customers_resolved_across_sources"
    run_dbt(warehouse, ["run", "--select", "+int_customers_resolved_across_sources"])
    with connect(warehouse) as conn:
        # accounts whose latest email sales has seen: a new order naming it is no news
        accounts = conn.execute(
            f"select account.identifier, account.customer_email, "
            f"least(account.first_seen_at, email.first_seen_at) "
            f"from {resolution} as account "
            f"join {resolution} as email "
            f"on email.customer_identifier_id = 'email:' || account.customer_email "
            f"where account.identifier_type = 'sales_account' and email.is_seen_in_sales "
            f"order by account.identifier limit 3"
        ).fetchall()
        (last_change,) = conn.execute(
            "select coalesce(max(change_id), 0) from ops.mart_key_changes"
        ).fetchone()
    (quiet_account, quiet_email, _), (moved_account, moved_from, _), early = accounts
    early_account, early_email, early_first_seen = early
    assert moved_from != quiet_email, "two accounts of one email: pick others"
    with connect(stand_ins.sales_db) as conn:
        newest = conn.execute("select max(ordered_at) from orders").fetchone()[0]
        now = _after_every_order_update(conn)
    planted = [
        (900_000_011, quiet_account, quiet_email, newest),
        # the account's latest email is now the quiet account's
        (900_000_012, moved_account, quiet_email, newest),
        (900_000_013, early_account, early_email, early_first_seen - timedelta(days=1)),
        (900_000_014, "SA-NEW-ACCOUNT", quiet_email, newest),
    ]
    for order_id, account, email, ordered_at in planted:
        _plant_order(stand_ins, order_id, account, email, ordered_at, now)
    crm = CrmStore(stand_ins.crm_store).read("customers").slice(0, 2).to_pylist()
    (resegmented, readdressed) = crm
    other_segment = next(
        s for s in ("consumer", "small_business", "enterprise") if s != resegmented["segment"]
    )
    _update_crm_customer(stand_ins, resegmented["customer_id"], segment=other_segment)
    new_address = f"moved-{readdressed['customer_id']}@example.com"
    _update_crm_customer(stand_ins, readdressed["customer_id"], email=new_address)
    stand_ins.ingest_all()
    run_dbt(warehouse, ["run", "--select", "int_identity_observations"])
    with connect(warehouse) as conn:
        logged = {
            key
            for (key,) in conn.execute(
                "select key_value from ops.mart_key_changes where change_id > %s "
                "and producer = 'staging.int_identity_observations'",
                (last_change,),
            )
        }
    assert f"sales_account:{quiet_account}" not in logged, logged
    assert f"email:{quiet_email}" not in logged, logged
    assert f"sales_account:{moved_account}" in logged, logged
    assert {f"sales_account:{early_account}", f"email:{early_email}"} <= logged, logged
    assert "sales_account:SA-NEW-ACCOUNT" in logged, logged
    assert str(resegmented["customer_id"]) in logged, "the CRM record loaded again"
    assert f"email:{_normalized(resegmented['email'])}" not in logged, logged
    assert {
        str(readdressed["customer_id"]),
        f"email:{_normalized(readdressed['email'])}",
        f"email:{new_address}",
    } <= logged, logged

    run_dbt(warehouse, ["run", "--select", "int_customers_resolved_across_sources"])
    with connect(warehouse) as conn:
        keys = dict(
            conn.execute(
                f"select identifier, customer_key from {resolution} "
                "where customer_identifier_id = any(%s)",
                ([f"sales_account:{moved_account}", f"email:{quiet_email}"],),
            ).fetchall()
        )
    assert keys[moved_account] == keys[quiet_email], "the account did not follow its new email"
    identity = ("int_identity_observations", "int_customers_resolved_across_sources")
    _assert_per_customer_models_equal_a_full_recompute(
        warehouse,
        built_incrementally=True,
        models={model: PER_CUSTOMER_MODELS[model] for model in identity},
        counted={},
    )


def _normalized(email: str) -> str:
    """An email as identity observations store it (macros/normalize_email.sql)."""
    return email.strip().lower()
