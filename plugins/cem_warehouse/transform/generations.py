"""After a publication, bring the retired generation of the incremental marts up to date.

The swap leaves the previous marts in ``marts_build``, where the next build starts. An
incremental mart there is one build behind the published one, so the next build would
re-derive two deltas (the one it was published with, again, and the new one), and every
per-customer model reading its change log would recompute the customers of both.

Every row where the two generations of a logging mart differ was written (or, for a
reader, removed) by the builds since the last publication, and the change log names each
by its unique key (macros/change_log.sql), so after the swap those rows are replaced in
the retired table from the published one, by primary key, without scanning either. A mart
that reads the log itself (``dim_customers``) takes over the published table's position in
the log too, in the same transaction, so it continues from there.

A mart the published build rebuilt in full (a null key in the log) is copied whole: the
log does not say which rows changed, and after a ``--full-refresh`` for a change of logic
every row may have; so is one whose retired table has other columns (the model changed
them), as a new table shaped like the published one, and one ``marts_build`` has no table
for (the first publication, or a mart new in this version): without the copy the next
build would build it, and every per-customer model reading its log, in full again.
Skipped, with the reason recorded in ``ops.mart_publications.retired_generation``, when
the previous publication predates the change-log position; a skipped mart is caught up by
the next build from its own watermark and position, as before. Nothing here is visible to
readers: ``marts_build`` is not theirs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from cem_warehouse.errors import CemError
from cem_warehouse.transform.dbt import dbt_target_dir
from cem_warehouse.transform.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

log = logging.getLogger(__name__)

LOGGING_STRATEGY = "delete_insert_logging_keys"
READING_STRATEGY = "replace_changed_keys"


@dataclass(frozen=True)
class LoggedMart:
    """An incremental mart that logs the unique key of every row it writes or removes."""

    name: str
    unique_key: str
    # the producer name under which ops.mart_key_changes holds those unique keys
    rows_log: str
    # reads the change log itself (change_log_producers), with a position per physical
    # table (see change_log_reader): after the catch-up, the retired table takes over the
    # published table's position
    reads_change_log: bool
    # read by index-only scans (its config's meta `vacuum_after_catch_up`): the retired
    # table is vacuumed once caught up (see _vacuum_for_index_only_scans)
    vacuumed_after_catch_up: bool = False


def logged_marts(manifest: dict) -> list[LoggedMart]:
    """The marts of the dbt project whose changed rows the change log names by unique key:
    facts replacing rows with ``delete_insert_logging_keys`` (they log the keys of the rows
    they write as ``<producer>#rows``), and readers that log the keys they replace when
    that key is their unique key (``dim_customers``)."""
    marts = []
    for node in manifest["nodes"].values():
        config = node.get("config", {})
        unique_key = config.get("unique_key")
        if (
            node.get("resource_type") != "model"
            or node.get("schema") != BUILD_SCHEMA
            or config.get("materialized") != "incremental"
            or not isinstance(unique_key, str)
        ):
            continue
        name = node["alias"] or node["name"]
        strategy = config.get("incremental_strategy")
        if strategy == LOGGING_STRATEGY:
            rows_log = f"{BUILD_SCHEMA}.{name}#rows"
        elif strategy == READING_STRATEGY and config.get("change_log_replaced_key") == unique_key:
            rows_log = f"{BUILD_SCHEMA}.{name}"
        else:
            continue
        marts.append(
            LoggedMart(
                name=name,
                unique_key=unique_key,
                rows_log=rows_log,
                # a reader, whatever its strategy: fct_referrals replaces rows like a
                # fact but also reads fct_orders' log
                reads_change_log=bool(config.get("change_log_producers")),
                vacuumed_after_catch_up=bool(
                    (config.get("meta") or {}).get("vacuum_after_catch_up", False)
                ),
            )
        )
    return sorted(marts, key=lambda mart: mart.name)


def _manifest() -> dict:
    """The manifest of the build just published: run_dbt's, or the one Cosmos renders from."""
    from cem_warehouse.transform.manifest import ensure_manifest, manifest_path

    for candidate in (dbt_target_dir() / "manifest.json", manifest_path()):
        if candidate.exists():
            return json.loads(Path(candidate).read_text())
    return json.loads(ensure_manifest().read_text())


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
        "where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped "
        "order by a.attnum",
        (f'{schema}."{table}"',),
    ).fetchall()


