"""Run a Great Expectations suite from ``expectations/`` on a warehouse table, as SQL.

GX computes its metrics with queries inside PostgreSQL; no table is pulled into pandas.
Each expectation's outcome is written to ``ops.dq_results`` for the batch.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from psycopg.types.json import Jsonb

from cem_warehouse import paths
from cem_warehouse.errors import CemError
from cem_warehouse.quality.gx_binds import gx_engine_kwargs
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

# GX logs every decorator it registers at INFO; keep task logs readable.
logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass
class ExpectationOutcome:
    expectation_type: str
    column: str | None
    success: bool
    unexpected_count: int | None
    observed_value: str | None
    critical: bool


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    # The rows of the validated table, when an expectation reported them (every column map
    # expectation does, as element_count; a row-count expectation as its observed value).
    row_count: int | None = None

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def summary(self) -> str:
        if self.success:
            return f"suite {self.suite}: all {len(self.outcomes)} expectations passed"
        parts = [
            f"{o.expectation_type}({o.column or ''}) failed on "
            f"{o.unexpected_count if o.unexpected_count is not None else '?'} rows"
            + (f" (observed {o.observed_value})" if o.observed_value is not None else "")
            for o in self.failed
        ]
        return f"suite {self.suite}: " + "; ".join(parts)


# Expectations whose observed value is the table's row count.
ROW_COUNT_EXPECTATIONS = {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}

DATA_DOCS_ENV = "CEM_GX_DOCS_DIR"


def data_docs_dir() -> Path:
    """Where GX Data Docs are built: ``.cem/gx_data_docs`` (or ``CEM_GX_DOCS_DIR``)."""
    override = os.environ.get(DATA_DOCS_ENV)
    return Path(override) if override else paths.state_dir() / "gx_data_docs"


def _write_docs_index() -> None:
    """A front page linking each suite's Data Docs (GX builds one site per suite here)."""
    root = data_docs_dir()
    sites = sorted(p.parent for p in root.glob("*/index.html"))
    items = "\n".join(
        f'<li><a href="{site.name}/index.html">{html.escape(site.name)}</a> '
        f"<small>updated {datetime.fromtimestamp(site.joinpath('index.html').stat().st_mtime, UTC):%Y-%m-%d %H:%M} UTC</small></li>"
        for site in sites
    )
    root.joinpath("index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>cem-warehouse data quality</title>"
        "<h1>cem-warehouse: Great Expectations Data Docs</h1>"
        "<p>The latest validation of each raw entity's batches. History of every batch: <code>ops.dq_results</code>.</p>"
        f"<ul>{items}</ul>"
    )


def is_critical(meta: dict | None) -> bool:
    """An expectation blocks unless its meta says ``severity`` is something else (``warning``)."""
    return (meta or {}).get("severity", "critical") == "critical"


def load_suite_definition(suite: str) -> dict:
    path = paths.expectations_dir() / f"{suite}.json"
    if not path.exists():
        raise CemError(f"No expectation suite {path}: add one (see expectations/README.md).")
    return json.loads(path.read_text())


@functools.cache
def _in_memory_context_class() -> type:
    """GX's ephemeral (in-memory) data context, without the YAML copy of its whole project
    config that it writes to an in-memory store after every change: adding the Data Docs
    site, the data source, its table asset and its batch definition. Nothing reads that copy
    back (the context works from the config objects themselves). Without it, the mart
    audit's 15 suites, run one after another at 1M customers, took 0.58-0.96 s of CPU
    instead of 0.79-1.14 s (nine runs each)."""
    from great_expectations.data_context.data_context import EphemeralDataContext

    class InMemoryDataContext(EphemeralDataContext):
        def _save_project_config(self) -> None:
            return None

    return InMemoryDataContext


def _in_memory_context():
    """An in-memory GX context, set up as ``gx.get_context(mode="ephemeral")`` sets one up:
    the same config, and made GX's current project (which GX objects fall back on)."""
    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )

    context = _in_memory_context_class()(
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=True)
        )
    )
    project_manager.set_project(context)
    return context


def _view(kind: str) -> dict:
    return {
        "module_name": "cem_warehouse.quality.gx_docs_views",
        "class_name": f"CachedJinja{kind}PageView",
    }


