"""The audit step of write-audit-publish: GX suites on the freshly built marts.

Every suite in ``expectations/marts/`` runs as SQL on its table in ``marts_build`` (dbt's
own tests already ran in the build). A suite whose meta has ``max_shrink`` also gets a
volume check against the published marts: a build that suddenly lost customers or orders
does not replace the marts analysts are reading. Outcomes go to ``ops.dq_results`` under
the audit id; any failed critical expectation stops publication with a message naming it.

An expectation that a constraint of the built table already enforces (a unique index, a
NOT NULL, a validated CHECK the models' post-hooks name after the suite's bounds) is
answered from the catalog (``catalog_answers``); GX scans for the rest. On the large
incremental facts that left GX only their row counts, and those tables now keep their rows
counted by triggers on their writes (``ops.keep_row_count``), so GX reads none of them.
"""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from cem_warehouse import paths
from cem_warehouse.errors import CemError
from cem_warehouse.quality.catalog_answers import answered_by_the_catalog, kept_row_counts
from cem_warehouse.quality.gx_runner import (
    SuiteRun,
    ValidationOutcome,
    load_suite_definition,
    record_outcome,
)
from cem_warehouse.transform.publish import BUILD_SCHEMA
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

SUITES_FOLDER = "marts"

# Suites validated at once. A suite's time is GX's Python (setting up, reading results) and
# its queries; two at a time, one suite's Python runs while another waits on PostgreSQL
# (for the exact row counts of the large facts, 10.9M order lines at 1M customers, when
# their tables do not keep them).
AUDIT_THREADS = 2


@dataclass
class MartsAudit:
    audit_id: str
    outcomes: list[ValidationOutcome] = field(default_factory=list)
    # Exact rows per audited table, as GX counted them or the table's write triggers kept
    # them (catalog_answers.kept_row_count): the publication records these
    # instead of counting the same tables again (1.3 s at 1M customers, 10.9M order lines).
    row_counts: dict[str, int] = field(default_factory=dict)
    # Validated suites whose Data Docs pages are not rendered yet (render_docs).
    unrendered: list[SuiteRun] = field(default_factory=list, repr=False)

    def render_docs(self) -> None:
        """The Data Docs page of each validated suite. Publication does not wait for them,
        so ``build_marts`` renders them while it publishes (about 1 s at 1M customers)."""
        while self.unrendered:
            self.unrendered.pop(0).build_docs()

    @property
    def success(self) -> bool:
        return all(outcome.success for outcome in self.outcomes)

    def as_dict(self) -> dict:
        return {
            "audit_id": self.audit_id,
            "success": self.success,
            "suites": {
                o.suite: {"success": o.success, "checks": len(o.outcomes)} for o in self.outcomes
            },
            "row_counts": dict(self.row_counts),
        }


def mart_suite_names() -> list[str]:
    folder = paths.expectations_dir() / SUITES_FOLDER
    return sorted(f"{SUITES_FOLDER}/{path.stem}" for path in folder.glob("*.json"))


def _last_published_counts(location: WarehouseLocation) -> dict[str, int]:
    with connect(location) as conn:
        row = conn.execute(
            "select tables from ops.mart_publications order by publication_id desc limit 1"
        ).fetchone()
    return {table: int(count) for table, count in (row[0] if row else {}).items()}


def _build_tables(location: WarehouseLocation) -> set[str]:
    with connect(location) as conn:
        return {
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (BUILD_SCHEMA,),
            )
        }


