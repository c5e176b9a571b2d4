"""SQL for the loader: raw, quarantine and per-batch tables, value checks, the publish.

Kept apart from :mod:`cem_warehouse.load.batch` so the batch's control flow reads on its own.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import cache

import psycopg
from psycopg import sql

from cem_warehouse.load.contracts import LOADED_AT_INDEX_KINDS, EntityContract
from cem_warehouse.quality.catalog_answers import constraint_name, not_null_constraint_name
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

_SQL_RULES = {
    "expect_column_values_to_not_be_null": "{col} is null",
    "expect_column_values_to_be_between": "{col} is not null and not ({col} between {min} and {max})",
    "expect_column_values_to_be_in_set": "{col} is not null and {col}::text not in ({values})",
    "expect_column_values_to_match_regex": "{col} is not null and {col}::text !~ {regex}",
}


# What every raw row carries besides its record: the batch that published it, when, and from
# which source.
BOOKKEEPING_COLUMNS = {"_batch_id": "text", "_loaded_at": "timestamptz", "_source": "text"}


def batch_table_names(contract: EntityContract, batch_id: str) -> dict[str, str]:
    stem = f"b_{contract.entity}_{batch_id}"[:55]
    return {"typed": stem, "text": f"{stem}_text", "accepted_view": f"{stem}_ok"}


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def data_columns(contract: EntityContract, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [*contract.column_names, *extra]


def content_hash(prefix: str | None, columns: list[str]) -> sql.Composable:
    """md5 of a record's data columns: the deterministic tie-break between equal versions."""
    refs = [
        sql.SQL("{}.{}").format(_ident(prefix), _ident(c)) if prefix else _ident(c) for c in columns
    ]
    return sql.SQL("md5(row({})::text)").format(sql.SQL(", ").join(refs))


def ensure_entity_tables(conn: psycopg.Connection, contract: EntityContract) -> None:
    """``raw.<entity>`` and ``quarantine.<entity>``, created from the contract when missing."""
    columns = [
        sql.SQL("{} {}{}").format(
            _ident(c.name), sql.SQL(c.type), sql.SQL("" if c.nullable else " not null")
        )
        for c in contract.columns
    ]
    columns += [
        sql.SQL("{} {} not null").format(_ident(name), sql.SQL(kind))
        for name, kind in BOOKKEEPING_COLUMNS.items()
    ]
    key = sql.SQL(", ").join(_ident(k) for k in contract.natural_key)
    exists = conn.execute("select to_regclass(%s)", (f"raw.{contract.raw_table}",)).fetchone()[0]
    if exists is None:
        # Partitioned by its key into a single partition that holds every row: readers and
        # writers see one table with one primary key, and a batch published into an empty
        # raw table becomes that partition instead of being written a second time
        # (adopt_batch_table). The views reading raw depend on this parent, so its storage
        # can be replaced without touching them.
        conn.execute(
            sql.SQL(
                "create table if not exists raw.{} ({}, primary key ({})) partition by range ({})"
            ).format(_ident(contract.raw_table), sql.SQL(", ").join(columns), key, key)
        )
        conn.execute(
            sql.SQL("create table if not exists raw.{} partition of raw.{} {}").format(
                _ident(f"{contract.raw_table}__initial"),
                _ident(contract.raw_table),
                _whole_key_range(contract),
            )
        )
    if contract.description and exists is None:
        conn.execute(
            sql.SQL("comment on table raw.{} is {}").format(
                _ident(contract.raw_table), sql.Literal(contract.description)
            )
        )
    # Incremental marts read "rows loaded after their watermark". A publish stamps its rows
    # with one _loaded_at and appends them, so _loaded_at follows the physical order closely:
    # a BRIN index (a few pages, next to nothing to maintain on load) lets that read skip the
    # old part of the table instead of scanning all of it (10.9M order lines at 1M customers).
    # Where a publish mostly updates rows in place (contract.loaded_at_index), a btree.
    kind = contract.loaded_at_index
    index = f"{contract.raw_table}_loaded_at_{kind}"
    # Looked up first: CREATE INDEX locks the table even when the index exists, and this
    # runs before every batch.
    if conn.execute("select to_regclass(%s)", (f"raw.{index}",)).fetchone()[0] is None:
        conn.execute(
            sql.SQL("create index if not exists {} on raw.{} using {} (_loaded_at)").format(
                _ident(index), _ident(contract.raw_table), sql.SQL(kind)
            )
        )
        # The other kind, from a warehouse made before the contract chose this one.
        for other in set(LOADED_AT_INDEX_KINDS) - {kind}:
            conn.execute(
                sql.SQL("drop index if exists raw.{}").format(
                    _ident(f"{contract.raw_table}_loaded_at_{other}")
                )
            )
    conn.execute(
        sql.SQL(
            "create table if not exists quarantine.{} (batch_id text not null, reason text not null, payload jsonb, "
            "quarantined_at timestamptz not null default now())"
        ).format(_ident(contract.raw_table))
    )