def _copy_whole(conn: psycopg.Connection, name: str, column_list: sql.Composable) -> int:
    published = sql.Identifier(PUBLISHED_SCHEMA, name)
    retired = sql.Identifier(BUILD_SCHEMA, name)
    copy = sql.Identifier(BUILD_SCHEMA, f"{name}__copy")
    conn.execute(sql.SQL("drop table if exists {}").format(copy))
    conn.execute(
        sql.SQL("create table {} (like {} including all excluding indexes)").format(copy, published)
    )
    copied = conn.execute(
        sql.SQL("insert into {copy} ({columns}) select {columns} from {published}").format(
            copy=copy, columns=column_list, published=published
        )
    ).rowcount
    definitions = [
        row[0]
        for row in conn.execute(
            "select pg_get_indexdef(indexrelid) from pg_index where indrelid = to_regclass(%s)",
            (f'{PUBLISHED_SCHEMA}."{name}"',),
        )
    ]
    for definition in definitions:
        # "CREATE [UNIQUE] INDEX <name> ON <table> USING ...": the same index, named by
        # PostgreSQL, on the copy.
        match = re.match(
            r"^(CREATE (?:UNIQUE )?INDEX) .+? ON (?:ONLY )?\S+ (USING .*)$", definition
        )
        if match is None:
            raise CemError(f"cannot copy index of {published.as_string(conn)}: {definition}")
        conn.execute(
            sql.SQL("{} on {} {}").format(sql.SQL(match.group(1)), copy, sql.SQL(match.group(2)))
        )
    # A mart whose rows are kept counted (ops.keep_row_count, dbt post-hook keep_row_count)
    # keeps them in its copy too, from the rows just copied: its next audit reads the count
    # rather than scanning it. `like` copies no triggers.
    conn.execute(
        "select ops.keep_row_count(to_regclass(%s), %s) "
        "where exists (select from ops.kept_row_counts where counted_table = to_regclass(%s))",
        (copy.as_string(conn), copied, published.as_string(conn)),
    )
    conn.execute("set local lock_timeout = '30s'")
    # The mart views over the retired table were dropped before the catch-up began
    # (_drop_views_over); any other dependent object makes the DROP fail, and the failure
    # is recorded.
    conn.execute(sql.SQL("drop table if exists {}").format(retired))
    conn.execute(sql.SQL("alter table {} rename to {}").format(copy, sql.Identifier(name)))
    # Analyzed now, with the copy's rows recorded as counted (ops.analyze_when_stale), so
    # the next build, starting from the copy, does not analyze it again.
    conn.execute("select ops.analyze_when_stale(%s)", (f'{BUILD_SCHEMA}."{name}"',))
    return copied


@dataclass(frozen=True)
class _Plan:
    """What the catch-up does to one mart: ``skipped`` (why not), else a copy of the whole
    published table when ``copy_reason`` says why the logged rows are not enough, else
    those rows."""

    skipped: str | None = None
    copy_reason: str | None = None
    columns: tuple[tuple[str, str], ...] = ()


