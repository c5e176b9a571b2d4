"""`make airflow`: the Airflow UI and scheduler on localhost, with the project's DAGs.

Starts api-server, scheduler, dag-processor and triggerer (the same processes
docker-compose.yml declares, with the LocalExecutor and SQLite instead of Celery and
PostgreSQL) and stops them all on Ctrl-C.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from rich.console import Console

from cem_warehouse import paths
from cem_warehouse.orchestration.airflow_env import merged_environment
from cem_warehouse.orchestration.runner import ensure_metadata_db
from cem_warehouse.orchestration.stand_ins import crm_stand_in
from cem_warehouse.transform.manifest import ensure_manifest
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.embedded import ensure_warehouse

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
console = Console()


def start_components(
    env: dict[str, str], components: tuple[str, ...] = COMPONENTS
) -> list[subprocess.Popen]:
    logs = paths.logs_dir() / "airflow"
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for component in components:
        log = (logs / f"{component}.log").open("a")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "airflow", component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return processes


def stop_components(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def serve(port: int = 8080) -> int:
    location = ensure_warehouse()
    bootstrap(location)
    env = merged_environment(location, api_port=port)
    paths.logs_dir().mkdir(parents=True, exist_ok=True)
    ensure_metadata_db(env, paths.logs_dir() / "airflow-db-migrate.log")
    ensure_manifest()
    with crm_stand_in() as crm_url:
        processes = start_components(env)
        if crm_url:
            console.print(f"CRM stand-in API: {crm_url} (the local default for cem_source_crm)")
        console.print(
            f"Airflow UI: http://127.0.0.1:{port}  (no login for the local stack)\n"
            f"Logs: {paths.logs_dir() / 'airflow'}; press Ctrl-C to stop."
        )
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(1)
            failed = [c for c, p in zip(COMPONENTS, processes, strict=True) if p.poll() is not None]
            console.print(
                f"[red]Airflow {', '.join(failed)} stopped; see {paths.logs_dir() / 'airflow'}[/red]"
            )
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            stop_components(processes)