def _whole_key_range(contract: EntityContract) -> sql.Composable:
    """The bounds of the one partition of ``raw.<entity>``: every possible key.

    Its partition constraint is then only "key is not null", which PostgreSQL proves from
    the columns' NOT NULL when a table is attached, without scanning it.
    """
    width = len(contract.natural_key)
    return sql.SQL("for values from ({}) to ({})").format(
        sql.SQL(", ").join([sql.SQL("minvalue")] * width),
        sql.SQL(", ").join([sql.SQL("maxvalue")] * width),
    )


def raw_is_partitioned_and_empty(conn: psycopg.Connection, contract: EntityContract) -> bool:
    """Whether a batch into ``raw.<entity>`` can become its storage (see adopt_batch_table).

    Raw tables made before raw was partitioned keep the insert path.
    """
    return bool(
        conn.execute(
            sql.SQL(
                "select c.relkind = 'p' and not exists (select 1 from raw.{}) "
                "from pg_class c where c.oid = format('raw.%%I', %s::text)::regclass"
            ).format(_ident(contract.raw_table)),
            (contract.raw_table,),
        ).fetchone()[0]
    )


def record_batch_start(
    conn: psycopg.Connection,
    contract: EntityContract,
    batch_id: str,
    cursor_from: str | None,
    *,
    initial_load: bool | None = None,
) -> None:
    conn.execute(
        "insert into ops.load_batches (batch_id, source, entity, cursor_from, status, initial_load) "
        "values (%s, %s, %s, %s, 'running', %s)",
        (batch_id, contract.source, contract.entity, cursor_from, initial_load),
    )


def has_published_batch(conn: psycopg.Connection, contract: EntityContract) -> bool:
    """Whether the entity has published a batch before: if not, a run is its initial load."""
    row = conn.execute(
        "select exists (select from ops.load_batches where source = %s and entity = %s "
        "and status = 'published')",
        (contract.source, contract.entity),
    ).fetchone()
    return bool(row[0])


def create_batch_tables(
    conn: psycopg.Connection,
    contract: EntityContract,
    names: dict,
    incoming: list[str],
    extra: list[str],
    *,
    as_raw_storage: bool = False,
) -> None:
    """Typed batch table (contract types), text twin for the slow path, accepted-rows view.

    The typed table is unlogged scratch, except ``as_raw_storage``: a batch into an empty
    raw table lands in a logged table with raw's NOT NULL columns, ready to become raw's
    partition at publication (adopt_batch_table).
    """
    for column in extra:
        conn.execute(
            sql.SQL("alter table raw.{} add column if not exists {} text").format(
                _ident(contract.raw_table), _ident(column)
            )
        )
    required = set(required_columns(contract)) if as_raw_storage else set()
    typed_columns = [
        sql.SQL("{} {}{}").format(
            _ident(c.name), sql.SQL(c.type), sql.SQL(" not null" if c.name in required else "")
        )
        for c in contract.columns
    ]
    typed_columns += [sql.SQL("{} text").format(_ident(c)) for c in extra]
    conn.execute(
        sql.SQL("create {} table staging.{} ({}, _reject_reason text)").format(
            sql.SQL("" if as_raw_storage else "unlogged"),
            _ident(names["typed"]),
            sql.SQL(", ").join(typed_columns),
        )
    )
    text_columns = [sql.SQL("{} text").format(_ident(c)) for c in data_columns(contract, extra)]
    conn.execute(
        sql.SQL(
            "create unlogged table staging.{} ({}, _invalid boolean not null default false, _reject_reason text)"
        ).format(_ident(names["text"]), sql.SQL(", ").join(text_columns))
    )
    conn.execute(
        sql.SQL(
            "create view staging.{} as select {} from staging.{} where _reject_reason is null"
        ).format(
            _ident(names["accepted_view"]),
            sql.SQL(", ").join(_ident(c) for c in data_columns(contract, extra)),
            _ident(names["typed"]),
        )
    )