def _plan(conn: psycopg.Connection, mart: LoggedMart, since: int | None, until: int) -> _Plan:
    """``since`` is the previous publication's position in the change log (None: no
    publication recorded one)."""
    retired_table = conn.execute("select to_regclass(%s)", (f'{BUILD_SCHEMA}."{mart.name}"',))
    missing = retired_table.fetchone()[0] is None
    if since is None and not missing:
        return _Plan(skipped="no earlier publication recorded its position in the change log")
    columns = tuple(_columns(conn, PUBLISHED_SCHEMA, mart.name))
    if not columns:
        return _Plan(
            skipped=f"{PUBLISHED_SCHEMA} has no {mart.name} (not built by this publication)"
        )
    if missing:
        return _Plan(
            copy_reason=f"{BUILD_SCHEMA} had none: the first publication, or a new mart",
            columns=columns,
        )
    if list(columns) != _columns(conn, BUILD_SCHEMA, mart.name):
        return _Plan(copy_reason="the retired table had other columns", columns=columns)
    rebuilt_in_full = conn.execute(
        "select exists (select from ops.mart_key_changes where producer = %s "
        "and change_id > %s and change_id <= %s and key_value is null)",
        (f"{BUILD_SCHEMA}.{mart.name}", since, until),
    ).fetchone()[0]
    if rebuilt_in_full:
        return _Plan(copy_reason="the published build rebuilt it in full", columns=columns)
    return _Plan(columns=columns)


def _drop_views_over(conn: psycopg.Connection, tables: list[str]) -> None:
    """Drop the views of ``marts_build`` that read any of ``tables`` (``marts_build`` tables
    about to be replaced by a copy; one that does not exist has none), in the caller's
    transaction: the next build creates them again over the copies.

    One view can read two such tables (dim_customers reads dim_customers_stored and
    fct_customer_churn_stored), and those are copied on two connections whose transactions
    commit only together: had each copy dropped the view itself, the second would have
    waited for the first's lock until the lock timeout. Any other object depending on a
    view makes its DROP fail, and the catch-up's failure is recorded."""
    views = [
        view
        for (view,) in conn.execute(
            "select distinct cast(cast(view.oid as regclass) as text) from pg_depend as dependency "
            "join pg_rewrite as rule on rule.oid = dependency.objid "
            "join pg_class as view on view.oid = rule.ev_class "
            "join pg_namespace as namespace on namespace.oid = view.relnamespace "
            "where dependency.classid = 'pg_rewrite'::regclass "
            "and dependency.refobjid in (select to_regclass(name) from unnest(%s::text[]) as name) "
            "and view.oid <> dependency.refobjid "
            "and view.relkind = 'v' and namespace.nspname = %s",
            ([f'{BUILD_SCHEMA}."{table}"' for table in tables], BUILD_SCHEMA),
        ).fetchall()
    ]
    for view in views:
        conn.execute(sql.SQL("drop view if exists {}").format(sql.SQL(view)))


