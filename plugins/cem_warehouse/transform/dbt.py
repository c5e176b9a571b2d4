"""Run dbt against the warehouse; the profile takes its connection from one place.

``dbt_project/profiles.yml`` reads ``CEM_DBT_*`` variables; this module sets them from a
:class:`WarehouseLocation` (which came from the Airflow connection or CEM_WAREHOUSE_URL).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.env import whole_number_from_env
from cem_warehouse.errors import CemError
from cem_warehouse.warehouse.settings import WarehouseLocation

THREADS_ENV = "CEM_DBT_THREADS"


def dbt_threads() -> int:
    """How many models dbt builds at once: ``CEM_DBT_THREADS``, else 2 (one per core here)."""
    return whole_number_from_env(THREADS_ENV, 2, meaning="how many models dbt may build at once")


def dbt_environment(location: WarehouseLocation) -> dict[str, str]:
    return {
        THREADS_ENV: str(dbt_threads()),
        "CEM_DBT_HOST": location.host,
        "CEM_DBT_PORT": str(location.port),
        "CEM_DBT_USER": location.user,
        "CEM_DBT_PASSWORD": location.password,
        "CEM_DBT_DBNAME": location.dbname,
        "CEM_DBT_SSLMODE": location.sslmode or "prefer",
        "DBT_PROFILES_DIR": str(paths.dbt_project_dir()),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_USE_COLORS": "False",
    }


# dbt unit tests check the models' SQL on fixed fixtures: their outcome changes only when the
# project changes, never with the data. Production builds (`cem marts build`, the transform
# DAG, the demo, the benchmark) leave them out, as dbt recommends, and `make test` runs them
# all (tests/integration/test_dbt_staging.py); `cem marts build --unit-tests` runs them too.
UNIT_TESTS_SELECTOR = "resource_type:unit_test"


def say_dbt_changed(changed: str, consequence: str, module: str) -> None:
    """Say, on dbt's stderr (run_dbt keeps it with the rest of dbt's output), that a change
    this project makes to dbt's internals found ``changed`` different in this dbt version,
    and what the build does without it (``consequence``): slower, never different."""
    print(
        f"cem_warehouse: dbt's {changed} changed, so {consequence} "
        f"({module} needs updating for this dbt version)",
        file=sys.stderr,
    )


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_target_dir() -> Path:
    """Where run_dbt's dbt writes its artifacts (run_results.json, the docs site, ...)."""
    return paths.state_dir() / "dbt" / "target"


def run_dbt(location: WarehouseLocation, args: list[str], *, log_path: Path | None = None) -> str:
    """Run one dbt command; a failure raises with dbt's own summary lines."""
    project = paths.dbt_project_dir()
    target_dir = dbt_target_dir()
    command = [
        # dbt's CLI, with its ready nodes taken longest remaining chain first and each
        # thread's connection kept from one node to the next
        sys.executable,
        "-m",
        "cem_warehouse.transform.dbt_schedule",
        *args,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(log_path or paths.logs_dir() / "dbt"),
    ]
    result = subprocess.run(
        command, env={**os.environ, **dbt_environment(location)}, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        lines = output.splitlines()
        errors = [
            line
            for before, line in zip(["", *lines], lines, strict=False)
            # an error's own line, and the one after dbt's "... Error in model x" header,
            # which holds what went wrong (a Compilation Error's message)
            if "error" in line.lower() or "fail" in line.lower() or " Error in " in before
        ]
        raise CemError(f"dbt {args[0]} failed: {' | '.join(errors[-6:]) or output[-500:]}")
    return output