def required_columns(contract: EntityContract) -> dict[str, str]:
    """The columns raw declares NOT NULL (the key and the required ones), each with the
    reason a row missing it is quarantined."""
    required = {k: f"{k} (natural key) is missing" for k in contract.natural_key}
    for column in contract.columns:
        if not column.nullable and column.name not in required:
            required[column.name] = f"{column.name} is required but missing"
    return required


def drop_batch_tables(conn: psycopg.Connection, names: dict) -> None:
    conn.execute(sql.SQL("drop view if exists staging.{}").format(_ident(names["accepted_view"])))
    for key in ("typed", "text"):
        conn.execute(sql.SQL("drop table if exists staging.{}").format(_ident(names[key])))


def abandon_dead_batches(
    conn: psycopg.Connection, source: str, contracts: dict[str, EntityContract]
) -> list[str]:
    """Under the source's writer lock, a 'running' batch belongs to a worker that died."""
    rows = conn.execute(
        "update ops.load_batches set status = 'failed', finished_at = now(), "
        "message = 'abandoned: the worker stopped before publishing; nothing of it was published' "
        "where source = %s and status = 'running' returning batch_id, entity",
        (source,),
    ).fetchall()
    for batch_id, entity in rows:
        if entity in contracts:
            drop_batch_tables(conn, batch_table_names(contracts[entity], batch_id))
    return [r[0] for r in rows]


@cache
def _has_pg_input_is_valid(server_version: int) -> bool:
    return server_version >= 160000


def validity_predicate(conn: psycopg.Connection, column: str, kind: str) -> sql.Composable:
    """True when the text value is null or parses as ``kind``."""
    if _has_pg_input_is_valid(conn.info.server_version):
        return sql.SQL("({col} is null or pg_input_is_valid({col}, {kind}))").format(
            col=_ident(column), kind=sql.Literal(kind)
        )
    # PostgreSQL 14/15: a function that tries the cast (slower, used only on the slow path).
    conn.execute(
        """
        create or replace function ops.cem_is_valid(value text, kind text) returns boolean
        language plpgsql immutable as $$
        begin
            execute format('select %L::%s', value, kind);
            return true;
        exception when others then
            return false;
        end $$
        """
    )
    return sql.SQL("({col} is null or ops.cem_is_valid({col}, {kind}))").format(
        col=_ident(column), kind=sql.Literal(kind)
    )


def typed_expression(contract: EntityContract, column: str) -> sql.Composable:
    kind = contract.column(column).type if column in contract.column_names else "text"
    return sql.SQL("{}::{}").format(_ident(column), sql.SQL(kind))


def suite_row_rules(contract: EntityContract) -> list[dict]:
    """The suite's row-level expectations on the contract's columns that SQL can enforce row
    by row (from the same file GX runs)."""
    from cem_warehouse.quality.gx_runner import load_suite_definition

    return [
        e
        for e in load_suite_definition(contract.entity)["expectations"]
        if e["type"] in _SQL_RULES and e["kwargs"].get("column") in contract.column_names
    ]


def row_rule_reasons(
    contract: EntityContract, *, required: bool = True, from_suite: bool = True
) -> list[tuple[sql.Composable, str]]:
    """(predicate marking a bad row, reason) from the contract and the entity's suite.

    ``required=False`` leaves out the required-value rules (for a table whose NOT NULLs
    enforce them), ``from_suite=False`` the suite's row-level expectations (for rows GX has
    just found to pass them)."""
    rules: list[tuple[sql.Composable, str]] = (
        [
            (sql.SQL("{} is null").format(_ident(column)), reason)
            for column, reason in required_columns(contract).items()
        ]
        if required
        else []
    )
    for column in contract.not_in_future:
        rules.append(
            (
                sql.SQL("{} > now() + interval '1 day'").format(_ident(column)),
                f"{column} is in the future (after the load)",
            )
        )
    for expectation in suite_row_rules(contract) if from_suite else []:
        kwargs = expectation["kwargs"]
        detail = {k: v for k, v in kwargs.items() if k != "column"}
        rules.append(
            (
                _breaks_suite_rule(expectation),
                f"{expectation['type']} on {kwargs['column']} {json.dumps(detail)}",
            )
        )
    return rules