def _catch_up(
    conn: psycopg.Connection, mart: LoggedMart, plan: _Plan, since: int | None, until: int
) -> str:
    """Bring one mart's retired table up to the published one, as ``plan`` says; ``since``
    is the previous publication's position in the change log (None: no publication
    recorded one)."""
    if plan.skipped:
        return f"skipped: {plan.skipped}"
    columns = list(plan.columns)
    published = sql.Identifier(PUBLISHED_SCHEMA, mart.name)
    retired = sql.Identifier(BUILD_SCHEMA, mart.name)
    column_list = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
    if plan.copy_reason:
        # Nothing says which rows changed, and they may all have (a --full-refresh after a
        # change of logic): left as it is, the retired table would be caught up from its
        # watermark and keep every older row as the old logic derived it. With other
        # columns (the model changed them) it cannot be caught up at all. So a copy of the
        # published table replaces it: loaded first, its indexes built afterwards
        # (inserting 4.9M orders into a table with its six indexes took 79 s at 1M
        # customers). DROP waits for a query still reading the retired (formerly
        # published) table: up to the lock timeout, then the catch-up fails and is recorded.
        copied = _copy_whole(conn, mart.name, column_list)
        outcome = f"copied in full ({plan.copy_reason}): {copied} rows"
    else:
        # Exactly the rows where the generations differ: every row the builds since the
        # last publication wrote or (readers) removed, by unique key. Collected and analyzed
        # first, so the planner knows how few they are; while they are few, it must read
        # both tables by index (PROBE_BY_INDEX_UNDER_SHARE).
        conn.execute("drop table if exists retired_generation_rows")
        keys = conn.execute(
            sql.SQL(
                "create temp table retired_generation_rows on commit drop as "
                "select distinct cast(key_value as {key_type}) as row_key "
                "from ops.mart_key_changes where producer = %s and change_id > %s "
                "and change_id <= %s and key_value is not null"
            ).format(key_type=sql.SQL(dict(columns)[mart.unique_key])),
            (mart.rows_log, since, until),
        ).rowcount
        conn.execute("analyze retired_generation_rows")
        probe_by_index = _is_small_share(conn, keys, f'{PUBLISHED_SCHEMA}."{mart.name}"')
        # While they are few, the keys go to both tables as one array, which the index scan
        # sorts: its leaf pages, and the pages of a table stored in key order, are then read
        # once each and in order. As `in (select ...)`, the keys were hashed to make them
        # distinct and probed in the hash's order. At 1M customers, after three days' delta,
        # dim_customers_stored's 43k logged rows took 116-123 ms to delete and 217-237 ms to
        # insert, against 204-219 ms and 380-384 ms (docs/operations/marts.md, "Stop 61").
        in_scope = sql.SQL(
            "{} = any(array(select row_key from retired_generation_rows))"
            if probe_by_index
            else "{} in (select row_key from retired_generation_rows)"
        ).format(sql.Identifier(mart.unique_key))
        if probe_by_index:
            conn.execute("set local enable_hashjoin = off")
            conn.execute("set local enable_mergejoin = off")
        deleted = conn.execute(
            sql.SQL("delete from {retired} where {in_scope}").format(
                retired=retired, in_scope=in_scope
            )
        ).rowcount
        # In unique-key order: the keys come out of a hash of the log, at random, and each
        # row inserted at random fetches a leaf page of the unique index at random (at 1M
        # customers fct_order_lines' is 239 MB, against 128 MB of shared buffers for every
        # table). One day's catch-up of every mart there, one after another and rolled
        # back, took 1.77-2.38 s in key order against 2.00-2.47 s as the keys came, eight
        # times each (docs/operations/marts.md, "Stop 56").
        written = conn.execute(
            sql.SQL(
                "insert into {retired} ({columns}) select {columns} from {published} "
                "where {in_scope} order by {key}"
            ).format(
                retired=retired,
                columns=column_list,
                published=published,
                in_scope=in_scope,
                key=sql.Identifier(mart.unique_key),
            )
        ).rowcount
        if probe_by_index:
            # The worker's transaction goes on with its next mart.
            conn.execute("set local enable_hashjoin to default")
            conn.execute("set local enable_mergejoin to default")
        outcome = f"caught up: {deleted} rows removed, {written} written"
    if mart.reads_change_log:
        # The table now holds what the published one computed, from the same position.
        conn.execute(
            "insert into ops.mart_change_positions (consumer, change_id, as_of_date, built_at) "
            "select %(name)s || '#' || cast(cast(to_regclass(%(retired)s) as oid) as text), "
            "change_id, as_of_date, built_at from ops.mart_change_positions "
            "where consumer = %(name)s || '#' || cast(cast(to_regclass(%(published)s) as oid) as text) "
            "on conflict (consumer) do update set change_id = excluded.change_id, "
            "as_of_date = excluded.as_of_date, built_at = excluded.built_at",
            {
                "name": mart.name,
                "retired": f'{BUILD_SCHEMA}."{mart.name}"',
                "published": f'{PUBLISHED_SCHEMA}."{mart.name}"',
            },
        )
    return outcome


