"""`cem run`: the project's DAGs end to end, in dependency order, with a clear verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console

from cem_warehouse import paths
from cem_warehouse.errors import CemError
from cem_warehouse.orchestration.airflow_env import airflow_home, merged_environment
from cem_warehouse.orchestration.dag_runner import RESULT_PREFIX
from cem_warehouse.orchestration.stand_ins import crm_stand_in
from cem_warehouse.transform.manifest import ensure_manifest
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import check_warehouse
from cem_warehouse.warehouse.embedded import ensure_warehouse

console = Console(stderr=True, soft_wrap=True)


def _parse_date(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise CemError(
            f"{name} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-01."
        ) from None


def ensure_metadata_db(env: dict[str, str], log: Path) -> None:
    """Create or upgrade Airflow's metadata DB once per Airflow version."""
    import airflow

    stamp = airflow_home() / f".migrated-{airflow.__version__}"
    if stamp.exists() and env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        return
    with (
        console.status("Preparing Airflow's metadata database (first run only)..."),
        log.open("a") as out,
    ):
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise CemError(f"`airflow db migrate` failed: see {log}")
    stamp.touch()


def run_pipeline(
    as_of: str | None = None, logical_date: str | None = None, only: list[str] | None = None
) -> int:
    as_of = _parse_date(as_of, "--as-of")
    logical_date = (
        _parse_date(logical_date, "--logical-date") or datetime.now(UTC).date().isoformat()
    )
    location = ensure_warehouse()
    check_warehouse(location)
    bootstrap(location)

    env = merged_environment(location)
    logs = paths.logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    ensure_metadata_db(env, log)
    # The transform DAG is rendered from the dbt manifest; parse the project if it changed.
    ensure_manifest()

    command = [
        sys.executable,
        "-m",
        "cem_warehouse.orchestration.dag_runner",
        "--logical-date",
        logical_date,
    ]
    if as_of:
        command += ["--as-of", as_of]
    for dag_id in only or []:
        command += ["--dag", dag_id]

    outcome: dict[str, dict] = {}
    failure: str | None = None
    with crm_stand_in(), log.open("a") as out, console.status("Starting Airflow...") as status:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if not line.startswith(RESULT_PREFIX):
                continue
            event = json.loads(line[len(RESULT_PREFIX) :])
            if "plan" in event:
                console.print(f"Running {len(event['plan'])} DAGs: {' -> '.join(event['plan'])}")
            elif "import_error" in event:
                failure = f"DAG file {event['import_error']} does not import: {event['message']}"
            elif "unknown_dags" in event:
                failure = f"unknown DAG(s) {', '.join(event['unknown_dags'])}; the project has {', '.join(event['known'])}"
            elif event.get("state") == "running":
                status.update(f"Running {event['dag_id']}...")
            else:
                outcome[event["dag_id"]] = event
                ok = event["state"] == "success"
                console.print(
                    f"  {'[green]ok[/green]' if ok else '[red]FAILED[/red]'}  {event['dag_id']}"
                )
                if not ok:
                    tasks = (
                        ", ".join(event["failed_tasks"])
                        or "(no task failed; run state " + event["state"] + ")"
                    )
                    failure = f"DAG {event['dag_id']} failed at task {tasks}"
        returncode = process.wait()
    if failure or returncode != 0:
        raise CemError(
            f"{failure or f'the DAG runner exited with code {returncode}'}: see the log {log}"
        )
    console.print(f"All DAGs succeeded (log: {log}).")
    return 0