def _breaks_suite_rule(expectation: dict) -> sql.Composable:
    """True for a row that breaks the suite's row-level ``expectation`` (null otherwise)."""
    kwargs = expectation["kwargs"]
    return sql.SQL(_SQL_RULES[expectation["type"]]).format(
        col=_ident(kwargs["column"]),
        min=sql.Literal(kwargs.get("min_value")),
        max=sql.Literal(kwargs.get("max_value")),
        values=sql.SQL(", ").join(sql.Literal(str(v)) for v in kwargs.get("value_set", [None])),
        regex=sql.Literal(kwargs.get("regex")),
    )


def suite_constraints(contract: EntityContract) -> list[tuple[str, sql.Composable]]:
    """(name, CHECK condition) for each of the suite's row rules the catalog can answer
    (``quality.catalog_answers``): the condition is the row rule's own predicate, negated,
    so COPY refuses exactly the rows the loader would quarantine for it. One per name: a
    rule listed twice is one constraint."""
    checks = {
        name: sql.SQL("not ({})").format(_breaks_suite_rule(expectation))
        for expectation in suite_row_rules(contract)
        # A longer name would be cut short by PostgreSQL, and no longer answer for the rule.
        if (name := constraint_name(expectation)) is not None and len(name) <= 63
    }
    return list(checks.items())


def add_suite_constraints(
    conn: psycopg.Connection, contract: EntityContract, names: dict, *, as_raw_storage: bool
) -> None:
    """Check the suite's row rules in the COPY of a typed batch: a clean batch (the usual
    case) then needs no scan to prove them, as GX reads them from the catalog. A row that
    breaks one fails the COPY, and the loader lands the batch again as text without these
    (``drop_suite_constraints``), where such rows are quarantined one by one. A table
    landed as raw's storage already has raw's NOT NULLs, which answer for themselves."""
    already_enforced = (
        {not_null_constraint_name(column) for column in required_columns(contract)}
        if as_raw_storage
        else set()
    )
    _alter_batch_table(
        conn,
        names,
        [
            sql.SQL("add constraint {} check ({})").format(_ident(name), condition)
            for name, condition in suite_constraints(contract)
            if name not in already_enforced
        ],
    )


def drop_suite_constraints(conn: psycopg.Connection, contract: EntityContract, names: dict) -> None:
    """Remove what ``add_suite_constraints`` added: before the text landing, which keeps
    rows that break a rule so as to quarantine them, and before the table becomes raw's
    partition, where a later batch's rows must meet raw's rules, not this batch's suite."""
    _alter_batch_table(
        conn,
        names,
        [
            sql.SQL("drop constraint if exists {}").format(_ident(name))
            for name, _ in suite_constraints(contract)
        ],
    )


def _alter_batch_table(
    conn: psycopg.Connection, names: dict, actions: list[sql.Composable]
) -> None:
    """One ALTER TABLE of the typed batch table with ``actions`` (none: no statement)."""
    if actions:
        conn.execute(
            sql.SQL("alter table staging.{} {}").format(
                _ident(names["typed"]), sql.SQL(", ").join(actions)
            )
        )


# Publishes into raw and incremental dbt models take a table lock on this empty table for
# their transaction: publishes ROW EXCLUSIVE, models SHARE (macro wait_for_raw_publishes).
# The two modes conflict and each is compatible with itself, so publishes of different
# sources run together, incremental models run together, and neither overlaps the other.
# (An exclusive advisory lock for the models serialised them: at 200k customers one fact
# waited 19 s for another.)
RAW_PUBLISH_GATE = "ops.raw_publish_gate"


def begin_raw_publish(conn: psycopg.Connection):
    """Start publishing into raw inside the open transaction; returns the rows' ``_loaded_at``.

    Incremental marts take in raw rows loaded after the newest ``_loaded_at`` they hold. For
    that to miss nothing, no row may become visible with a ``_loaded_at`` older than one a
    build has already read. So the publish first takes the gate (an incremental model
    holding it is waited for, and a model starting now waits for this commit), and only then
    reads the clock: not the transaction's start time, which may lie before the wait.
    """
    conn.execute(f"lock table {RAW_PUBLISH_GATE} in row exclusive mode")
    return conn.execute("select clock_timestamp()").fetchone()[0]