def audit_marts(
    location: WarehouseLocation, *, raise_on_failure: bool = True, render_docs: bool = True
) -> MartsAudit:
    """Run every mart suite on ``marts_build``; raise naming the failures (nothing published).
    With ``render_docs=False`` the Data Docs of a passing audit are left for
    :meth:`MartsAudit.render_docs`; a failing audit renders them before it raises, so the
    pages show what broke."""
    audit = MartsAudit(audit_id=f"marts-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    built = _build_tables(location)
    published = _last_published_counts(location)
    suites = []
    for suite in mart_suite_names():
        definition = load_suite_definition(suite)
        table = definition["meta"]["table"].split(".")[-1]
        if table not in built:
            raise CemError(
                f"mart audit: {BUILD_SCHEMA}.{table} (suite expectations/{suite}.json) was not built; "
                "the dbt build failed or the model was renamed: fix the build or the suite."
            )
        suites.append((definition, table))
    # One connection asks the catalog for every suite (GX validates on its own).
    with connect(location) as catalog:
        # The rows of each table whose write triggers keep its count, looked up once: they
        # answer the row-count checks, and GX, which then counts nothing there, cannot
        # report them for the publication.
        kept_rows = kept_row_counts(catalog, BUILD_SCHEMA)
        suite_runs = [
            _suite_run(catalog, definition, table, published, kept_rows.get(table))
            for definition, table in suites
        ]
    # The largest tables first (by their last published rows): their scans, if GX still has
    # one to make there (a count their triggers do not keep), wait longest, and the small
    # suites fill the other thread meanwhile.
    by_size = sorted(suite_runs, key=lambda run: -published.get(run["table"], 0))
    with ThreadPoolExecutor(AUDIT_THREADS, thread_name_prefix="mart-audit") as pool:
        validating = {id(run): pool.submit(_validate, location, run) for run in by_size}
        validated = [validating[id(run)].result() for run in suite_runs]
    for suite_run, (run, outcome) in zip(suite_runs, validated, strict=True):
        rows = outcome.row_count
        if rows is None:
            rows = kept_rows.get(suite_run["table"])
        if rows is not None:
            audit.row_counts[suite_run["table"]] = rows
        record_outcome(location, audit.audit_id, outcome)
        audit.outcomes.append(outcome)
        audit.unrendered.append(run)
    if render_docs or not audit.success:
        audit.render_docs()
    if raise_on_failure and not audit.success:
        failed = "; ".join(o.summary for o in audit.outcomes if not o.success)
        raise CemError(
            f"mart audit {audit.audit_id} failed, the marts were NOT published (analysts keep the last good "
            f"ones): {failed}. Details: ops.dq_results where batch_id = '{audit.audit_id}'."
        )
    return audit


def _validate(location: WarehouseLocation, suite_run: dict) -> tuple[SuiteRun, ValidationOutcome]:
    """Counts first, one scan per table: samples of unexpected values cost a scan per
    expectation (a third of a build's audit time at 200k customers). A failing suite runs
    again with samples, so its Data Docs page shows what broke. Each run has a GX context of
    its own, so suites validate side by side."""
    run = SuiteRun(location, **suite_run, sample_unexpected=False)
    outcome = run.validate()
    if not outcome.success:
        run = SuiteRun(location, **suite_run, sample_unexpected=True)
        outcome = run.validate()
    return run, outcome


def _suite_run(
    catalog: psycopg.Connection,
    definition: dict,
    table: str,
    published: dict[str, int],
    kept_rows: int | None,
) -> dict:
    """What a :class:`SuiteRun` needs for one mart: its suite plus a volume check against the
    published mart, less what the catalog answers (``catalog_answers``; ``kept_rows``, the
    table's kept row count, answers the row-count checks)."""
    expectations = list(definition["expectations"])
    shrink = definition["meta"].get("max_shrink")
    if shrink is not None and published.get(table):
        floor = math.floor(published[table] * (1 - shrink))
        expectations.append(
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": floor},
                "meta": {
                    "severity": "critical",
                    "check": f"at most {shrink:.0%} fewer rows than the published {published[table]}",
                },
            }
        )
    remaining, answered = answered_by_the_catalog(
        catalog, BUILD_SCHEMA, table, expectations, kept_rows
    )
    return {
        "schema": BUILD_SCHEMA,
        "table": table,
        "name": definition["name"],
        "expectations": remaining,
        "answered": answered,
    }