# Under this share of a mart's rows, the rows to replace are found by probes of its unique
# index, one per key, rather than by the planner's choice: it priced hashing the keys
# against a scan of the whole table below 76k probes. At 1M customers, after three days'
# delta, fct_order_lines' delete and insert scanned its 11.4M rows once each (2.6 s and
# 3.3 s; 0.18 s and 1.1 s by probes) and fct_orders' its 5.1M (1.2 s and 2.0 s; 0.15 s and
# 1.4 s). The strategy replace_changed_keys draws the line at the same share
# (macros/change_log.sql, recomputed_share).
PROBE_BY_INDEX_UNDER_SHARE = 0.1


def _is_small_share(conn: psycopg.Connection, keys: int, table: str) -> bool:
    """Whether ``keys`` rows are fewer than ``PROBE_BY_INDEX_UNDER_SHARE`` of the rows
    ``table`` holds, by its planner estimate. A table never analyzed (no estimate) is left
    to the planner."""
    estimate = conn.execute(
        "select reltuples from pg_class where oid = to_regclass(%s) and reltuples > 0",
        (table,),
    ).fetchone()
    return estimate is not None and keys < PROBE_BY_INDEX_UNDER_SHARE * estimate[0]


# Both cores: the marts are independent tables, and replacing rows (or copying a whole
# mart) is one backend's work each. At 1M customers the steady-state catch-up took 5.2 s
# one mart after another (fct_orders 2.1 s, dim_customers 1.7 s, fct_order_lines 1.3 s).
CATCH_UP_CONNECTIONS = 2


def catch_up_retired_generation(
    location: WarehouseLocation, *, publication_id: int, until_change_id: int, lock: str
) -> dict[str, str]:
    """Bring every logging mart in ``marts_build`` up to the generation just published.

    Runs after the swap has committed. The marts are caught up side by side, on
    ``CATCH_UP_CONNECTIONS`` connections, each in a transaction of its own that commits
    only once every mart has been caught up: any failure rolls all of them back and
    raises, as one transaction would. (A crash between those commits leaves each mart
    either caught up or as it was, with its own position in the log: the next build
    catches up the latter from there, as after a failed catch-up.) ``lock`` (the
    publishers' advisory lock) is held throughout, on a connection of its own, so no other
    publication swaps the schemas meanwhile. Returns, per mart, what was done or why it
    was skipped.
    """
    marts = logged_marts(_manifest())
    outcomes: dict[str, str] = {}
    with connect(location) as coordinator, coordinator.transaction():
        coordinator.execute(lock)
        row = coordinator.execute(
            "select change_log_id from ops.mart_publications where publication_id < %s "
            "order by publication_id desc limit 1",
            (publication_id,),
        ).fetchone()
        since = row[0] if row is not None else None
        if not marts:
            return outcomes
        with ExitStack() as stack:
            workers = [
                stack.enter_context(connect(location))
                for _ in range(min(CATCH_UP_CONNECTIONS, len(marts)))
            ]
            # The views over the tables about to be copied whole go first, committed (see
            # _drop_views_over): marts_build is not readers', and the next build creates
            # them again. The copies' own DROPs then wait for nothing of each other.
            # Planned once, under the publishers' lock: nothing else writes marts_build.
            plans = {mart.name: _plan(workers[0], mart, since, until_change_id) for mart in marts}
            copied_whole = [name for name, plan in plans.items() if plan.copy_reason]
            if copied_whole:
                workers[0].execute("set local lock_timeout = '30s'")
                _drop_views_over(workers[0], copied_whole)
            workers[0].commit()
            # The longest first, so that it does not start last.
            pending = _by_size(coordinator, marts, since, until_change_id)
            taking = threading.Lock()

            def work(conn: psycopg.Connection) -> None:
                while True:
                    with taking:
                        if not pending:
                            return
                        mart = pending.pop(0)
                    started = time.perf_counter()
                    try:
                        outcome = _catch_up(conn, mart, plans[mart.name], since, until_change_id)
                    except BaseException:
                        with taking:
                            pending.clear()  # all is rolled back: start no other mart
                        raise
                    outcomes[mart.name] = f"{outcome} ({time.perf_counter() - started:.1f} s)"

            try:
                with ThreadPoolExecutor(max_workers=len(workers)) as pool:
                    for done in [pool.submit(work, conn) for conn in workers]:
                        done.result()  # the first failure raises here
            except BaseException:
                for conn in workers:
                    # A broken connection has nothing left to roll back; keep the first error.
                    with suppress(psycopg.Error):
                        conn.rollback()
                raise
            for conn in workers:
                conn.commit()
    # After the coordinator's transaction: while open it holds back which rows VACUUM may
    # count visible to every transaction, and the copied rows' pages would stay unmarked.
    _vacuum_for_index_only_scans(
        location,
        [m for m in marts if m.vacuumed_after_catch_up and not plans[m.name].skipped],
        outcomes,
    )
    return dict(sorted(outcomes.items()))


