"""Write-audit-publish for the marts: build aside, check, swap in one step.

dbt builds every mart into the schema ``marts_build`` (``generate_schema_name``), where
analysts and the read-only role cannot see it. Its dbt tests and the GX suites in
``expectations/marts/`` audit it there. Only then does :func:`publish_marts` exchange the
two schemas in one transaction, so readers see either the last good marts or the new
ones, never a half-built or failed build, and a query already running keeps reading the
tables it started on (a schema rename takes no lock on them).

After the swap ``marts_build`` holds the previous marts, which the next build replaces
(tables) or brings up to date (incremental models, which catch up from any earlier
state). Right after the swap, the incremental marts that log their changes are brought up
to the published generation there (:mod:`cem_warehouse.transform.generations`), so the
next build catches up on one delta, not two.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date

import psycopg

from cem_warehouse.errors import CemError
from cem_warehouse.quality.catalog_answers import kept_row_counts, rows_of_views_over_one_table
from cem_warehouse.warehouse.bootstrap import READER_ROLE
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

log = logging.getLogger(__name__)

PUBLISHED_SCHEMA = "marts"
BUILD_SCHEMA = "marts_build"
_RETIRING_SCHEMA = "marts_retiring"
# One publisher at a time (the swap, then the catch-up of the retired generation); a
# second waits and then publishes what is built by then.
_PUBLISHERS_LOCK = "select pg_advisory_xact_lock(hashtext('cem_warehouse.publish_marts'))"

# What a failed catch-up of the retired generation means and what to do, said alike by the
# build's warning and by `cem status`.
CATCH_UP_FAILED_ADVICE = (
    "the next build catches up on two deltas instead of one. If this publication was a "
    "--full-refresh for a change of logic, run `cem marts build --full-refresh` again."
)

_PUBLISHED_COMMENT = (
    "Customer-experience marts for analysts and BI (the last build that passed its audit)."
)
_BUILD_COMMENT = (
    "Where dbt builds the marts before they are audited and swapped into `marts`; "
    "not for analysts (its contents may be half-built or have failed their checks)."
)


@dataclass(frozen=True)
class Publication:
    publication_id: int
    as_of_date: date | None
    tables: dict[str, int]
    # per incremental mart: how marts_build was brought up to this generation, or why not
    retired_generation: dict[str, str] = field(default_factory=dict)
    # how long that took (after the swap: readers already saw the new marts)
    catch_up_seconds: float = 0.0
    # when build_marts ran the whole build: seconds of each step (dbt's process with its
    # start, the audit, the publication with its catch-up_seconds)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    # marts_build held a build already published: nothing was swapped, this one stands
    already_published: bool = False

    @property
    def summary(self) -> str:
        as_of = f" as of {self.as_of_date}" if self.as_of_date else ""
        return f"published {len(self.tables)} marts{as_of} (publication {self.publication_id})"


def _tables(conn: psycopg.Connection, schema: str) -> list[str]:
    """The marts in ``schema``: tables, and the views some marts are (fct_customer_churn)."""
    return [
        row[0]
        for row in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind in ('r', 'p', 'v') "
            "and c.relname not like '%%__dbt_%%' order by 1",
            (schema,),
        )
    ]


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return (
        conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone()
        is not None
    )


def built_as_of_date(conn: psycopg.Connection) -> date | None:
    """The as-of date of the latest build (``staging.int_as_of_date``), if there is one."""
    if conn.execute("select to_regclass('staging.int_as_of_date')").fetchone()[0] is None:
        return None
    row = conn.execute("select as_of_date from staging.int_as_of_date").fetchone()
    return row[0] if row else None


def publish_marts(
    location: WarehouseLocation,
    *,
    audit: dict | None = None,
    staging_tests_through: str | None = None,
) -> Publication:
    """Swap ``marts_build`` into ``marts`` in one transaction; record it in ops.mart_publications.

    ``staging_tests_through``: the end of the build's staging test window
    (cem_warehouse.transform.staging_tests); without it the next build tests every raw row."""
    with connect(location) as conn, conn.transaction():
        conn.execute(_PUBLISHERS_LOCK)
        # dbt creates dim_as_of_date anew in every build, so its table says which build
        # marts_build holds: none (no schema, or only the copies a first publication left)
        # is no build to publish. One already published (the publish task run again after
        # it succeeded, with no build since) would put the previous generation back: the
        # last publication stands instead, and publishing again is a no-op.
        built = conn.execute(
            "select cast(to_regclass(%s) as oid)", (f"{BUILD_SCHEMA}.dim_as_of_date",)
        ).fetchone()[0]
        if built is None:
            raise CemError(
                f"Nothing to publish: schema {BUILD_SCHEMA} holds no complete build (it has "
                "no dim_as_of_date, which every build creates). Build the marts first "
                "(`cem run`, or `cem marts build`)."
            )
        # marts_build holds the latest publication's tables or, after its swap, the ones
        # it replaced: the last two publications are all it can repeat.
        recent = conn.execute(
            "select publication_id, as_of_date, tables, retired_generation, published_build "
            "from ops.mart_publications order by publication_id desc limit 2"
        ).fetchall()
        if any(row[4] == built for row in recent):
            return _already_published(recent[0])
        # Exact counts of what is swapped in, for the publication record: the audit's, which
        # GX took on these very tables right before (only a build writes marts_build, and the
        # transform DAG runs one at a time); for a table it did not audit, the count its write
        # triggers keep (ops.kept_row_counts), for a view that is one such table with columns
        # added the table's, else a count(*), which runs under the publishers' lock before
        # the swap (58-82 ms per million-row mart at 1M customers).
        audited = (audit or {}).get("row_counts", {})
        known = {**kept_row_counts(conn, BUILD_SCHEMA), **{t: int(n) for t, n in audited.items()}}
        marts = _tables(conn, BUILD_SCHEMA)
        # a view that is one stored table with columns added has that table's count
        known.update(
            rows_of_views_over_one_table(
                conn, BUILD_SCHEMA, [mart for mart in marts if mart not in known], known
            )
        )
        tables = {
            table: known[table]
            if table in known
            else int(conn.execute(f'select count(*) from {BUILD_SCHEMA}."{table}"').fetchone()[0])
            for table in marts
        }
        if _schema_exists(conn, PUBLISHED_SCHEMA):
            conn.execute(f"alter schema {PUBLISHED_SCHEMA} rename to {_RETIRING_SCHEMA}")
            conn.execute(f"alter schema {BUILD_SCHEMA} rename to {PUBLISHED_SCHEMA}")
            conn.execute(f"alter schema {_RETIRING_SCHEMA} rename to {BUILD_SCHEMA}")
        else:
            conn.execute(f"alter schema {BUILD_SCHEMA} rename to {PUBLISHED_SCHEMA}")
            conn.execute(f"create schema {BUILD_SCHEMA}")
        # Comments and grants belong to the schema object, so they moved with it: reset both.
        conn.execute(f"comment on schema {PUBLISHED_SCHEMA} is '{_PUBLISHED_COMMENT}'")
        conn.execute(f"comment on schema {BUILD_SCHEMA} is '{_BUILD_COMMENT}'")
        conn.execute(f"grant usage on schema {PUBLISHED_SCHEMA} to {READER_ROLE}")
        conn.execute(f"grant select on all tables in schema {PUBLISHED_SCHEMA} to {READER_ROLE}")
        conn.execute(f"revoke all on schema {BUILD_SCHEMA} from {READER_ROLE}")
        conn.execute(f"revoke all on all tables in schema {BUILD_SCHEMA} from {READER_ROLE}")

        as_of = built_as_of_date(conn)
        # How far the change log went: the next publication's catch-up starts here.
        publication_id, change_log_id = conn.execute(
            "insert into ops.mart_publications "
            "(as_of_date, tables, audit, staging_tests_through, change_log_id, published_build) "
            "values (%s, %s, %s, %s, (select coalesce(max(change_id), 0) from ops.mart_key_changes), %s) "
            "returning publication_id, change_log_id",
            (
                as_of,
                json.dumps(tables),
                json.dumps(audit or {}),
                staging_tests_through or None,
                built,
            ),
        ).fetchone()
    # The change log's VACUUM runs beside the catch-up rather than after it: each waits on
    # the disk and on its own locks, not on the other, and the catch-up reads only rows no
    # trim has deleted (0.22-0.53 s after each one-day build at 1M customers).
    vacuum = threading.Thread(
        target=_vacuum_change_log, args=(location,), name="change-log-vacuum", daemon=True
    )
    vacuum.start()
    started = time.perf_counter()
    try:
        retired = _catch_up_retired_generation(location, publication_id, change_log_id)
    finally:
        catch_up_seconds = round(time.perf_counter() - started, 2)
        vacuum.join()
    return Publication(
        publication_id=publication_id,
        as_of_date=as_of,
        tables=tables,
        retired_generation=retired,
        catch_up_seconds=catch_up_seconds,
    )


def _vacuum_change_log(location: WarehouseLocation) -> None:
    """Make the space of the change-log rows trimmed since the last publication reusable.

    Each build logs about 400k keys at 1M customers and its readers delete what every
    reader has read (macros/change_log.sql). Without a VACUUM the deleted rows stay: on a
    server without autovacuum the log grew by 54 MB a one-day build (109, 163, 217 MB).
    Vacuumed before every other build (0.34-0.42 s each), it went 217, 248, 280, 249 MB,
    the new rows filling the freed space, and the builds took as long as without it. Plain
    VACUUM, no ANALYZE: the readers' plans were tuned without column statistics on the
    log, and with them a build took about 3 s longer (docs/operations/marts.md, "Stop 48").
    VACUUM runs outside a transaction and takes a lock only other VACUUMs and DDL wait for:
    loads and readers go on. A failure costs space, not marts, so it is reported and the
    publication stands."""
    try:
        with connect(location, autocommit=True) as conn:
            conn.execute("vacuum ops.mart_key_changes")
    except (psycopg.Error, CemError) as exc:
        log.warning(
            "ops.mart_key_changes was not vacuumed (%s): the rows trimmed from it stay until "
            "a later publication or autovacuum vacuums it.",
            exc,
        )


def _already_published(latest: tuple) -> Publication:
    """The last publication (its ops.mart_publications row), which stays: marts_build
    holds tables already published, by it or by the one it replaced."""
    publication_id, as_of, tables, retired, _ = latest
    log.warning(
        "Nothing new to publish: %s holds a build already published, and publication %s "
        "stays. Run the build (`cem run`, or the transform DAG from its first task) to "
        "publish new marts.",
        BUILD_SCHEMA,
        publication_id,
    )
    return Publication(
        publication_id=publication_id,
        as_of_date=as_of,
        tables=tables,
        retired_generation=retired or {},
        already_published=True,
    )


def _catch_up_retired_generation(
    location: WarehouseLocation, publication_id: int, change_log_id: int
) -> dict[str, str]:
    """After the swap committed (readers already see the new marts), in transactions of
    its own that commit together (generations.catch_up_retired_generation).

    A failure rolls the whole catch-up back. For a mart caught up from the log that costs
    the next build time (it catches up two deltas). For a mart the published build rebuilt
    in full it costs more: the next build continues from the older rows, which a change of
    logic would leave stale, so the warning says to rebuild in full once more.
    """
    from cem_warehouse.transform.generations import catch_up_retired_generation

    try:
        retired = catch_up_retired_generation(
            location,
            publication_id=publication_id,
            until_change_id=change_log_id,
            lock=_PUBLISHERS_LOCK,
        )
    except (psycopg.Error, CemError) as exc:
        log.warning(
            "publication %s: marts_build was not brought up to it (%s); %s",
            publication_id,
            exc,
            CATCH_UP_FAILED_ADVICE,
        )
        retired = {"error": f"not caught up, the next build catches up instead: {exc}"[:1000]}
    with connect(location) as conn:
        conn.execute(
            "update ops.mart_publications set retired_generation = %s where publication_id = %s",
            (json.dumps(retired), publication_id),
        )
        conn.commit()
    return retired
