"""SQL for the loader: raw, quarantine and per-batch tables, value checks, the publish.

Kept apart from :mod:`cem_warehouse.load.batch` so the batch's control flow reads on its own.
"""

from __future__ import annotations

import json
from functools import cache

import psycopg
from psycopg import sql

from cem_warehouse.load.contracts import EntityContract

_SQL_RULES = {
    "expect_column_values_to_not_be_null": "{col} is null",
    "expect_column_values_to_be_between": "{col} is not null and not ({col} between {min} and {max})",
    "expect_column_values_to_be_in_set": "{col} is not null and {col}::text not in ({values})",
    "expect_column_values_to_match_regex": "{col} is not null and {col}::text !~ {regex}",
}


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
        sql.SQL(s)
        for s in (
            "_batch_id text not null",
            "_loaded_at timestamptz not null",
            "_source text not null",
        )
    ]
    key = sql.SQL(", ").join(_ident(k) for k in contract.natural_key)
    exists = conn.execute("select to_regclass(%s)", (f"raw.{contract.raw_table}",)).fetchone()[0]
    conn.execute(
        sql.SQL("create table if not exists raw.{} ({}, primary key ({}))").format(
            _ident(contract.raw_table), sql.SQL(", ").join(columns), key
        )
    )
    if contract.description and exists is None:
        conn.execute(
            sql.SQL("comment on table raw.{} is {}").format(
                _ident(contract.raw_table), sql.Literal(contract.description)
            )
        )
    conn.execute(
        sql.SQL(
            "create table if not exists quarantine.{} (batch_id text not null, reason text not null, payload jsonb, "
            "quarantined_at timestamptz not null default now())"
        ).format(_ident(contract.raw_table))
    )


def record_batch_start(
    conn: psycopg.Connection, contract: EntityContract, batch_id: str, cursor_from: str | None
) -> None:
    conn.execute(
        "insert into ops.load_batches (batch_id, source, entity, cursor_from, status) values (%s, %s, %s, %s, 'running')",
        (batch_id, contract.source, contract.entity, cursor_from),
    )