def _vacuum_for_index_only_scans(
    location: WarehouseLocation, marts: list[LoggedMart], outcomes: dict[str, str]
) -> None:
    """VACUUM each of ``marts``' retired tables, now caught up, and say so in its outcome.

    An index-only scan reads a row from its index alone only on a page the visibility map
    marks all-visible; elsewhere it fetches the row from the table as well. Only VACUUM
    sets those marks, and the marts are rarely vacuumed otherwise: autovacuum, where the
    server runs it, waits for a fifth of a table to change. A table created by a full
    build or copied whole has none.

    int_order_lines_aggregated_to_customers reads fct_order_lines that way (its index
    carries the columns read): with the marks missing its select fetched all 444k of its
    lines from the table after three days' delta at 1M customers and took 2.97-4.58 s,
    against 1.53-1.82 s with them (docs/operations/marts.md, "Stop 64"). Vacuumed here,
    the table the next build writes starts with every page marked but those the catch-up
    changed. The VACUUM reads only the pages changed since the last one: 0.11-0.16 s after
    a build's catch-up, 1.8-3.6 s for a table never vacuumed (a copy, a full build's
    table when it first retires). Runs outside a transaction, as VACUUM must, once the
    publishers' lock is released: a publication swapping the schemas meanwhile would only
    have the other generation's table vacuumed, which changes no row. A failure costs
    reading speed, not marts: it is reported in the outcome and the publication stands."""
    for mart in marts:
        started = time.perf_counter()
        try:
            with connect(location, autocommit=True) as conn:
                # skip_locked: an autovacuum already at work on it does as well
                conn.execute(
                    sql.SQL("vacuum (skip_locked) {}").format(
                        sql.Identifier(BUILD_SCHEMA, mart.name)
                    )
                )
        except (psycopg.Error, CemError) as exc:
            log.warning(
                "%s.%s was not vacuumed after its catch-up: %s", BUILD_SCHEMA, mart.name, exc
            )
            outcomes[mart.name] = f"{outcomes.get(mart.name, '')}; not vacuumed: {exc}"
            continue
        outcomes[mart.name] = (
            f"{outcomes.get(mart.name, '')}; vacuumed ({time.perf_counter() - started:.2f} s)"
        )


def _by_size(
    conn: psycopg.Connection, marts: list[LoggedMart], since: int | None, until: int
) -> list[LoggedMart]:
    """The marts, the one with the most rows to replace first, then the largest published
    table first (a mart copied whole: the first publication, or after a full rebuild)."""
    logged = dict(
        conn.execute(
            "select producer, count(*) from ops.mart_key_changes where producer = any(%s) "
            "and change_id > %s and change_id <= %s group by producer",
            ([mart.rows_log for mart in marts], since if since is not None else -1, until),
        ).fetchall()
    )
    sizes = dict(
        conn.execute(
            "select name, coalesce(pg_relation_size(to_regclass(%s || '.' || quote_ident(name))), 0) "
            "from unnest(%s::text[]) as name",
            (PUBLISHED_SCHEMA, [mart.name for mart in marts]),
        ).fetchall()
    )
    return sorted(marts, key=lambda mart: (-logged.get(mart.rows_log, 0), -sizes.get(mart.name, 0)))
