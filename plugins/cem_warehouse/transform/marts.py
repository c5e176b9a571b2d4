"""Build, audit and publish the marts outside Airflow (tests, benchmarks, `cem marts build`).

The transform DAG does the same three steps as tasks: Cosmos renders the dbt build, then
``audit_marts`` and ``publish_marts`` run as their own tasks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

from cem_warehouse.transform.dbt import UNIT_TESTS_SELECTOR, run_dbt
from cem_warehouse.transform.publish import Publication, publish_marts
from cem_warehouse.transform.staging_tests import staging_tests_window_end
from cem_warehouse.warehouse.settings import WarehouseLocation

if TYPE_CHECKING:
    from cem_warehouse.quality.marts_audit import MartsAudit

log = logging.getLogger(__name__)


def dbt_vars(*, as_of: date | str | None = None, data_interval_end: str | None = None) -> dict:
    """The vars every dbt invocation of a build gets (see int_as_of_date for the rule)."""
    chosen: dict[str, str] = {}
    if as_of:
        chosen["as_of_date"] = str(as_of)
    if data_interval_end:
        chosen["data_interval_end"] = str(data_interval_end)
    return chosen


def _import_audit_dependencies() -> None:
    """GX's import takes one core for 3-6 s on the 2-core machine (compiled; more without
    bytecode), and the audit needs it right after dbt. dbt's run leaves that core mostly to
    PostgreSQL's waits, so importing it beside dbt takes it off the build's path in a process
    that has not imported GX yet (`cem marts build`, a fresh task). A failed import here is
    left for the audit to raise where it would have anyway."""
    with contextlib.suppress(Exception):  # the audit imports it again and reports the error
        import great_expectations  # noqa: F401


def build_marts(
    location: WarehouseLocation,
    *,
    as_of: date | str | None = None,
    data_interval_end: str | None = None,
    full_refresh: bool = False,
    publish: bool = True,
    unit_tests: bool = False,
) -> Publication | None:
    """`dbt build` into marts_build (models and data tests; the unit tests too with
    ``unit_tests``), then the GX audit, then the swap. The staging tests read the raw rows
    loaded since the last publication (cem_warehouse.transform.staging_tests)."""
    from cem_warehouse.warehouse.bootstrap import bootstrap

    # The ops tables the build writes (mart change log, publications) exist after an
    # upgrade even when no load has run since (loads bootstrap too; the DAG runs after them).
    bootstrap(location)
    window_end = staging_tests_window_end(location)
    args = ["build"]
    chosen = dbt_vars(as_of=as_of, data_interval_end=data_interval_end)
    if chosen:
        args += ["--vars", json.dumps(chosen)]
    if full_refresh:
        args.append("--full-refresh")
    if not unit_tests:
        args += ["--exclude", UNIT_TESTS_SELECTOR]
    phases: dict[str, float] = {}
    if publish:
        threading.Thread(target=_import_audit_dependencies, daemon=True).start()
    started = time.perf_counter()
    run_dbt(location, args)  # raises on any failed model or test
    phases["dbt"] = round(time.perf_counter() - started, 2)
    if not publish:
        return None
    from cem_warehouse.quality.marts_audit import audit_marts

    started = time.perf_counter()
    # raises, naming the failed checks: nothing is published
    audit = audit_marts(location, render_docs=False)
    phases["audit"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    # The audit's Data Docs pages are rendered while the swap and the catch-up wait on
    # PostgreSQL; the build ends when both are done.
    docs = threading.Thread(target=_render_audit_docs, args=(audit,), name="mart-audit-docs")
    docs.start()
    try:
        publication = publish_marts(
            location, audit=audit.as_dict(), staging_tests_through=window_end
        )
    finally:
        docs.join()
    phases["publish"] = round(time.perf_counter() - started, 2)  # catch_up_seconds included
    return replace(publication, phase_seconds=phases)


def _render_audit_docs(audit: MartsAudit) -> None:
    """Data Docs are for reading the audit, which ``ops.dq_results`` records in full: a page
    that cannot be rendered does not undo a publication, it is reported."""
    try:
        audit.render_docs()
    except Exception as exc:  # noqa: BLE001 - any GX or file error; the outcomes are recorded
        log.warning(
            "The Data Docs of mart audit %s were not rendered (%s); its outcomes are in "
            "ops.dq_results. The next build renders them again.",
            audit.audit_id,
            exc,
        )
