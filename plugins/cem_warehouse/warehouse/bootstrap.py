"""Schemas, roles and bookkeeping tables every other component expects to exist.

Idempotent: safe to run before every pipeline run and from concurrent processes.
"""

from __future__ import annotations

import contextlib

import psycopg

from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

SCHEMAS = {
    "raw": "Published source rows, one table per source entity (merged on natural keys).",
    "quarantine": "Rows rejected by a load, with the raw payload, the reason and the batch id.",
    "staging": "dbt staging and intermediate models; not for analysts.",
    "marts": "Customer-experience marts for analysts and BI (the last build that passed its audit).",
    "marts_build": "Where dbt builds the marts before they are audited and swapped into `marts`; not for analysts.",
    "ops": "Load ledger and data-quality results.",
}

# Tables of models this version of the dbt project no longer has. dbt leaves a removed
# model's table in place, and a retired reader's position in the mart change log would keep
# the log from being trimmed for 90 days (dbt macro trim_change_log); once the table is
# dropped, the next reader that records its own position forgets it
# (forget_replaced_readers). The churn assessment became marts.fct_customer_churn_stored in
# stop 76.
RETIRED_MODEL_TABLES = ("staging.int_customers_churn_assessed",)

# BI dashboards connect with a role that is granted this one: read marts, nothing else.
READER_ROLE = "cem_reader"

