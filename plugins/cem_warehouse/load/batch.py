"""One batch, from landed rows to published raw rows, all-or-nothing.

    land (COPY) -> reject bad rows | publish in one transaction
                -> validate (GX)   | (side by side; the publish commits only on a pass)

* **Land.** The batch is COPYed straight into a typed batch table: PostgreSQL parses it at
  COPY speed, over one connection per core for a large batch. When that COPY fails on a bad
  value, the batch is landed again into text columns and each value is checked in SQL, so
  one bad value costs one row, not the batch. The table is unlogged scratch, except into
  an empty raw table: then it is logged, with raw's NOT NULLs, to become raw's storage.
* **Reject.** Rows that break a rule (type, required column, key, a row-level expectation
  from the entity's suite, duplicate key in the batch) are marked with the reason. A clean
  batch (the usual case) is not checked row by row twice: when the suite finds no row
  breaking its expectations and one light scan finds nothing else (key index or distinct
  keys, the contract's other rules), no row needs marking.
* **Validate.** The entity's Great Expectations suite runs on the accepted rows as SQL, with
  the batch-level checks (size, volume against recent batches, share of rejected rows),
  from the end of the landing, beside the rejecting and the publish (again after the
  rejecting when that marked rows); a failing suite rolls the publish back.
* **Publish.** One transaction: quarantine the rejected rows with their payload and reason,
  upsert the accepted rows into ``raw.<entity>`` (the newer version of a record wins, so
  batches can arrive in any order), record the batch and move the cursor. Into an empty
  raw table the batch table, without its rejected rows, becomes raw's only partition:
  each row is written once.

Nothing in ``raw`` or the cursors changes before the publish commit, so a worker killed
at any point leaves them as they were; the next run drops the dead batch's tables.
Invariant, recorded per batch: rows received = rows published + rows quarantined.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from cem_warehouse.errors import CemError
from cem_warehouse.load import failpoints
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.load.parallel_copy import copy_in_parallel, copy_streams
from cem_warehouse.load.policy import SourcePolicy
from cem_warehouse.load.tables import (
    batch_table_names,
    drop_batch_tables,
    ensure_entity_tables,
    record_batch_start,
    typed_expression,
    validity_predicate,
)
from cem_warehouse.quality.gx_runner import (
    SuiteRun,
    ValidationOutcome,
    conclude_batch_validation,
    prepare_batch_suite,
)
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

CopyChunks = Callable[[], Iterator[bytes]]
log = logging.getLogger(__name__)


class BatchBlocked(CemError):
    """A batch failed a critical check: nothing was published."""


@dataclass
class IncomingBatch:
    """What an extractor hands the loader.

    ``chunks`` re-opens the data as CSV bytes (no header) in ``columns`` order; it is called
    a second time when the fast typed COPY meets a bad value. ``rejected`` holds records the
    extractor could not even parse (payload, reason): they are quarantined with the batch.
    """

    columns: list[str]
    chunks: CopyChunks
    cursor_from: str | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)
    source_types: dict[str, str] = field(default_factory=dict)
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    description: str = ""
    # Runs inside the publish transaction (e.g. remember a landed file as loaded).
    on_publish: Callable[[psycopg.Connection, str], None] | None = None
    # Frees the extractor's spool once the batch is done, whatever happened.
    cleanup: Callable[[], None] | None = None
    # True when values come typed from a database (its own COPY output): COPY straight into
    # typed columns. Files and APIs send text, which is judged value by value first.
    trusted_types: bool = False
    # The newest cursor value among the rows, when the extractor read it in the same
    # snapshot as the rows (a database source: one index lookup there). A clean batch then
    # advances the cursor to it without a scan of the landed rows; None: the loader finds it.
    newest_cursor_value: str | None = None


@dataclass
class Judged:
    """What the row rules found in a landed batch (counted in one scan)."""

    broke_rules: int  # rows quarantined for breaking a rule (not duplicates)
    accepted: int  # rows to publish
    distinct_keys: int
    cursor_to: str | None  # newest cursor value of the accepted rows
    invalid: int = 0  # rows whose values were not even of their column's type
    marked: bool = False  # rows were given a reject reason (the accepted rows changed)
    key_built: bool = False  # the batch table already has raw's key index


@dataclass
class BatchOutcome:
    batch_id: str
    entity: str
    status: str
    rows_received: int
    rows_published: int
    rows_quarantined: int
    rows_changed: int
    cursor_to: str | None
    validation: ValidationOutcome | None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class BatchLoader:
    """Loads batches of one entity under one source policy."""

    def __init__(
        self,
        location: WarehouseLocation,
        contract: EntityContract,
        policy: SourcePolicy,
        *,
        initial_load: bool | None = None,
    ) -> None:
        self.location = location
        self.contract = contract
        self.policy = policy
        # Every batch of a run that starts with nothing published is part of the initial
        # load (a backfill, often split into chunks): recorded so that later volume checks
        # do not compare a normal day with it. None (not known): judged by the cursor.
        self.initial_load = initial_load

    # ---- schema drift --------------------------------------------------------------------
    def _check_drift(self, incoming: IncomingBatch) -> list[str]:
        """New columns to carry (policy ``add``); raises BatchBlocked otherwise."""
        contract = self.contract
        known = set(contract.column_names)
        new = [c for c in incoming.columns if c not in known]
        missing_required = [
            c.name for c in contract.columns if not c.nullable and c.name not in incoming.columns
        ]
        if missing_required:
            raise BatchBlocked(
                f"{contract.entity}: required column(s) {missing_required} missing from the batch; "
                "the source contract changed: fix the source or update the contract."
            )
        changed = [
            f"{name} ({contract.column(name).type} -> {kind})"
            for name, kind in incoming.source_types.items()
            if name in known and contract.column(name).locked and kind != contract.column(name).type
        ]
        if changed:
            raise BatchBlocked(
                f"{contract.entity}: type change on locked column(s) {', '.join(changed)}"
            )
        if new and self.policy.schema_drift == "block":
            raise BatchBlocked(
                f"{contract.entity}: new column(s) {new} and schema_drift is 'block' for {self.policy.name}: "
                "add them to the contract, or set schema_drift: add in the sources config."
            )
        return new

    # ---- the batch -------------------------------------------------------------------------
    def load(self, incoming: IncomingBatch) -> BatchOutcome:
        try:
            return self._load(incoming)
        finally:
            if incoming.cleanup is not None:
                incoming.cleanup()

    def _load(self, incoming: IncomingBatch) -> BatchOutcome:
        # One connection carries the load from the ledger's first line to its last (the
        # landing's first COPY stream, the judging, the publish, the statistics): a new
        # connection costs 5-35 ms on a busy machine (the embedded server authenticates with
        # SCRAM), and a load opened twelve of them, five on the path it waits for.
        with connect(self.location, autocommit=True) as conn:
            return self._load_on(conn, incoming)

    def _load_on(self, conn: psycopg.Connection, incoming: IncomingBatch) -> BatchOutcome:
        contract = self.contract
        names = batch_table_names(contract, incoming.batch_id)
        ensure_entity_tables(conn, contract)
        record_batch_start(
            conn,
            contract,
            incoming.batch_id,
            incoming.cursor_from,
            initial_load=self.initial_load,
        )
        where = (
            f"{contract.entity} ({incoming.description})"
            if incoming.description
            else contract.entity
        )
        received = bad_total = 0
        try:
            if not incoming.columns and not incoming.rejected:
                if not self.policy.allow_empty:
                    raise BatchBlocked(
                        f"{where}: the batch is empty (no header, no rows) and source {self.policy.name} must not "
                        "be empty (allow_empty: false): check the export, then remove or replace the file."
                    )
                incoming.columns = list(contract.natural_key)
            extra_columns = self._check_drift(incoming)
            timings: dict[str, float] = {}

            def timed(step: Callable[[], ValidationOutcome | SuiteRun | None]):
                # validate_seconds: all the time the suite takes (set up, queries, Data Docs).
                def run():
                    started = time.perf_counter()
                    try:
                        return step()
                    finally:
                        timings["validate_seconds"] = timings.get("validate_seconds", 0.0) + (
                            time.perf_counter() - started
                        )

                return run

            # The suite runs on its own connections, beside the judging and the publish
            # transaction: all of them only read the accepted rows, and the publish commits
            # only once the suite has passed (a failing suite rolls the writes back), so
            # nothing unvalidated is ever visible. On two cores this hides most of its time.
            # One worker, so its steps run in the order they are submitted: GX is set up
            # while the batch lands, validates once it has landed, and renders its Data
            # Docs while the batch is published.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cem-gx") as pool:
                prepared: Future[SuiteRun] | None = None

                def set_up_suite() -> None:
                    nonlocal prepared
                    prepared = pool.submit(
                        timed(
                            lambda: prepare_batch_suite(
                                self.location,
                                contract=contract,
                                policy=self.policy,
                                table=names["accepted_view"],
                                rows_from=names["typed"],
                            )
                        )
                    )

                def validate() -> Future[ValidationOutcome]:
                    return pool.submit(timed(lambda: prepared.result().validate()))

                clock = time.perf_counter()
                # Batch tables are dropped after a crash anyway: their commits need not wait
                # for the WAL flush (the publish's commit flushes what it adopts, and turns
                # the wait back on for itself).
                conn.execute("set synchronous_commit = off")
                landed, invalid, as_raw_storage = self._land(
                    conn, incoming, names, extra_columns, tables_created=set_up_suite
                )
                received = landed + len(incoming.rejected)
                suite = validate()
                judged = self._judge_clean_batch(
                    conn,
                    names,
                    incoming,
                    suite,
                    as_raw_storage=as_raw_storage,
                    rows_in_table=landed - invalid,
                    suite_reads_rows=prepared.result().reads_rows,
                ) or self._mark_rejects(conn, names["typed"], extra_columns)
                if judged.marked:
                    # Rows left the accepted ones while the suite read them: it runs
                    # again on what will be published (after the first run, same worker).
                    suite = validate()
                pool.submit(timed(lambda: prepared.result().build_docs()))
                judged.invalid = invalid
                # Duplicates are quarantined for the record but are not bad data: a replay is normal.
                bad_total = judged.broke_rules + len(incoming.rejected) + invalid
                timings["land_seconds"] = time.perf_counter() - clock
                failpoints.reach("before_publish")

                def validated() -> ValidationOutcome:
                    return conclude_batch_validation(
                        self.location,
                        suite.result(),
                        policy=self.policy,
                        batch_id=incoming.batch_id,
                        rows_received=received,
                        rows_rejected=bad_total,
                    )

                clock = time.perf_counter()
                outcome = self._publish(
                    conn,
                    incoming,
                    names,
                    received,
                    validated,
                    where,
                    extra_columns,
                    judged,
                    as_raw_storage=as_raw_storage,
                )
            outcome.timings = {**timings, "publish_seconds": time.perf_counter() - clock}
            conn.execute(
                "update ops.load_batches set land_seconds = %s, validate_seconds = %s, publish_seconds = %s "
                "where batch_id = %s",
                (
                    *(
                        round(outcome.timings[k], 3)
                        for k in ("land_seconds", "validate_seconds", "publish_seconds")
                    ),
                    incoming.batch_id,
                ),
            )
            return outcome
        except BatchBlocked as blocked:
            self._finish_blocked(incoming.batch_id, names, str(blocked), received, bad_total)
            raise
        except BaseException:
            # Leave the ledger honest; tables are dropped by the next run of this source.
            self._finish_failed(incoming.batch_id)
            raise

    def _land(
        self,
        conn: psycopg.Connection,
        incoming: IncomingBatch,
        names: dict,
        extra: list[str],
        *,
        tables_created: Callable[[], None],
    ) -> tuple[int, int, bool]:
        """COPY the batch in; returns (rows landed, rows of them not even valid values,
        whether the typed table is landed to become raw's storage).

        Typed sources (a database's own COPY output) go straight into the typed table. Text
        sources (files, APIs) land as text, so every value can be judged before it is cast.
        Into an empty raw table the typed table is landed as raw's storage: logged, with
        raw's NOT NULLs (the source's writer lock keeps raw empty until the publish, which
        checks again).
        """
        from cem_warehouse.load.tables import (
            add_suite_constraints,
            create_batch_tables,
            drop_suite_constraints,
            raw_is_partitioned_and_empty,
        )

        as_raw_storage = raw_is_partitioned_and_empty(conn, self.contract)
        create_batch_tables(
            conn, self.contract, names, incoming.columns, extra, as_raw_storage=as_raw_storage
        )
        if incoming.trusted_types:
            add_suite_constraints(conn, self.contract, names, as_raw_storage=as_raw_storage)
        tables_created()
        typed = sql.Identifier(names["typed"])
        text = sql.Identifier(names["text"])
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in incoming.columns)
        if incoming.trusted_types:
            try:
                landed = self._copy_in(conn, typed, columns, incoming.chunks, freeze=True)
                return landed, 0, as_raw_storage
            except (
                psycopg.errors.DataError,
                psycopg.errors.NotNullViolation,
                psycopg.errors.CheckViolation,
                psycopg.errors.BadCopyFileFormat,
            ):
                conn.execute(sql.SQL("truncate staging.{}").format(typed))
                drop_suite_constraints(conn, self.contract, names)
                # The suite was set up to take the constraints' word: set it up again.
                tables_created()
        landed = self._copy_in(conn, text, columns, incoming.chunks, freeze=False)
        self._move_valid_text_rows(conn, names, incoming.columns)
        invalid = conn.execute(
            sql.SQL("select count(*) from staging.{} where _invalid").format(text)
        ).fetchone()[0]
        return landed, invalid, as_raw_storage

    def _copy_in(
        self,
        conn: psycopg.Connection,
        table: sql.Identifier,
        columns: sql.Composable,
        chunks: Callable[[], Iterable[bytes]],
        *,
        freeze: bool,
    ) -> int:
        """COPY the batch's CSV into the (empty) batch ``table``; returns the rows copied.

        Over several connections when the machine has the cores (see ``parallel_copy``);
        over this one otherwise, where a table emptied in the same transaction may take the
        rows frozen, so later scans need not look up (and set) each row's commit status.
        """
        streams = copy_streams()
        if streams > 1:
            return copy_in_parallel(
                lambda: connect(self.location, autocommit=True),
                sql.SQL("copy staging.{} ({}) from stdin (format csv)").format(table, columns),
                chunks(),
                streams,
                first=conn,
            )
        with conn.transaction():
            if freeze:
                conn.execute(sql.SQL("truncate staging.{}").format(table))
            return _copy(
                conn,
                sql.SQL("copy staging.{} ({}) from stdin (format csv{})").format(
                    table, columns, sql.SQL(", freeze" if freeze else "")
                ),
                chunks(),
            )

    def _flag_invalid(
        self,
        conn: psycopg.Connection,
        text: sql.Identifier,
        checks: list[tuple[str, sql.Composable, str]],
    ) -> None:
        """Mark text rows whose values fail ``checks`` (column, predicate that holds when fine, problem)."""
        if not checks:
            return
        reason = sql.SQL("concat_ws('; ', {})").format(
            sql.SQL(", ").join(
                sql.SQL(
                    "case when not {ok} then {msg} || coalesce(quote_literal({col}), 'null') end"
                ).format(
                    ok=predicate, msg=sql.Literal(f"{name}: {problem}: "), col=sql.Identifier(name)
                )
                for name, predicate, problem in checks
            )
        )
        conn.execute(
            sql.SQL(
                "update staging.{t} set _invalid = true, _reject_reason = concat_ws('; ', _reject_reason, {r}) "
                "where not ({ok})"
            ).format(t=text, r=reason, ok=sql.SQL(" and ").join(p for _, p, _ in checks))
        )

    def _flag_missing_required(
        self, conn: psycopg.Connection, text: sql.Identifier, columns: list[str]
    ) -> None:
        """Mark text rows missing a key or required value, with the row rule's reason: a typed
        table that will become raw's storage refuses them (NOT NULL), as raw would."""
        from cem_warehouse.load.tables import required_columns

        required = {c: r for c, r in required_columns(self.contract).items() if c in columns}
        if not required:
            return
        conn.execute(
            sql.SQL(
                "update staging.{t} set _invalid = true, "
                "_reject_reason = concat_ws('; ', _reject_reason, {reasons}) where {missing}"
            ).format(
                t=text,
                reasons=sql.SQL(", ").join(
                    sql.SQL("case when {} is null then {} end").format(
                        sql.Identifier(c), sql.Literal(r)
                    )
                    for c, r in required.items()
                ),
                missing=sql.SQL(" or ").join(
                    sql.SQL("{} is null").format(sql.Identifier(c)) for c in required
                ),
            )
        )

    def _move_valid_text_rows(
        self, conn: psycopg.Connection, names: dict, columns: list[str]
    ) -> None:
        text = sql.Identifier(names["text"])
        self._flag_missing_required(conn, text, columns)
        typed_columns = [
            c
            for c in columns
            if c in self.contract.column_names and self.contract.column(c).type != "text"
        ]
        # PostgreSQL reads 'yesterday', 'now', 'epoch' and 'infinity' as times; no source means them.
        temporal = [
            c
            for c in typed_columns
            if self.contract.column(c).type.startswith(("timestamp", "date", "time"))
        ]
        self._flag_invalid(
            conn,
            text,
            [
                (
                    c,
                    sql.SQL(r"({0} is null or {0} ~ '^\s*[0-9]')").format(sql.Identifier(c)),
                    "not an ISO date/time",
                )
                for c in temporal
            ],
        )
        insert = sql.SQL(
            "insert into staging.{typed} ({cols}) select {exprs} from staging.{text} where not _invalid"
        ).format(
            typed=sql.Identifier(names["typed"]),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            exprs=sql.SQL(", ").join(typed_expression(self.contract, c) for c in columns),
            text=text,
        )
        try:
            # Usually every value casts: one set-based insert, no per-value checks.
            with conn.transaction():
                conn.execute(insert)
            return
        except psycopg.errors.DataError:
            pass
        self._flag_invalid(
            conn,
            text,
            [
                (
                    c,
                    validity_predicate(conn, c, self.contract.column(c).type),
                    f"not a valid {self.contract.column(c).type}",
                )
                for c in typed_columns
            ],
        )
        conn.execute(insert)

    def _judge_clean_batch(
        self,
        conn: psycopg.Connection,
        names: dict,
        incoming: IncomingBatch,
        suite: Future[ValidationOutcome],
        *,
        as_raw_storage: bool,
        rows_in_table: int,
        suite_reads_rows: bool = True,
    ) -> Judged | None:
        """Judge a batch that breaks no row rule without checking its rows twice: None when
        a rule may be broken or a key repeats (then ``_mark_rejects`` finds the rows).

        The suite, already running, checks the rules that come from it in every row. This
        scan adds only what it does not check (the contract's rules that no NOT NULL of the
        table enforces), the distinct keys (or, for a table that will become raw's storage,
        its key index, which refuses duplicates) and the newest cursor value. The rows are
        clean when that scan finds nothing and the suite found no row breaking one of its
        rules; its result then also validates what is published, as nothing was marked.
        A table becoming raw's storage, with no such rule and the newest cursor value from
        the extractor, needs no scan at all: the key index is built at once.
        """
        from cem_warehouse.load.tables import (
            batch_key_name,
            build_batch_key,
            row_rule_reasons,
            suite_row_rules,
        )

        contract = self.contract
        batch_id = incoming.batch_id
        table = sql.Identifier(names["typed"])
        unchecked = row_rule_reasons(contract, required=not as_raw_storage, from_suite=False)
        key = sql.SQL(", ").join(sql.Identifier(k) for k in contract.natural_key)
        if (
            as_raw_storage
            and not unchecked
            and (contract.cursor_column is None or incoming.newest_cursor_value is not None)
        ):
            # Nothing left to scan for: every landed row is a candidate (none is marked yet),
            # the key index finds duplicates, and the cursor value only needs raw's text form.
            rows, broken, distinct = rows_in_table, 0, None
            cursor_to = (
                conn.execute(
                    sql.SQL("select cast(cast(%s as {}) as text)").format(
                        sql.SQL(contract.column(contract.cursor_column).type)
                    ),
                    (incoming.newest_cursor_value,),
                ).fetchone()[0]
                if contract.cursor_column
                else None
            )
        else:
            rows, broken, distinct, cursor_to = self._light_scan(
                conn, table, unchecked, key, as_raw_storage=as_raw_storage
            )
        if broken or (distinct is not None and distinct != rows):
            return None
        key_built = False
        if as_raw_storage and rows:
            try:
                build_batch_key(conn, contract, names, batch_id, beside_the_suite=suite_reads_rows)
            except psycopg.errors.UniqueViolation:
                return None
            key_built = True
        rules = {(e["type"], e["kwargs"]["column"]) for e in suite_row_rules(contract)}
        counted = [o for o in suite.result().outcomes if (o.expectation_type, o.column) in rules]
        # Every rule counted by the suite, and none with a row breaking it.
        if {(o.expectation_type, o.column) for o in counted} != rules or any(
            o.unexpected_count != 0 for o in counted
        ):
            if key_built:
                # Rows will be rejected: the publish builds the key on the rows left.
                conn.execute(
                    sql.SQL("drop index staging.{}").format(
                        sql.Identifier(batch_key_name(contract, batch_id))
                    )
                )
            return None
        return Judged(
            broke_rules=0,
            accepted=rows,
            distinct_keys=rows,
            cursor_to=cursor_to,
            key_built=key_built,
        )

    def _light_scan(
        self,
        conn: psycopg.Connection,
        table: sql.Identifier,
        unchecked: list[tuple[sql.Composable, str]],
        key: sql.Composable,
        *,
        as_raw_storage: bool,
    ) -> tuple[int, int, int | None, str | None]:
        """One scan of the candidate rows: (rows, rows breaking an ``unchecked`` rule, distinct
        keys or None where the key index will find duplicates, newest cursor value)."""
        contract = self.contract
        with conn.transaction():
            conn.execute("set local work_mem = '256MB'")
            return conn.execute(
                sql.SQL(
                    "select count(*), count(*) filter (where {broken}), {distinct}, {cursor} "
                    "from staging.{t} where _reject_reason is null"
                ).format(
                    broken=sql.SQL(" or ").join(p for p, _ in unchecked)
                    if unchecked
                    else sql.SQL("false"),
                    # The key index finds duplicates in the same sort that builds it.
                    distinct=sql.SQL("null::bigint")
                    if as_raw_storage
                    else sql.SQL("count(distinct ({}))").format(key),
                    cursor=sql.SQL("max({})::text").format(sql.Identifier(contract.cursor_column))
                    if contract.cursor_column
                    else sql.SQL("null::text"),
                    t=table,
                )
            ).fetchone()

    def _mark_rejects(self, conn: psycopg.Connection, typed_table: str, extra: list[str]) -> Judged:
        """Row rules: required values, a usable key, one row per key (the newest wins).

        One scan finds how many rows break a rule, how many distinct keys the others have and
        their newest cursor value. A clean batch (the usual case) needs nothing more; rows are
        only updated with their reason when some break a rule or share a key.
        """
        from cem_warehouse.load.tables import content_hash, data_columns, row_rule_reasons

        table = sql.Identifier(typed_table)
        rules = row_rule_reasons(self.contract)
        key = sql.SQL(", ").join(sql.Identifier(k) for k in self.contract.natural_key)
        broken = (
            sql.SQL("({}) is true").format(sql.SQL(" or ").join(p for p, _ in rules))
            if rules
            else sql.SQL("false")
        )
        judged = self._accepted_stats(conn, table, key, broken)
        if judged.broke_rules:
            # The first rule a row breaks is its reason.
            first_broken = sql.SQL("case {} end").format(
                sql.SQL(" ").join(
                    sql.SQL("when {} then {}").format(p, sql.Literal(r)) for p, r in rules
                )
            )
            conn.execute(
                sql.SQL(
                    "update staging.{t} set _reject_reason = {reason} where _reject_reason is null and {broken}"
                ).format(t=table, reason=first_broken, broken=broken)
            )
        judged.marked = judged.broke_rules > 0
        if judged.distinct_keys == judged.accepted:
            return judged
        version = (
            sql.SQL("{} desc nulls last, ").format(sql.Identifier(self.contract.version_column))
            if self.contract.version_column
            else sql.SQL("")
        )
        # Among duplicates the newest version wins; exact ties fall back to content, not arrival order.
        conn.execute(
            sql.SQL(
                "update staging.{t} as b set _reject_reason = 'duplicate key in batch: a newer or equal version of this record is in the same batch' "
                "from (select ctid as row_ref, row_number() over (partition by {key} order by {version} {content} desc) as rank "
                "      from staging.{t} where _reject_reason is null) as ranked "
                "where b.ctid = ranked.row_ref and ranked.rank > 1"
            ).format(
                t=table,
                key=key,
                version=version,
                content=content_hash(None, data_columns(self.contract, extra)),
            )
        )
        deduplicated = self._accepted_stats(
            conn, table, key, sql.SQL("false"), broke_rules=judged.broke_rules
        )
        deduplicated.marked = True
        return deduplicated

    def _accepted_stats(
        self,
        conn: psycopg.Connection,
        table: sql.Identifier,
        key: sql.Composable,
        broken: sql.Composable,
        broke_rules: int | None = None,
    ) -> Judged:
        """One scan of the rows without a reason yet: rule breakers, and of the others the
        count, distinct keys and newest cursor value."""
        cursor = (
            sql.SQL("max({}) filter (where not _broken)::text").format(
                sql.Identifier(self.contract.cursor_column)
            )
            if self.contract.cursor_column
            else sql.SQL("null::text")
        )
        distinct = (
            sql.SQL("count(distinct ({}))").format(key)
            if len(self.contract.natural_key) > 1
            else sql.SQL("count(distinct {})").format(key)
        )
        columns = dict.fromkeys(
            [*self.contract.natural_key, *filter(None, [self.contract.cursor_column])]
        )
        with conn.transaction():
            # Counting distinct keys sorts them: in memory, not in temporary files.
            conn.execute("set local work_mem = '256MB'")
            row = conn.execute(
                sql.SQL(
                    "select count(*) filter (where _broken), count(*) filter (where not _broken), "
                    "{distinct} filter (where not _broken), {cursor} "
                    # offset 0: each row's rules are evaluated once, not once per aggregate.
                    "from (select {columns}, {broken} as _broken from staging.{t} where _reject_reason is null offset 0) as b"
                ).format(
                    distinct=distinct,
                    cursor=cursor,
                    broken=broken,
                    t=table,
                    columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                )
            ).fetchone()
        return Judged(
            broke_rules=row[0] if broke_rules is None else broke_rules,
            accepted=row[1],
            distinct_keys=row[2],
            cursor_to=row[3],
        )

    def _publish(
        self,
        conn: psycopg.Connection,
        incoming: IncomingBatch,
        names: dict,
        received: int,
        validated: Callable[[], ValidationOutcome],
        where: str,
        extra: list[str],
        judged: Judged,
        *,
        as_raw_storage: bool = False,
    ) -> BatchOutcome:
        from cem_warehouse.load.tables import (
            adopt_batch_table,
            begin_raw_publish,
            build_batch_key,
            insert_into_empty_raw,
            publish_statements,
            raw_columns_the_batch_lacks,
            refresh_statistics,
        )

        contract = self.contract
        with conn.transaction():
            # The landing turned the session's WAL-flush wait off; a published batch must
            # survive a crash the moment its task reports it.
            conn.execute("set local synchronous_commit = on")
            loaded_at = begin_raw_publish(conn)
            statements = publish_statements(
                conn, contract, names, incoming.batch_id, extra, loaded_at
            )
            # Each quarantine statement scans its batch table: skip those with nothing to move.
            # (A wrong skip cannot hide a row: the accounting below would not add up.)
            typed_rejects = received - len(incoming.rejected) - judged.invalid - judged.accepted
            quarantined = sum(
                conn.execute(s, p).rowcount
                for (s, p), rows in zip(
                    statements["quarantine"], (judged.invalid, typed_rejects), strict=True
                )
                if rows
            )
            if incoming.rejected:
                with conn.cursor() as cur:
                    cur.executemany(
                        sql.SQL(
                            "insert into quarantine.{} (batch_id, reason, payload) values (%s, %s, to_jsonb(%s::text))"
                        ).format(sql.Identifier(contract.raw_table)),
                        [
                            (incoming.batch_id, reason, payload)
                            for payload, reason in incoming.rejected
                        ],
                    )
                quarantined += len(incoming.rejected)
            typed = sql.Identifier(names["typed"])
            raw_is_empty = conn.execute(statements["raw_is_empty"]).fetchone()[0]
            lacking = (
                raw_columns_the_batch_lacks(conn, contract, names)
                if as_raw_storage and raw_is_empty and judged.accepted > 0
                else None
            )
            if lacking is not None:
                # The batch table becomes raw's storage: its rejected rows (quarantined
                # above) leave it, and every row left is published, written only once.
                rows_in_table = received - len(incoming.rejected) - judged.invalid
                deleted = (
                    conn.execute(
                        sql.SQL("delete from staging.{} where _reject_reason is not null").format(
                            typed
                        )
                    ).rowcount
                    if typed_rejects
                    else 0
                )
                accepted = changed = rows_in_table - deleted
                if not judged.key_built:
                    build_batch_key(conn, contract, names, incoming.batch_id)
            elif raw_is_empty:
                # Every accepted row is new: what the insert wrote is what was accepted.
                accepted = changed = insert_into_empty_raw(conn, contract, *statements["insert"])
            else:
                accepted = conn.execute(
                    sql.SQL("select count(*) from staging.{} where _reject_reason is null").format(
                        typed
                    )
                ).fetchone()[0]
                changed = conn.execute(*statements["upsert"]).rowcount
            failpoints.reach("during_publish")
            validation = validated()
            if not validation.success:
                # Raised inside the transaction: everything written above rolls back.
                raise BatchBlocked(f"{where}: {received} rows not published: {validation.summary}")
            if lacking is not None:
                adopt_batch_table(conn, contract, names, incoming.batch_id, loaded_at, lacking)
            cursor_to = None
            if contract.cursor_column:
                value = judged.cursor_to
                cursor_to = value or incoming.cursor_from
                if value is not None:
                    conn.execute(
                        "insert into ops.source_cursors (source, entity, cursor_value, batch_id, updated_at) "
                        "values (%s, %s, %s, %s, now()) on conflict (source, entity) do update set "
                        "cursor_value = greatest(ops.source_cursors.cursor_value, excluded.cursor_value), "
                        "batch_id = excluded.batch_id, updated_at = now()",
                        (contract.source, contract.entity, value, incoming.batch_id),
                    )
            if accepted + quarantined != received:
                raise CemError(
                    f"{contract.entity} batch {incoming.batch_id}: {received} received but {accepted} accepted + "
                    f"{quarantined} quarantined; refusing to publish a batch that does not add up."
                )
            conn.execute(
                "update ops.load_batches set status = 'published', rows_received = %s, rows_published = %s, "
                "rows_quarantined = %s, rows_changed = %s, cursor_to = %s, gx_success = %s, message = %s, "
                "finished_at = now() where batch_id = %s",
                (
                    received,
                    accepted,
                    quarantined,
                    changed,
                    cursor_to,
                    validation.success,
                    validation.summary,
                    incoming.batch_id,
                ),
            )
            if incoming.on_publish is not None:
                incoming.on_publish(conn, incoming.batch_id)
            drop_batch_tables(conn, names)
            # Everything is written (raw's storage replaced, for a first load): only the
            # commit is left.
            failpoints.reach("before_publish_commit")
        if changed:
            try:
                refresh_statistics(self.location, contract, changed, conn=conn)
            except psycopg.Error as exc:
                # The batch is published; stale statistics only slow the next reads down.
                log.warning(
                    "raw.%s: batch %s is published, but refreshing its statistics failed (%s); "
                    "the next publish tries again, or run ANALYZE raw.%s",
                    contract.raw_table,
                    incoming.batch_id,
                    str(exc).strip(),
                    contract.raw_table,
                )
        return BatchOutcome(
            incoming.batch_id,
            contract.entity,
            "published",
            received,
            accepted,
            quarantined,
            changed,
            cursor_to,
            validation,
        )

    def _finish_blocked(
        self, batch_id: str, names: dict, message: str, received: int, rejected: int
    ) -> None:
        with connect(self.location, autocommit=True) as conn:
            conn.execute(
                "update ops.load_batches set status = 'blocked', gx_success = false, message = %s, "
                "rows_received = %s, rows_quarantined = 0, finished_at = now() where batch_id = %s",
                (
                    f"{message} [{rejected} bad rows found; none quarantined, nothing published]",
                    received,
                    batch_id,
                ),
            )
            drop_batch_tables(conn, names)

    def _finish_failed(self, batch_id: str) -> None:
        try:
            with connect(self.location, autocommit=True) as conn:
                conn.execute(
                    "update ops.load_batches set status = 'failed', finished_at = now(), "
                    "message = coalesce(message, 'load raised an error; see the task log') where batch_id = %s",
                    (batch_id,),
                )
        except CemError:
            pass  # the warehouse itself is gone; the next run marks the batch abandoned


def _copy(conn: psycopg.Connection, statement: sql.Composable, chunks: Iterable[bytes]) -> int:
    """COPY ``chunks`` in; returns the rows copied."""
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
                failpoints.reach("during_copy")
        return cur.rowcount