def publish_statements(
    conn: psycopg.Connection,
    contract: EntityContract,
    names: dict,
    batch_id: str,
    extra: list[str],
    loaded_at,
) -> dict:
    columns_of_record = data_columns(contract, extra)
    raw = _ident(contract.raw_table)
    payload_columns = sql.SQL(", ").join(_ident(c) for c in columns_of_record)
    quarantine = [
        (
            sql.SQL(
                "insert into quarantine.{raw} (batch_id, reason, payload) "
                "select %s, _reject_reason, to_jsonb(r) from (select {cols}, _reject_reason from staging.{t} where {cond}) as r"
            ).format(
                raw=raw, cols=payload_columns, t=_ident(names[table]), cond=sql.SQL(condition)
            ),
            (batch_id,),
        )
        for table, condition in (("text", "_invalid"), ("typed", "_reject_reason is not null"))
    ]
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(_ident(c))
        for c in [*columns_of_record, *BOOKKEEPING_COLUMNS]
        if c not in contract.natural_key
    )
    newer = sql.SQL("true")
    if contract.version_column:
        version = _ident(contract.version_column)
        newer = sql.SQL(
            "(raw.{raw}.{v} is null or excluded.{v} > raw.{raw}.{v} or "
            "(excluded.{v} = raw.{raw}.{v} and {new_hash} > {old_hash}))"
        ).format(
            raw=raw,
            v=version,
            new_hash=content_hash("excluded", columns_of_record),
            old_hash=sql.SQL("md5(row({})::text)").format(
                sql.SQL(", ").join(
                    sql.SQL("raw.{}.{}").format(raw, _ident(c)) for c in columns_of_record
                )
            ),
        )
    changed = sql.SQL("row({}) is distinct from row({})").format(
        sql.SQL(", ").join(sql.SQL("raw.{}.{}").format(raw, _ident(c)) for c in columns_of_record),
        sql.SQL(", ").join(sql.SQL("excluded.{}").format(_ident(c)) for c in columns_of_record),
    )
    insert = sql.SQL(
        "insert into raw.{raw} ({cols}, _batch_id, _loaded_at, _source) "
        "select {cols}, %s, %s, %s from staging.{t} where _reject_reason is null"
    ).format(raw=raw, cols=payload_columns, t=_ident(names["typed"]))
    upsert = sql.SQL(
        "{} on conflict ({key}) do update set {updates} where {newer} and {changed}"
    ).format(
        insert,
        key=sql.SQL(", ").join(_ident(k) for k in contract.natural_key),
        updates=updates,
        newer=newer,
        changed=changed,
    )
    params = (batch_id, loaded_at, contract.source)
    # Into an empty raw table nothing can conflict (keys are unique within the batch and the
    # source's writer lock is held): a plain insert (see insert_into_empty_raw) costs far
    # less than the upsert.
    is_empty = sql.SQL("select not exists (select 1 from raw.{})").format(raw)
    return {
        "quarantine": quarantine,
        "upsert": (upsert, params),
        "insert": (insert, params),
        "raw_is_empty": is_empty,
    }


def refresh_statistics(
    location: WarehouseLocation,
    contract: EntityContract,
    changed: int,
    *,
    conn: psycopg.Connection | None = None,
) -> None:
    """ANALYZE ``raw.<entity>`` once the publishes since its last ANALYZE changed more than a
    tenth of it (``changed``: what the publish just committed changed), after summarizing
    the ranges it appended in the ``_loaded_at`` index (summarize_loaded_at_ranges).

    The incremental marts filter raw on ``_loaded_at``; without statistics (a first load,
    a server with autovacuum off or behind) PostgreSQL guesses a third of each table is new
    and plans minutes of work. Counted over publishes, not per publish: autovacuum never
    analyzes a partitioned table, so daily deltas of a few percent would otherwise leave
    raw's statistics as the first load left them. Run after the commit: a kill here only
    leaves stale statistics. ``conn``: an open connection in autocommit mode to use (else
    one is opened).
    """
    with nullcontext(conn) if conn is not None else connect(location, autocommit=True) as conn:
        summarize_loaded_at_ranges(conn, contract)
        # reltuples is -1 until the table was first analyzed: that counts as stale.
        estimated, analyzed_at = conn.execute(
            "select c.reltuples, greatest(s.last_analyze, s.last_autoanalyze) from pg_class c "
            "left join pg_stat_all_tables s on s.relid = c.oid "
            "where c.oid = format('raw.%%I', %s::text)::regclass",
            (contract.raw_table,),
        ).fetchone()
        if analyzed_at is not None:
            changed = conn.execute(
                "select coalesce(sum(rows_changed), 0) from ops.load_batches where source = %s "
                "and entity = %s and status = 'published' and finished_at >= %s",
                (contract.source, contract.entity, analyzed_at),
            ).fetchone()[0]
        if estimated <= 0 or changed > 0.1 * estimated:
            analyze_raw_table(location, conn, contract)