_OPS_DDL = """
create table if not exists ops.load_batches (
    batch_id text primary key,
    source text not null,
    entity text not null,
    cursor_from text,
    cursor_to text,
    rows_received bigint not null default 0,
    rows_published bigint not null default 0,
    rows_quarantined bigint not null default 0,
    rows_changed bigint,
    gx_success boolean,
    status text not null check (status in ('running', 'published', 'failed', 'blocked')),
    message text,
    started_at timestamptz not null default now(),
    finished_at timestamptz
);
create table if not exists ops.dq_results (
    batch_id text not null,
    suite_name text not null,
    expectation_type text not null,
    column_name text,
    success boolean not null,
    unexpected_count bigint,
    observed_value text,
    details jsonb,
    checked_at timestamptz not null default now()
);
create index if not exists dq_results_batch_idx on ops.dq_results (batch_id);
alter table ops.load_batches add column if not exists land_seconds numeric;
alter table ops.load_batches add column if not exists validate_seconds numeric;
alter table ops.load_batches add column if not exists publish_seconds numeric;
-- A batch of an entity's first load (a backfill): no baseline for a normal day's volume.
alter table ops.load_batches add column if not exists initial_load boolean;
create index if not exists load_batches_entity_idx on ops.load_batches (source, entity, started_at desc);
-- Never holds a row: its table lock orders publishes into raw against incremental marts
-- (load.tables.begin_raw_publish, dbt macro wait_for_raw_publishes).
create table if not exists ops.raw_publish_gate ();
-- The customer keys whose rows an incremental fact replaced (key before and after), and how
-- far each per-customer intermediate has read them: it rebuilds only those customers
-- (dbt macros/change_log.sql). key_value null: the fact was rebuilt in full.
create table if not exists ops.mart_key_changes (
    change_id bigserial primary key,
    producer text not null,
    key_value text,
    logged_at timestamptz not null default now()
);
create index if not exists mart_key_changes_producer_idx on ops.mart_key_changes (producer, change_id);
-- The earliest date a producer's change to the key touched (the purchase days: the first
-- purchase day it replaced or wrote): a reader whose rows for a key before that date depend
-- only on that key's rows before it recomputes the key from there. Null: every row.
alter table ops.mart_key_changes add column if not exists changed_from date;
create table if not exists ops.mart_change_positions (
    consumer text primary key,
    change_id bigint not null,
    as_of_date date,
    built_at timestamptz not null default now()
);
-- How far an incremental model has read raw, for a model whose rows do not carry their load
-- time (dbt macros kept_watermark, keep_watermark): reader is the table's name#oid, so a
-- table a full refresh replaced starts from nothing.
create table if not exists ops.model_watermarks (
    reader text primary key,
    loaded_through timestamptz not null,
    recorded_at timestamptz not null default now()
);
create table if not exists ops.source_cursors (
    source text not null,
    entity text not null,
    cursor_value text not null,
    batch_id text not null,
    updated_at timestamptz not null,
    primary key (source, entity)
);
create table if not exists ops.mart_publications (
    publication_id bigserial primary key,
    published_at timestamptz not null default now(),
    as_of_date date,
    tables jsonb not null,
    audit jsonb not null default '{}'
);
-- How far the change log went when a build was published, and what bringing the retired
-- generation up to it did (cem_warehouse.transform.generations).
alter table ops.mart_publications add column if not exists change_log_id bigint;
alter table ops.mart_publications add column if not exists retired_generation jsonb;
-- Where the published build's staging tests ended: the next build tests raw rows loaded
-- after it (cem_warehouse.transform.staging_tests). Null: the next build tests every row.
alter table ops.mart_publications add column if not exists staging_tests_through timestamptz;
-- The table dim_as_of_date of the published generation (dbt creates it anew in every
-- build): a generation already published is not published again (transform/publish.py).
alter table ops.mart_publications add column if not exists published_build oid;
-- ANALYZE a table when its statistics are missing or stale, by autovacuum's own rule: more
-- than 50 + 10% of its rows changed since the last ANALYZE, counting the calling
-- transaction's writes too (dbt macro analyze_when_stale, a post-hook of the incremental
-- models; generations._copy_whole). PostgreSQL adds a transaction's writes to the table's
-- count of changes when it commits, after an ANALYZE inside it, so a table built and
-- analyzed in one transaction would look changed in full to the next build, and be
-- analyzed again for nothing (every table a full build wrote: about 2.5 s of the first
-- incremental build's thread time at 1M customers, docs/operations/marts.md, stop 36).
-- Those writes are recorded with the number of analyses they follow, and not counted
-- while no other ANALYZE has run.
create table if not exists ops.writes_counted_after_analyze (
    relation_id oid primary key,
    analyses bigint not null,
    writes bigint not null
);
-- The records of tables dropped since (a full refresh replaces its tables). Here, not in
-- the function: dbt's threads call it side by side, each in a transaction held to the
-- end of its model, and deleting each other's rows they could deadlock.
delete from ops.writes_counted_after_analyze as recorded
where not exists (select from pg_catalog.pg_class where oid = recorded.relation_id);
create or replace function ops.analyze_when_stale(relation regclass) returns boolean
language plpgsql as $function$
declare
    own_writes bigint := pg_catalog.pg_stat_get_xact_tuples_inserted(relation)
        + pg_catalog.pg_stat_get_xact_tuples_updated(relation)
        + pg_catalog.pg_stat_get_xact_tuples_deleted(relation);
    estimated_rows real;
    analyzed_before boolean;
    analyses_before bigint;
    changes bigint;
    counted_already bigint;
begin
    select
        relation_row.reltuples,
        coalesce(stats.last_analyze, stats.last_autoanalyze) is not null,
        coalesce(stats.analyze_count + stats.autoanalyze_count, 0),
        coalesce(stats.n_mod_since_analyze, 0)
    into estimated_rows, analyzed_before, analyses_before, changes
    from pg_catalog.pg_class as relation_row
    left join pg_catalog.pg_stat_all_tables as stats on stats.relid = relation_row.oid
    where relation_row.oid = relation;
    select recorded.writes into counted_already
    from ops.writes_counted_after_analyze as recorded
    where recorded.relation_id = relation and recorded.analyses = analyses_before;
    if estimated_rows >= 0 and analyzed_before
        and changes - coalesce(counted_already, 0) + own_writes <= 50 + 0.1 * estimated_rows then
        return false;
    end if;
    execute format('analyze %s', relation);
    insert into ops.writes_counted_after_analyze (relation_id, analyses, writes)
    values (relation, analyses_before + 1, own_writes)
    on conflict (relation_id) do update
        set analyses = excluded.analyses, writes = excluded.writes;
    return true;
end
$function$;
-- The rows of a large mart table, kept by statement triggers on its own writes, so the
-- mart audit's row-count checks need no scan (cem_warehouse.quality.catalog_answers): GX's
-- exact counts of fct_order_lines (10.9M rows at 1M customers) and fct_orders were
-- 1.5 s and 0.8 s, most of every build's audit (docs/operations/marts.md, stop 57). The
-- triggers count each statement's transition table, in the writing transaction: a table's
-- count changes with its rows or fails with them, whichever statement wrote (an
-- incremental strategy, the catch-up, a fix by hand). ops.keep_row_count starts keeping a
-- table: the dbt post-hook keep_row_count after each build of such a mart, the copy of a
-- mart into the retired generation (cem_warehouse.transform.generations).
-- A count belongs to its table by regclass, not a bare oid: pg_dump writes a regclass as
-- the table's name and a restore reads it back as the restored table's new oid, where a
-- stored oid could name another table of the restored database, and lend it this count.
create table if not exists ops.kept_row_counts (
    counted_table regclass primary key,
    row_count bigint not null check (row_count >= 0)
);
-- Tables dropped since (a full refresh replaces its tables); here for the reason given
-- for ops.writes_counted_after_analyze above.
delete from ops.kept_row_counts as kept
where not exists (select from pg_catalog.pg_class where oid = kept.counted_table);
create or replace function ops.count_written_rows() returns trigger
language plpgsql as $function$
declare
    removed bigint;
begin
    -- Each branch names the transition table its own trigger declares; PL/pgSQL plans a
    -- statement when it first runs, so the other branches' tables need not exist.
    if tg_op = 'INSERT' then
        update ops.kept_row_counts
        set row_count = row_count + (select count(*) from inserted_rows)
        where counted_table = tg_relid::regclass;
    elsif tg_op = 'DELETE' then
        select count(*) into removed from deleted_rows;
        update ops.kept_row_counts
        set row_count = row_count - removed
        where counted_table = tg_relid::regclass and row_count >= removed;
        -- fewer rows kept than deleted: the count no longer matches the table (a write
        -- with the triggers off, say); the statement fails, saying how to count again
        if not found and exists (
            select from ops.kept_row_counts where counted_table = tg_relid::regclass
        ) then
            raise exception 'the kept row count of % is lower than the % rows this statement deletes: it no longer matches the table', tg_relid::regclass, removed
                using hint = format(
                    'Count the table again: delete from ops.kept_row_counts where '
                    'counted_table = %L::regclass; select ops.keep_row_count(%L); then '
                    'run the statement again.', tg_relid::regclass, tg_relid::regclass);
        end if;
    elsif tg_op = 'TRUNCATE' then
        update ops.kept_row_counts set row_count = 0 where counted_table = tg_relid::regclass;
    end if;
    return null;
end
$function$;
-- Start keeping the rows of `relation`, unless its three triggers and its count are already
-- in place: (re)create the triggers, then count the table once (or take `known_rows`, when
-- the caller has just written every row). Creating a trigger locks the table against
-- other writers until the transaction ends, so no write falls between the count and the
-- triggers. Returns the rows counted, or null when the table was already kept.
create or replace function ops.keep_row_count(relation regclass, known_rows bigint default null)
returns bigint
language plpgsql as $function$
declare
    kept_triggers integer;
    counted bigint;
    kind text;
begin
    select count(*) into kept_triggers
    from pg_catalog.pg_trigger
    where tgrelid = relation and tgenabled = 'O'
        and tgname in ('row_count_kept_on_insert', 'row_count_kept_on_delete', 'row_count_kept_on_truncate');
    if kept_triggers = 3
        and exists (select from ops.kept_row_counts where counted_table = relation) then
        return null;
    end if;
    -- (a drop only where there is a trigger: `if exists` would tell every new table so)
    foreach kind in array array['insert', 'delete', 'truncate'] loop
        if exists (
            select from pg_catalog.pg_trigger
            where tgrelid = relation and tgname = 'row_count_kept_on_' || kind
        ) then
            execute format('drop trigger %I on %s', 'row_count_kept_on_' || kind, relation);
        end if;
    end loop;
    execute format(
        'create trigger row_count_kept_on_insert after insert on %s '
        'referencing new table as inserted_rows for each statement '
        'execute function ops.count_written_rows()', relation);
    execute format(
        'create trigger row_count_kept_on_delete after delete on %s '
        'referencing old table as deleted_rows for each statement '
        'execute function ops.count_written_rows()', relation);
    execute format(
        'create trigger row_count_kept_on_truncate after truncate on %s '
        'for each statement execute function ops.count_written_rows()', relation);
    if known_rows is null then
        execute format('select count(*) from %s', relation) into counted;
    else
        counted := known_rows;
    end if;
    insert into ops.kept_row_counts (counted_table, row_count)
    values (relation, counted)
    on conflict (counted_table) do update set row_count = excluded.row_count;
    return counted;
end
$function$;
create table if not exists ops.landed_files (
    source text not null,
    path text not null,
    checksum text not null,
    batch_id text not null,
    rows_received bigint not null,
    landed_at timestamptz not null default now(),
    primary key (source, checksum)
);
"""


