"""After a publication, bring the retired generation of the incremental marts up to date.

The swap leaves the previous marts in ``marts_build``, where the next build starts. An
incremental mart there is one build behind the published one, so the next build would
re-derive two deltas (the one it was published with, again, and the new one), and every
per-customer model reading its change log would recompute the customers of both.

Every row the last build changed in a logging mart is named in ``ops.mart_key_changes``
by its key, as it was in both generations and as it is now (macros/change_log.sql), so
the rows where the two generations differ are found without scanning the tables: rows of
the logged keys, compared column for column, replaced where they differ. A mart that
reads the log itself (``dim_customers``) takes the published table's position in the log
too, in the same transaction, so it continues from there.

Skipped, with the reason recorded in ``ops.mart_publications.retired_generation``, when the
mart was rebuilt in full (a null key in the log: copying it would cost what a build does),
when the retired table is missing or has other columns (the model changed), or when the
previous publication predates the change-log position. A skipped mart is simply caught up
by the next build, as before. Nothing here is visible to readers: ``marts_build`` is not
theirs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from cem_warehouse.transform.dbt import dbt_target_dir
from cem_warehouse.transform.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA

LOGGING_STRATEGY = "delete_insert_logging_keys"
READING_STRATEGY = "replace_changed_keys"


@dataclass(frozen=True)
class LoggedMart:
    """An incremental mart whose every replaced row is named in the change log."""

    name: str
    unique_key: str
    # SQL expressions over the table's columns, each logged as text (change_log_key)
    logged_keys: tuple[str, ...]
    # has its own position in the log (one per physical table, see change_log_reader)
    reads_change_log: bool


def logged_marts(manifest: dict) -> list[LoggedMart]:
    """The marts of the dbt project that log the key of every row they replace."""
    marts = []
    for node in manifest["nodes"].values():
        config = node.get("config", {})
        if (
            node.get("resource_type") != "model"
            or node.get("schema") != BUILD_SCHEMA
            or config.get("materialized") != "incremental"
            or not isinstance(config.get("unique_key"), str)
        ):
            continue
        strategy = config.get("incremental_strategy")
        if strategy == LOGGING_STRATEGY:
            keys = config["change_log_key"]
            keys = (keys,) if isinstance(keys, str) else tuple(keys)
        elif strategy == READING_STRATEGY and config.get("change_log_replaced_key"):
            keys = (config["change_log_replaced_key"],)
        else:
            continue
        marts.append(
            LoggedMart(
                name=node["alias"] or node["name"],
                unique_key=config["unique_key"],
                logged_keys=keys,
                reads_change_log=strategy == READING_STRATEGY,
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


def _catch_up(conn: psycopg.Connection, mart: LoggedMart, since: int, until: int) -> str:
    retired_table = conn.execute("select to_regclass(%s)", (f'{BUILD_SCHEMA}."{mart.name}"',))
    if retired_table.fetchone()[0] is None:
        return f"skipped: {BUILD_SCHEMA} has no {mart.name} (first publication)"
    columns = _columns(conn, PUBLISHED_SCHEMA, mart.name)
    if not columns or columns != _columns(conn, BUILD_SCHEMA, mart.name):
        return "skipped: the two generations have different columns; the next build rebuilds it"
    producer = f"{BUILD_SCHEMA}.{mart.name}"
    rebuilt_in_full = conn.execute(
        "select exists (select from ops.mart_key_changes where producer = %s "
        "and change_id > %s and change_id <= %s and key_value is null)",
        (producer, since, until),
    ).fetchone()[0]
    if rebuilt_in_full:
        return "skipped: rebuilt in full by the published build; the next build catches it up"

    published = sql.Identifier(PUBLISHED_SCHEMA, mart.name)
    retired = sql.Identifier(BUILD_SCHEMA, mart.name)
    key = sql.Identifier(mart.unique_key)
    names = [sql.Identifier(name) for name, _ in columns]
    column_list = sql.SQL(", ").join(names)

    def qualified(alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), n) for n in names)

    # Each logged key is an expression over the table's own columns (unqualified: it is
    # evaluated in a query over one table at a time).
    in_scope = sql.SQL(" or ").join(
        sql.SQL("cast({} as text) in (select key_value from retired_generation_scope)").format(
            sql.SQL(expression)
        )
        for expression in mart.logged_keys
    )
    conn.execute("drop table if exists retired_generation_scope")
    conn.execute(
        "create temp table retired_generation_scope on commit drop as "
        "select distinct key_value from ops.mart_key_changes "
        "where producer = %s and change_id > %s and change_id <= %s",
        (producer, since, until),
    )
    logged = conn.execute("select count(*) from retired_generation_scope").fetchone()[0]
    conn.execute("analyze retired_generation_scope")
    # The retired rows of the logged keys (as they were, or as the published rows' keys
    # are now) that differ from the published row of the same unique key, or have none.
    deleted = conn.execute(
        sql.SQL(
            "delete from {retired} as retired "
            "where retired.{key} in ("
            "select {key} from {retired} where {in_scope} "
            "union select {key} from {published} where {in_scope}) "
            "and not exists (select from {published} as published "
            "where published.{key} = retired.{key} "
            "and ({published_columns}) is not distinct from ({retired_columns}))"
        ).format(
            retired=retired,
            published=published,
            key=key,
            in_scope=in_scope,
            published_columns=qualified("published"),
            retired_columns=qualified("retired"),
        )
    ).rowcount
    inserted = conn.execute(
        sql.SQL(
            "insert into {retired} ({columns}) "
            "select {columns} from {published} as published where ({in_scope}) "
            "and not exists (select from {retired} as retired where retired.{key} = published.{key})"
        ).format(
            retired=retired, published=published, columns=column_list, in_scope=in_scope, key=key
        )
    ).rowcount
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
    return (
        f"caught up: {logged} keys logged, {deleted} rows replaced or removed, {inserted} written"
    )


def catch_up_retired_generation(
    conn: psycopg.Connection, *, publication_id: int, until_change_id: int
) -> dict[str, str]:
    """Bring every logging mart in ``marts_build`` up to the generation just published.

    Runs in the caller's transaction (after the swap has committed); returns, per mart,
    what was done or why it was skipped.
    """
    row = conn.execute(
        "select change_log_id from ops.mart_publications where publication_id < %s "
        "order by publication_id desc limit 1",
        (publication_id,),
    ).fetchone()
    marts = logged_marts(_manifest())
    if row is None or row[0] is None:
        reason = "skipped: no earlier publication recorded its position in the change log"
        return {mart.name: reason for mart in marts}
    return {mart.name: _catch_up(conn, mart, row[0], until_change_id) for mart in marts}