class SuiteRun:
    """A GX suite set up to validate ``schema.table`` (a table or view) inside PostgreSQL.

    Setting up (GX's context, data source, suite and checkpoint) is Python work that reads
    no rows, so a loader does it while the table is still filling; ``validate`` then runs
    the suite's queries (again on each call, e.g. after rows were rejected), and
    ``build_docs`` renders the last validation into the Data Docs, which nothing waits for.

    GX computes the counts of all column expectations in one aggregate query. With
    ``sample_unexpected`` it also lists up to 20 unexpected values per expectation, one more
    query (a full scan when nothing is unexpected) each; without it, counts only.
    """

    def __init__(
        self,
        location: WarehouseLocation,
        *,
        schema: str,
        table: str,
        name: str,
        expectations: list[dict],
        sample_unexpected: bool = True,
        answered: list[tuple[dict, str]] | tuple = (),
    ) -> None:
        import great_expectations as gx
        from great_expectations.core import ExpectationSuite

        self.name = name
        # Expectations answered without a scan (``catalog_answers``), each with its answer:
        # reported beside GX's own outcomes and shown in the same Data Docs page.
        self._answered = list(answered)
        # Whether validate() reads the table (an expectation left for GX to count).
        self.reads_rows = bool(expectations)
        self._context = _in_memory_context()
        self._context.variables.progress_bars = {"globally": False}
        # Data Docs: one site per suite, so every entity's latest validation stays browsable.
        self._context.add_data_docs_site(
            site_name="cem",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir() / name),
                },
                # GX's views with compiled templates kept between builds (see gx_docs_views).
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "view": _view("Index"),
                },
                "site_section_builders": {
                    section: {"view": _view("")} for section in ("expectations", "validations")
                },
            },
        )
        source = self._context.data_sources.add_postgres(
            "warehouse", connection_string=location.url, kwargs=gx_engine_kwargs()
        )
        asset = source.add_table_asset(table, table_name=table, schema_name=schema)
        batch = asset.add_batch_definition_whole_table("batch")
        gx_suite = self._context.suites.add(ExpectationSuite(name=name, expectations=expectations))
        definition = self._context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{name}-{table}", data=batch, suite=gx_suite)
        )
        self._checkpoint = self._context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}-checkpoint",
                validation_definitions=[definition],
                result_format=(
                    "SUMMARY"
                    if sample_unexpected
                    else {"result_format": "BASIC", "partial_unexpected_count": 0}
                ),
            )
        )
        # GX validates through an engine of its own, apart from the data source's: open its
        # connection now (SQLAlchemy keeps it in the engine's pool), so that validate()
        # starts with its queries, not with logging in and SQLAlchemy's first-connect queries
        # (12-35 ms on a busy machine, on the chain a loader waits for).
        source.get_execution_engine().engine.connect().close()
        self._source = source
        self._validated = None  # the last run's result identifier

    def _release_connections(self) -> None:
        """Close the connections GX keeps in its two engines' pools (the data source's, from
        its connection test, and the one it validates through). Rendering the Data Docs
        needs none, and a run kept for its pages (the mart audit keeps every suite's until
        the publication, a loader its batch's) would otherwise hold them open until it is
        garbage collected. A later validate() connects again."""
        self._source.get_engine().dispose()
        self._source.get_execution_engine().engine.dispose()

    def validate(self) -> ValidationOutcome:
        self._validated = None
        try:
            result_id, run = next(iter(self._checkpoint.run().run_results.items()))
        finally:
            self._release_connections()
        self._validated = (result_id, run)
        outcomes = []
        row_count = None
        for result in run.results:
            config = result.expectation_config
            observed = result.result.get("observed_value")
            if config.kwargs.get("row_condition"):
                counted = None  # an expectation on a subset counts that subset only
            elif config.type in ROW_COUNT_EXPECTATIONS:
                counted = observed
            else:
                counted = result.result.get("element_count")
            if row_count is None and isinstance(counted, int):
                row_count = counted
            outcomes.append(
                ExpectationOutcome(
                    expectation_type=config.type,
                    column=config.kwargs.get("column"),
                    success=bool(result.success),
                    unexpected_count=result.result.get("unexpected_count"),
                    observed_value=None if observed is None else str(observed),
                    critical=is_critical(config.meta),
                )
            )
        outcomes += [
            ExpectationOutcome(
                expectation_type=expectation["type"],
                column=expectation["kwargs"].get("column"),
                success=True,
                unexpected_count=0,
                observed_value=answer,
                critical=is_critical(expectation.get("meta")),
            )
            for expectation, answer in self._answered
        ]
        return ValidationOutcome(
            suite=self.name,
            success=all(o.success for o in outcomes if o.critical),
            outcomes=outcomes,
            row_count=row_count,
        )

    def build_docs(self) -> None:
        """The Data Docs pages of the last validation (none if it did not finish)."""
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
        )

        if self._validated is None:
            return
        result_id, run = self._validated
        if self._answered:
            self._store_with_answered(result_id, run)
        self._context.build_data_docs(
            site_names=["cem"],
            resource_identifiers=[result_id, ExpectationSuiteIdentifier(name=self.name)],
            dry_run=False,
            build_index=True,
        )
        _write_docs_index()

    def _store_with_answered(self, result_id, run) -> None:
        """The validation as GX stored it, plus the expectations the catalog answered, so
        that the Data Docs page lists the whole suite (the answer is the observed value)."""
        from great_expectations.core import ExpectationValidationResult
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        run.results.extend(
            ExpectationValidationResult(
                success=True,
                expectation_config=ExpectationConfiguration(
                    type=expectation["type"],
                    kwargs=expectation["kwargs"],
                    meta={**expectation.get("meta", {}), "answered_without_a_scan": answer},
                ),
                # Some renderers show the observed value (the constraint), others the share
                # of rows breaking the rule (none: "100% not null").
                result={"observed_value": answer, "unexpected_count": 0, "unexpected_percent": 0.0},
            )
            for expectation, answer in self._answered
        )
        stats = run.statistics
        stats["evaluated_expectations"] = len(run.results)
        stats["successful_expectations"] = sum(bool(r.success) for r in run.results)
        stats["unsuccessful_expectations"] = (
            stats["evaluated_expectations"] - stats["successful_expectations"]
        )
        stats["success_percent"] = 100.0 * stats["successful_expectations"] / len(run.results)
        self._context.validation_results_store.set(result_id, run)