def bootstrap(location: WarehouseLocation) -> None:
    """Create schemas, ops tables and the read-only role (each step a no-op when done)."""
    with connect(location, autocommit=True) as conn:
        # Concurrent bootstraps (two DAGs starting together) serialise on this lock.
        conn.execute("select pg_advisory_lock(hashtext('cem_warehouse.bootstrap'))")
        try:
            for schema, comment in SCHEMAS.items():
                conn.execute(f"create schema if not exists {schema}")
                conn.execute(f"comment on schema {schema} is %s".replace("%s", _literal(comment)))
            conn.execute(_OPS_DDL)
            for table in RETIRED_MODEL_TABLES:
                conn.execute(f"drop table if exists {table}")
            _ensure_reader_role(conn, location.dbname)
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('cem_warehouse.bootstrap'))")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ensure_reader_role(conn: psycopg.Connection, dbname: str) -> None:
    # Roles are cluster-wide: another database or process may have made it first.
    with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        conn.execute(f"create role {READER_ROLE} nologin")
    conn.execute(f'grant connect on database "{dbname}" to {READER_ROLE}')
    conn.execute(f"grant usage on schema marts to {READER_ROLE}")
    conn.execute(f"grant select on all tables in schema marts to {READER_ROLE}")
    # No default privileges: marts are built in marts_build and swapped in by
    # transform.publish, which grants the reader the published tables explicitly. (Earlier
    # versions set them on `marts`; they would follow that schema into marts_build.)
    conn.execute(
        f"alter default privileges in schema marts revoke select on tables from {READER_ROLE}"
    )