def summarize_loaded_at_ranges(conn: psycopg.Connection, contract: EntityContract) -> None:
    """Summarize the block ranges of raw's BRIN index on ``_loaded_at`` that publishes filled
    since it was built. (Called after every publish that changed rows.)

    The index answers "rows loaded after the watermark" (incremental marts, the staging
    tests' window) only for the ranges it has summarized: a range it has not, it always
    returns whole. Ranges filled after the index was built (every batch after the first,
    appended) stay unsummarized until a VACUUM, which autovacuum starts only once a fifth of
    the table is new (weeks of daily deltas), or never where autovacuum is off. Found on a
    1M-customer warehouse: 502 of 517 ranges of raw.invitations unsummarized, so a filter on
    _loaded_at read all of its 66k pages (585 ms) to find the 4k new rows (2.7 ms once
    summarized). Summarizing reads only the pages the publish appended.
    """
    indexes = conn.execute(
        "select format('%%I.%%I', n.nspname, c.relname) from pg_partition_tree(format('raw.%%I', %s::text)::regclass) t "
        "join pg_index i on i.indrelid = t.relid "
        "join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace "
        "join pg_am a on a.oid = c.relam "
        "where t.isleaf and a.amname = 'brin'",
        (contract.raw_table,),
    ).fetchall()
    for (index,) in indexes:
        conn.execute("select brin_summarize_new_values(%s::regclass)", (index,))


def raw_partitions(conn: psycopg.Connection, contract: EntityContract) -> list[sql.Composable]:
    """The partitions of ``raw.<entity>``, as qualified, quoted names."""
    return [
        sql.SQL(name)
        for (name,) in conn.execute(
            "select format('%%I.%%I', n.nspname, c.relname) from pg_inherits i "
            "join pg_class c on c.oid = i.inhrelid join pg_namespace n on n.oid = c.relnamespace "
            "where i.inhparent = format('raw.%%I', %s::text)::regclass",
            (contract.raw_table,),
        ).fetchall()
    ]


def analyze_raw_table(
    location: WarehouseLocation, conn: psycopg.Connection, contract: EntityContract
) -> None:
    """ANALYZE ``raw.<entity>``: the partitioned table as a whole and each partition, on two
    cores at once.

    A plain ANALYZE of a partitioned table samples its partitions for the whole table's
    statistics, then analyzes each partition: the same rows sampled twice, one after the
    other, on one core (``ANALYZE ONLY``, the whole table alone, needs PostgreSQL 17). So a
    second connection locks the partitions and analyzes them while ``conn`` runs
    ``ANALYZE (SKIP_LOCKED)`` of the partitioned table, which samples them (its reads are
    not blocked by that lock) and skips analyzing them itself; the second connection keeps
    its locks until ``conn`` is done, so none is analyzed twice.
    """
    raw = sql.SQL("raw.{}").format(_ident(contract.raw_table))
    partitions = raw_partitions(conn, contract)
    if not partitions:
        conn.execute(sql.SQL("analyze {}").format(raw))
        return
    locked, whole_table_done = threading.Event(), threading.Event()

    def analyze_partitions() -> None:
        with connect(location) as other, other.transaction():
            for partition in partitions:
                other.execute(
                    sql.SQL("lock table {} in share update exclusive mode").format(partition)
                )
            locked.set()
            for partition in partitions:
                other.execute(sql.SQL("analyze {}").format(partition))
            whole_table_done.wait()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cem-analyze") as pool:
        partitions_analyzed = pool.submit(analyze_partitions)
        try:
            while not locked.wait(0.05):
                if partitions_analyzed.done():
                    partitions_analyzed.result()  # it failed before locking: raise why
            with conn.transaction():
                # The other connection waits for this one: never wait for a lock forever.
                conn.execute("set local lock_timeout = '60s'")
                # Holding the whole table's lock first, SKIP_LOCKED can only skip partitions.
                conn.execute(
                    sql.SQL("lock table only {} in share update exclusive mode").format(raw)
                )
                conn.execute(sql.SQL("analyze (skip_locked) {}").format(raw))
        finally:
            whole_table_done.set()
        partitions_analyzed.result()


