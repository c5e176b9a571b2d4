"""Run the project's DAGs once each, in asset-dependency order (the engine of `cem run`).

Runs inside the Airflow environment built by ``airflow_env`` (a child process of `cem run`),
uses ``dag.test()``: the real Airflow task runner and metadata DB, without a scheduler.
Prints one ``CEM_RESULT {json}`` line per DAG so the parent can report progress and failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

RESULT_PREFIX = "CEM_RESULT "


def _asset_uris(condition) -> set[str]:
    """All asset URIs in a schedule condition (an Asset, or AssetAll/AssetAny of them)."""
    uri = getattr(condition, "uri", None)
    if uri is not None:
        return {uri}
    found: set[str] = set()
    for child in getattr(condition, "objects", ()) or ():
        found |= _asset_uris(child)
    return found


def consumed_assets(dag) -> set[str]:
    condition = getattr(dag.timetable, "asset_condition", None)
    return _asset_uris(condition) if condition is not None else set()


def produced_assets(dag) -> set[str]:
    return {uri for task in dag.tasks for outlet in task.outlets for uri in _asset_uris(outlet)}


def dependency_order(dags: Iterable) -> list:
    """Producers before consumers; ties broken by dag_id so the order is stable."""
    dags = sorted(dags, key=lambda d: d.dag_id)
    producers = {d.dag_id: produced_assets(d) for d in dags}
    upstream = {
        d.dag_id: {
            p for p, uris in producers.items() if p != d.dag_id and uris & consumed_assets(d)
        }
        for d in dags
    }
    ordered, done = [], set()
    while len(ordered) < len(dags):
        ready = [d for d in dags if d.dag_id not in done and upstream[d.dag_id] <= done]
        if not ready:
            cycle = sorted(set(upstream) - done)
            raise SystemExit(f"cem: error: the DAGs' asset schedules form a cycle among {cycle}")
        for dag in ready:
            ordered.append(dag)
            done.add(dag.dag_id)
    return ordered


def _emit(payload: dict) -> None:
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logical-date", required=True)
    parser.add_argument("--as-of")
    parser.add_argument("--dag", action="append")
    parser.add_argument("--retries", type=int, default=0)
    args = parser.parse_args(argv)

    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag

    if settings.Session is None:
        settings.configure_orm()
    bag = DagBag()
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            _emit({"import_error": path, "message": str(error).strip().splitlines()[-1]})
        return 2
    dags = list(bag.dags.values())
    if args.dag:
        unknown = set(args.dag) - {d.dag_id for d in dags}
        if unknown:
            _emit({"unknown_dags": sorted(unknown), "known": sorted(d.dag_id for d in dags)})
            return 2
        dags = [d for d in dags if d.dag_id in args.dag]

    logical_date = datetime.fromisoformat(args.logical_date).replace(tzinfo=UTC)
    conf = {"as_of": args.as_of} if args.as_of else {}
    _emit({"plan": [d.dag_id for d in dependency_order(dags)]})
    for dag in dependency_order(dags):
        # `cem run` reports a failure at once; the scheduler applies the DAG's own retries.
        for task in dag.tasks:
            task.retries = args.retries
        _emit({"dag_id": dag.dag_id, "state": "running"})
        dag_run = dag.test(logical_date=logical_date, run_conf=conf)
        instances = dag_run.get_task_instances()
        # Name the task that failed; the ones it stopped (upstream_failed) only when nothing
        # else explains the failure.
        failed = sorted(ti.task_id for ti in instances if ti.state == "failed") or sorted(
            ti.task_id for ti in instances if ti.state == "upstream_failed"
        )
        state = str(dag_run.state.value if hasattr(dag_run.state, "value") else dag_run.state)
        _emit(
            {"dag_id": dag.dag_id, "state": state, "failed_tasks": failed, "run_id": dag_run.run_id}
        )
        if state != "success":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