def create_batch_tables(
    conn: psycopg.Connection,
    contract: EntityContract,
    names: dict,
    incoming: list[str],
    extra: list[str],
    first_load: tuple[str, str] | None = None,
) -> None:
    """Typed batch table (contract types), text twin for the slow path, accepted-rows view.

    ``first_load`` (batch id, source): ``raw.<entity>`` is empty, so the typed table is the
    *landed table*: logged and shaped exactly like raw (see :func:`_create_landed_table`),
    to be swapped in as raw at publish.
    """
    for column in extra:
        conn.execute(
            sql.SQL("alter table raw.{} add column if not exists {} text").format(
                _ident(contract.raw_table), _ident(column)
            )
        )
    if first_load is not None:
        _create_landed_table(conn, contract, names["typed"], *first_load)
    else:
        typed_columns = [
            sql.SQL("{} {}").format(_ident(c.name), sql.SQL(c.type)) for c in contract.columns
        ]
        typed_columns += [sql.SQL("{} text").format(_ident(c)) for c in extra]
        conn.execute(
            sql.SQL("create unlogged table staging.{} ({}, _reject_reason text)").format(
                _ident(names["typed"]), sql.SQL(", ").join(typed_columns)
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


def _suite_rules(entity: str) -> list[dict]:
    """The suite's row-level expectations that SQL enforces row by row (the same file GX runs)."""
    from cem_warehouse.quality.gx_runner import load_suite_definition

    return [e for e in load_suite_definition(entity)["expectations"] if e["type"] in _SQL_RULES]


def row_rule_reasons(contract: EntityContract) -> list[tuple[sql.Composable, str]]:
    """(predicate marking a bad row, reason) from the contract and the entity's suite."""
    rules: list[tuple[sql.Composable, str]] = []
    for key in contract.natural_key:
        rules.append((sql.SQL("{} is null").format(_ident(key)), f"{key} (natural key) is missing"))
    for column in contract.columns:
        if not column.nullable and column.name not in contract.natural_key:
            rules.append(
                (
                    sql.SQL("{} is null").format(_ident(column.name)),
                    f"{column.name} is required but missing",
                )
            )
    for column in contract.not_in_future:
        rules.append(
            (
                sql.SQL("{} > now() + interval '1 day'").format(_ident(column)),
                f"{column} is in the future (after the load)",
            )
        )
    for expectation in _suite_rules(contract.entity):
        kwargs = expectation["kwargs"]
        column = kwargs.get("column")
        if column not in contract.column_names:
            continue
        template = _SQL_RULES[expectation["type"]]
        predicate = sql.SQL(template).format(
            col=_ident(column),
            min=sql.Literal(kwargs.get("min_value")),
            max=sql.Literal(kwargs.get("max_value")),
            values=sql.SQL(", ").join(sql.Literal(str(v)) for v in kwargs.get("value_set", [None])),
            regex=sql.Literal(kwargs.get("regex")),
        )
        detail = {k: v for k, v in kwargs.items() if k != "column"}
        rules.append((predicate, f"{expectation['type']} on {column} {json.dumps(detail)}"))
    return rules


def publish_statements(
    conn: psycopg.Connection, contract: EntityContract, names: dict, batch_id: str, extra: list[str]
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
        for c in [*columns_of_record, "_batch_id", "_loaded_at", "_source"]
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
        "select {cols}, %s, now(), %s from staging.{t} where _reject_reason is null"
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
    params = (batch_id, contract.source)
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


def insert_into_empty_raw(
    conn: psycopg.Connection, contract: EntityContract, insert: sql.Composable, params: tuple
) -> int:
    """Insert a batch into an empty ``raw.<entity>``; returns the rows inserted.

    Building the primary key once over the sorted rows costs far less than updating it row
    by row, so the key is dropped and added back around the insert. This takes the table's
    exclusive lock until the publish commits: readers of the (empty) table wait that long.
    A key that a foreign key refers to stays in place.
    """
    raw = sql.SQL("raw.{}").format(_ident(contract.raw_table))
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


# ---- first load: the landed table becomes raw -------------------------------------------

BOOKKEEPING = ("_batch_id", "_loaded_at", "_source")


def raw_is_empty(conn: psycopg.Connection, contract: EntityContract) -> bool:
    return conn.execute(
        sql.SQL("select not exists (select 1 from raw.{})").format(_ident(contract.raw_table))
    ).fetchone()[0]


def _create_landed_table(
    conn: psycopg.Connection, contract: EntityContract, table: str, batch_id: str, source: str
) -> None:
    """A logged table shaped like ``raw.<entity>`` (its columns, in order, with raw's types
    and column comments), plus ``_reject_reason``.

    The bookkeeping columns are filled by defaults while COPY runs (``_loaded_at`` is the
    landing time). No column is ``not null`` yet, so rows breaking a rule land too and are
    judged like any batch; raw's ``not null`` and key come back at the swap.
    """
    landed = _ident(table)
    conn.execute(
        sql.SQL(
            "create table staging.{} (like raw.{} including defaults including storage "
            "including compression including comments, _reject_reason text)"
        ).format(landed, _ident(contract.raw_table))
    )
    not_null = [
        r[0]
        for r in conn.execute(
            "select attname from pg_attribute where attrelid = format('staging.%%I', %s::text)::regclass "
            "and attnum > 0 and not attisdropped and attnotnull",
            (table,),
        )
    ]
    changes = [sql.SQL("alter column {} drop not null").format(_ident(c)) for c in not_null]
    changes += [
        sql.SQL("alter column {} set default {}").format(_ident(c), value)
        for c, value in (
            ("_batch_id", sql.Literal(batch_id)),
            ("_loaded_at", sql.SQL("now()")),
            ("_source", sql.Literal(source)),
        )
    ]
    conn.execute(sql.SQL("alter table staging.{} {}").format(landed, sql.SQL(", ").join(changes)))


_SWAP_BLOCKERS = """
select concat_ws('; ',
    case when c.relkind <> 'r' or c.relpersistence <> 'p' then 'not a plain logged table' end,
    case when c.relrowsecurity then 'row-level security' end,
    case when c.relreplident <> 'd' then 'replica identity' end,
    case when c.reltablespace <> l.reltablespace or c.relam <> l.relam then 'tablespace or access method' end,
    case when exists (select 1 from pg_inherits i where i.inhrelid = c.oid or i.inhparent = c.oid) then 'inheritance' end,
    case when exists (select 1 from pg_trigger t where t.tgrelid = c.oid and not t.tgisinternal) then 'triggers' end,
    case when exists (select 1 from pg_index i where i.indrelid = c.oid and not i.indisprimary) then 'indexes besides the primary key' end,
    case when exists (select 1 from pg_constraint k where (k.conrelid = c.oid and k.contype not in ('p', 'n'))
                      or (k.confrelid = c.oid and k.conrelid <> c.oid)) then 'constraints besides the primary key' end,
    case when exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attacl is not null) then 'column privileges' end,
    case when exists (select 1 from pg_publication_rel p where p.prrelid = c.oid) then 'publication' end,
    case when exists (select 1 from pg_policy p where p.polrelid = c.oid) then 'policies' end,
    case when (select array_agg(row(a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation)::text order by a.attnum)
               from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
         is distinct from
              (select array_agg(row(a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation)::text order by a.attnum)
               from pg_attribute a where a.attrelid = l.oid and a.attnum > 0 and not a.attisdropped
               and a.attname <> '_reject_reason') then 'columns differ from the landed table' end
)
from pg_class c, pg_class l
where c.oid = format('raw.%%I', %s::text)::regclass and l.oid = format('staging.%%I', %s::text)::regclass
"""

# Views reading raw.<entity>, directly or through other views, shallowest first.
_DEPENDENT_VIEWS = """
with recursive dependents(oid, depth) as (
    select r.ev_class, 1 from pg_depend d join pg_rewrite r on r.oid = d.objid
    where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
      and d.refobjid = %s and r.ev_class <> d.refobjid
    union
    select r.ev_class, v.depth + 1 from dependents v
    join pg_depend d on d.refobjid = v.oid and d.classid = 'pg_rewrite'::regclass
        and d.refclassid = 'pg_class'::regclass
    join pg_rewrite r on r.oid = d.objid and r.ev_class <> v.oid
)
select c.relkind, n.nspname, c.relname, pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner),
       c.relacl::text is not null,
       (select coalesce(array_agg(array[case when g.grantee = 0 then 'public' else pg_get_userbyid(g.grantee)::text end,
                                        g.privilege_type, g.is_grantable::text]), '{}')
        from aclexplode(c.relacl) g),
       c.reloptions,
       (select coalesce(array_agg(array[coalesce(a.attname::text, ''), d.description]), '{}')
        from pg_description d left join pg_attribute a on a.attrelid = d.objoid and a.attnum = d.objsubid
        where d.objoid = c.oid and d.classoid = 'pg_class'::regclass),
       exists (select 1 from pg_trigger t where t.tgrelid = c.oid)
from (select oid, max(depth) as depth from dependents group by oid) v
join pg_class c on c.oid = v.oid join pg_namespace n on n.oid = c.relnamespace
order by v.depth, c.oid
"""

_TABLE_PROPERTIES = """
select c.oid, pg_get_userbyid(c.relowner), c.relacl::text is not null,
       (select coalesce(array_agg(array[case when g.grantee = 0 then 'public' else pg_get_userbyid(g.grantee)::text end,
                                        g.privilege_type, g.is_grantable::text]), '{}')
        from aclexplode(c.relacl) g),
       c.reloptions, obj_description(c.oid, 'pg_class'),
       (select array_agg(k.conname::text) from pg_constraint k where k.conrelid = c.oid and k.contype = 'p'),
       (select array_agg(pg_get_constraintdef(k.oid)) from pg_constraint k where k.conrelid = c.oid and k.contype = 'p'),
       (select coalesce(array_agg(a.attname::text order by a.attnum), '{}') from pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attnotnull),
       (select coalesce(array_agg(array[a.attname::text, pg_get_expr(d.adbin, d.adrelid)]), '{}')
        from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
from pg_class c where c.oid = format('raw.%%I', %s::text)::regclass
"""


class NotSwappable(Exception):
    """raw.<entity> carries something the swap would not reproduce: publish by inserting."""


def _grant_statements(
    target: sql.Composable, has_acl: bool, owner: str, grants: list[list[str]]
) -> list[sql.Composable]:
    """Statements giving ``target`` exactly the privileges of an ACL (none when it is the default)."""
    if not has_acl:
        return []
    statements = [sql.SQL("revoke all on {} from {}").format(target, _ident(owner))]
    for grantee, privilege, grantable in grants:
        statements.append(
            sql.SQL("grant {} on {} to {}{}").format(
                sql.SQL(privilege),
                target,
                sql.SQL("public") if grantee == "public" else _ident(grantee),
                sql.SQL(" with grant option" if grantable == "true" else ""),
            )
        )
    return statements


def swap_in_landed_table(
    conn: psycopg.Connection,
    contract: EntityContract,
    landed: str,
    accepted_view: str,
    reject_rows: bool,
) -> int:
    """Make the landed table ``raw.<entity>``; returns its rows. Raises NotSwappable.

    Inside the caller's publish transaction, after the rejected rows were quarantined:
    under an exclusive lock on raw (readers of the empty table wait for the commit), when
    raw is still empty and carries nothing the swap would not reproduce, the rejected rows
    are deleted from the landed table, views reading raw are dropped, raw is dropped, the
    landed table renamed into its place, and raw's not-null columns, primary key, defaults,
    comment, owner, grants, storage options and the views (with theirs) are restored.
    """
    from cem_warehouse.load import failpoints

    raw_name = contract.raw_table
    raw = sql.SQL("raw.{}").format(_ident(raw_name))
    if not raw_is_empty(conn, contract):
        raise NotSwappable("raw is not empty")
    conn.execute(sql.SQL("lock table {} in access exclusive mode").format(raw))
    if not raw_is_empty(conn, contract):
        raise NotSwappable("raw is not empty")
    search_path = conn.execute("select current_setting('search_path')").fetchone()[0]
    # Definitions (views, defaults) are printed, and read back, with every name qualified.
    conn.execute("select set_config('search_path', 'pg_catalog', true)")
    blockers = conn.execute(_SWAP_BLOCKERS, (raw_name, landed)).fetchone()[0]
    if blockers:
        raise NotSwappable(blockers)
    (
        raw_oid,
        owner,
        has_acl,
        grants,
        options,
        comment,
        key_names,
        key_definitions,
        not_null,
        defaults,
    ) = conn.execute(_TABLE_PROPERTIES, (raw_name,)).fetchone()
    views = conn.execute(_DEPENDENT_VIEWS, (raw_oid,)).fetchall()
    if any(v[0] != "v" or v[9] for v in views):
        raise NotSwappable("a materialized view or a view with triggers reads raw")
    table = sql.SQL("staging.{}").format(_ident(landed))
    if reject_rows:
        conn.execute(sql.SQL("delete from {} where _reject_reason is not null").format(table))
    conn.execute(sql.SQL("drop view staging.{}").format(_ident(accepted_view)))
    conn.execute(sql.SQL("alter table {} drop column _reject_reason").format(table))
    rows = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0]
    for _, schema, name, *_ in reversed(views):
        conn.execute(sql.SQL("drop view {}.{}").format(_ident(schema), _ident(name)))
    conn.execute(sql.SQL("drop table {}").format(raw))
    conn.execute(sql.SQL("alter table {} set schema raw").format(table))
    conn.execute(
        sql.SQL("alter table raw.{} rename to {}").format(_ident(landed), _ident(raw_name))
    )
    failpoints.reach("during_swap")
    # raw's defaults (none, as the loader creates it) replace the landing defaults.
    changes = [
        sql.SQL("alter column {} set default {}").format(_ident(c), sql.SQL(expr))
        if expr is not None
        else sql.SQL("alter column {} drop default").format(_ident(c))
        for c, expr in defaults
    ]
    # One scan checks every not-null column.
    changes += [sql.SQL("alter column {} set not null").format(_ident(c)) for c in not_null]
    conn.execute(sql.SQL("alter table {} {}").format(raw, sql.SQL(", ").join(changes)))
    conn.execute("set local maintenance_work_mem = '256MB'")
    for name, definition in zip(key_names or [], key_definitions or [], strict=True):
        conn.execute(
            sql.SQL("alter table {} add constraint {} {}").format(
                raw, _ident(name), sql.SQL(definition)
            )
        )
    if comment is not None:
        conn.execute(sql.SQL("comment on table {} is {}").format(raw, sql.Literal(comment)))
    if options:
        conn.execute(
            sql.SQL("alter table {} set ({})").format(
                raw, sql.SQL(", ").join(sql.SQL(o) for o in options)
            )
        )
    conn.execute(sql.SQL("alter table {} owner to {}").format(raw, _ident(owner)))
    for statement in _grant_statements(raw, has_acl, owner, grants):
        conn.execute(statement)
    for (
        _,
        schema,
        name,
        definition,
        view_owner,
        view_acl,
        view_grants,
        view_options,
        comments,
        _,
    ) in views:
        view = sql.SQL("{}.{}").format(_ident(schema), _ident(name))
        with_options = (
            sql.SQL(" with ({})").format(sql.SQL(", ").join(sql.SQL(o) for o in view_options))
            if view_options
            else sql.SQL("")
        )
        conn.execute(
            sql.SQL("create view {}{} as {}").format(view, with_options, sql.SQL(definition))
        )
        conn.execute(sql.SQL("alter view {} owner to {}").format(view, _ident(view_owner)))
        for statement in _grant_statements(view, view_acl, view_owner, view_grants):
            conn.execute(statement)
        for column, text in comments:
            target = (
                sql.SQL("column {}.{}").format(view, _ident(column))
                if column
                else sql.SQL("view {}").format(view)
            )
            conn.execute(sql.SQL("comment on {} is {}").format(target, sql.Literal(text)))
    conn.execute("select set_config('search_path', %s, true)", (search_path,))
    return rows