def raw_partition_name(contract: EntityContract, batch_id: str) -> str:
    return f"{contract.raw_table}__batch_{batch_id}"[:63]


def build_batch_key(
    conn: psycopg.Connection,
    contract: EntityContract,
    names: dict,
    batch_id: str,
    *,
    beside_the_suite: bool = True,
) -> None:
    """The primary-key index of a batch table that will become raw's partition.

    Built while the GX suite reads the table (an index build only blocks writers): as soon
    as the batch has landed, where the build is also the check that no key repeats (it
    raises UniqueViolation otherwise, and the loader drops it again if rows are rejected);
    or inside the publish transaction after the rejected rows are deleted, where a
    duplicate would mean the row rules let one through and the publish rolls back.
    """
    with conn.transaction():
        conn.execute("set local maintenance_work_mem = '256MB'")
        # ``beside_the_suite``: half the cores, as the suite's queries run on the others at
        # the same time, and a parallel build beside them only adds workers fighting for
        # the same cores (on two cores, without workers: the suite 0.45-0.49 s instead of
        # 0.52-0.59 s, the load about 2% shorter; docs/operations/ingestion.md, stop 19).
        # Alone (the suite reads no rows), every core.
        cores = os.cpu_count() or 1
        conn.execute(
            sql.SQL("set local max_parallel_maintenance_workers = {}").format(
                sql.Literal(max(0, (cores // 2 if beside_the_suite else cores) - 1))
            )
        )
        conn.execute(
            sql.SQL("create unique index {} on staging.{} ({})").format(
                _ident(batch_key_name(contract, batch_id)),
                _ident(names["typed"]),
                sql.SQL(", ").join(_ident(k) for k in contract.natural_key),
            )
        )


def batch_key_name(contract: EntityContract, batch_id: str) -> str:
    return f"{raw_partition_name(contract, batch_id)}_pkey"


def raw_columns_the_batch_lacks(
    conn: psycopg.Connection, contract: EntityContract, names: dict
) -> list[tuple[str, str]] | None:
    """Whether the typed batch table can become raw's partition, and what it must gain.

    None when it cannot: a column of it that raw lacks, or a column both have with another
    type or NOT NULL. Otherwise raw's columns it lacks (an earlier batch's new columns,
    which may be null), as (name, type): it gets them, empty, in adopt_batch_table.
    """
    rows = conn.execute(
        "select coalesce(r.attname, b.attname), r.attname is not null, b.attname is not null, "
        "format_type(r.atttypid, r.atttypmod), r.attnotnull, "
        "(r.atttypid, r.atttypmod, r.attnotnull) is not distinct from "
        "(b.atttypid, b.atttypmod, b.attnotnull) "
        "from (select * from pg_attribute where attrelid = format('raw.%%I', %s::text)::regclass "
        "      and attnum > 0 and not attisdropped and not attname = any(%s)) as r "
        "full join (select * from pg_attribute where attrelid = format('staging.%%I', %s::text)::regclass "
        "      and attnum > 0 and not attisdropped and attname <> '_reject_reason') as b "
        "on b.attname = r.attname",
        (contract.raw_table, list(BOOKKEEPING_COLUMNS), names["typed"]),
    ).fetchall()
    lacking = []
    for name, in_raw, in_batch, kind, required, same in rows:
        if not in_raw or (in_batch and not same) or (not in_batch and required):
            return None
        if not in_batch:
            lacking.append((name, kind))
    return lacking


def adopt_batch_table(
    conn: psycopg.Connection,
    contract: EntityContract,
    names: dict,
    batch_id: str,
    loaded_at,
    lacking: list[tuple[str, str]],
) -> None:
    """Make the batch table the storage of the empty ``raw.<entity>``: each row written once.

    Inside the publish transaction, after the suite passed and the rejected rows were
    deleted: raw's columns it ``lacking`` are added (empty), the bookkeeping columns with
    the batch's values as defaults (stored once in the catalog, not in each row), the key
    index becomes the primary key, and the table replaces raw's empty partition. Readers
    of raw wait for the commit (the detach locks the table), then see the whole batch.
    Rolled back with the transaction.
    """
    raw = _ident(contract.raw_table)
    partition = raw_partition_name(contract, batch_id)
    batch = sql.SQL("staging.{}").format(_ident(names["typed"]))
    conn.execute(sql.SQL("drop view staging.{}").format(_ident(names["accepted_view"])))
    drop_suite_constraints(conn, contract, names)
    values = {"_batch_id": batch_id, "_loaded_at": loaded_at, "_source": contract.source}
    conn.execute(
        sql.SQL("alter table {} drop column _reject_reason, {}").format(
            batch,
            sql.SQL(", ").join(
                [
                    *(
                        sql.SQL("add column {} {}").format(_ident(name), sql.SQL(kind))
                        for name, kind in lacking
                    ),
                    *(
                        sql.SQL("add column {} {} not null default {}").format(
                            _ident(name), sql.SQL(kind), sql.Literal(values[name])
                        )
                        for name, kind in BOOKKEEPING_COLUMNS.items()
                    ),
                ]
            ),
        )
    )
    conn.execute(
        sql.SQL("alter table {} {}, add constraint {} primary key using index {}").format(
            batch,
            sql.SQL(", ").join(
                sql.SQL("alter column {} drop default").format(_ident(name))
                for name in BOOKKEEPING_COLUMNS
            ),
            _ident(f"{partition}_pkey"),
            _ident(f"{partition}_pkey"),
        )
    )
    conn.execute(sql.SQL("alter table {} set schema raw").format(batch))
    conn.execute(
        sql.SQL("alter table raw.{} rename to {}").format(_ident(names["typed"]), _ident(partition))
    )
    for old in raw_partitions(conn, contract):
        conn.execute(sql.SQL("alter table raw.{} detach partition {}").format(raw, old))
        conn.execute(sql.SQL("drop table {}").format(old))
    # Raw's other indexes (the BRIN on _loaded_at) are built on the partition here.
    conn.execute(
        sql.SQL("alter table raw.{} attach partition raw.{} {}").format(
            raw, _ident(partition), _whole_key_range(contract)
        )
    )


def insert_into_empty_raw(
    conn: psycopg.Connection, contract: EntityContract, insert: sql.Composable, params: tuple
) -> int:
    """Insert a batch into an empty ``raw.<entity>``; returns the rows inserted.

    Building the primary key once over the sorted rows costs far less than updating it row
    by row, so the key is dropped and added back around the insert; so are the other
    indexes (the BRIN index on _loaded_at cost 0.6 s per million rows maintained row by
    row). This takes the table's exclusive lock until the publish commits: readers of the
    (empty) table wait that long. A key that a foreign key refers to stays in place.
    """
    raw = sql.SQL("raw.{}").format(_ident(contract.raw_table))
    # Indexes that back no constraint: dropped here, built again after the insert.
    indexes = conn.execute(
        "select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) from pg_index i "
        "where i.indrelid = format('raw.%%I', %s::text)::regclass "
        "and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)",
        (contract.raw_table,),
    ).fetchall()
    # All in the publish transaction: if anything fails, the drops roll back with it.
    for index, _ in indexes:
        conn.execute(sql.SQL("drop index {}").format(sql.SQL(index)))
    inserted = _insert_without_key(conn, contract, raw, insert, params)
    for _, definition in indexes:
        conn.execute(definition)
    return inserted


def _insert_without_key(
    conn: psycopg.Connection,
    contract: EntityContract,
    raw: sql.Composable,
    insert: sql.Composable,
    params: tuple,
) -> int:
    key = conn.execute(
        "select c.conname, pg_get_constraintdef(c.oid) from pg_constraint c "
        "where c.conrelid = format('raw.%%I', %s::text)::regclass and c.contype = 'p' "
        "and not exists (select 1 from pg_constraint f where f.confrelid = c.conrelid and f.contype = 'f')",
        (contract.raw_table,),
    ).fetchone()
    if key is None:
        return conn.execute(insert, params).rowcount
    name, definition = key
    conn.execute(sql.SQL("alter table {} drop constraint {}").format(raw, _ident(name)))
    inserted = conn.execute(insert, params).rowcount
    conn.execute("set local maintenance_work_mem = '256MB'")
    conn.execute(
        sql.SQL("alter table {} add constraint {} {}").format(
            raw, _ident(name), sql.SQL(definition)
        )
    )
    return inserted