def _recent_average_rows(
    location: WarehouseLocation, source: str, entity: str, batches: int = 5
) -> float | None:
    with connect(location) as conn:
        row = conn.execute(
            "select avg(rows_received) from (select rows_received from ops.load_batches "
            # Not the initial load: a backfill (a first full extract, or the chunks of a
            # history export) says nothing about a normal day. Rows recorded before the
            # initial_load column existed, or by a loader not told, count when they had a cursor.
            "where source = %s and entity = %s and status = 'published' and rows_received > 0 "
            "and not coalesce(initial_load, cursor_from is null) "
            "order by started_at desc limit %s) as recent",
            (source, entity, batches),
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def prepare_batch_suite(
    location: WarehouseLocation, *, contract, policy, table: str, rows_from: str | None = None
) -> SuiteRun:
    """The entity's suite on a batch's accepted rows in ``table``, plus the batch-level
    checks of its policy: not empty when the source must not be; volume within
    ``volume_factor`` of the recent average. The share of rejected rows is added by
    :func:`conclude_batch_validation`: the suite needs nothing the loader counts, so it can
    start as soon as the batch has landed.

    ``rows_from``, the batch table that ``table`` (a view) selects from: an expectation its
    constraints enforce (the loader adds them to a batch it lands typed) is answered from
    the catalog, as its COPY already checked every row.
    """
    definition = load_suite_definition(contract.entity)
    # A suite may name columns an older contract lacks; those have nothing to check yet.
    expectations = [
        e
        for e in definition["expectations"]
        if e["kwargs"].get("column", contract.column_names[0]) in contract.column_names
    ]
    if not policy.allow_empty:
        expectations.append(
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": 1},
                "meta": {"severity": "critical", "check": "not empty"},
            }
        )
    recent = _recent_average_rows(location, contract.source, contract.entity)
    if recent is not None and recent >= policy.volume_min_rows:
        # Far more than usual always blocks (a replayed history, a broken filter). Far fewer
        # blocks only sources that must deliver every time: a quiet hour is normal for others.
        bounds = {"max_value": int(recent * policy.volume_factor) + 1}
        if not policy.allow_empty:
            bounds["min_value"] = int(recent / policy.volume_factor)
        expectations.append(
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": bounds,
                "meta": {
                    "severity": "critical",
                    "check": f"volume within {policy.volume_factor}x of recent average {recent:.0f}",
                },
            }
        )
    answered = []
    if rows_from is not None:
        from cem_warehouse.quality.catalog_answers import answered_by_the_catalog

        with connect(location) as conn:
            expectations, answered = answered_by_the_catalog(
                conn, "staging", rows_from, expectations
            )
    # Counts (one scan) are all the loader needs: a clean batch is judged by them, and rows
    # breaking a row rule are found and quarantined, with their payload, by the loader's own
    # SQL; samples of unexpected values would cost a scan per expectation.
    return SuiteRun(
        location,
        schema="staging",
        table=table,
        name=definition["name"],
        expectations=expectations,
        sample_unexpected=False,
        answered=answered,
    )


def conclude_batch_validation(
    location: WarehouseLocation,
    outcome: ValidationOutcome,
    *,
    policy,
    batch_id: str,
    rows_received: int,
    rows_rejected: int,
) -> ValidationOutcome:
    """Add the rejected-row share to the suite's outcome, decide, and record it per batch."""
    share = rows_rejected / rows_received if rows_received else 0.0
    outcome.outcomes.append(
        ExpectationOutcome(
            expectation_type="cem_rejected_row_share_at_most",
            column=None,
            success=share <= policy.bad_row_threshold,
            unexpected_count=rows_rejected,
            observed_value=f"{share:.4f} of {rows_received} rows (threshold {policy.bad_row_threshold})",
            critical=True,
        )
    )
    outcome.success = all(o.success for o in outcome.outcomes if o.critical)
    record_outcome(location, batch_id, outcome)
    return outcome


def record_outcome(location: WarehouseLocation, batch_id: str, outcome: ValidationOutcome) -> None:
    with connect(location) as conn, conn.transaction():
        conn.execute(
            "delete from ops.dq_results where batch_id = %s and suite_name = %s",
            (batch_id, outcome.suite),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.dq_results (batch_id, suite_name, expectation_type, column_name, success, "
                "unexpected_count, observed_value, details) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        batch_id,
                        outcome.suite,
                        o.expectation_type,
                        o.column,
                        o.success,
                        o.unexpected_count,
                        o.observed_value,
                        Jsonb({"critical": o.critical}),
                    )
                    for o in outcome.outcomes
                ],
            )
