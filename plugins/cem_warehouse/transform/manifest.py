"""The dbt manifest Cosmos renders the transform DAG from, so parsing the DAG runs no dbt.

`dbt parse` needs a profile but no connection: placeholder values are enough. It runs
before Airflow starts (`cem run`, `make airflow`), when the image is built, and from the
DAG tests; the DAG file only reads the JSON.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.errors import CemError
from cem_warehouse.transform.dbt import dbt_environment, dbt_executable
from cem_warehouse.warehouse.settings import WarehouseLocation

MANIFEST_ENV = "CEM_DBT_MANIFEST"


def manifest_path() -> Path:
    override = os.environ.get(MANIFEST_ENV)
    return Path(override) if override else paths.state_dir() / "dbt" / "manifest" / "manifest.json"


def _sources_newer_than(target: Path) -> bool:
    built = target.stat().st_mtime
    project = paths.dbt_project_dir()
    return any(
        p.stat().st_mtime > built
        for p in project.rglob("*")
        if p.suffix in (".sql", ".yml", ".yaml") and "target" not in p.parts
    )


def ensure_manifest(force: bool = False) -> Path:
    """(Re)build the manifest when the dbt project changed since the last parse."""
    target = manifest_path()
    if target.exists() and not force and not _sources_newer_than(target):
        return target
    placeholder = WarehouseLocation("localhost", 5432, "parse_only", "", "parse_only")
    project = paths.dbt_project_dir()
    result = subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(target.parent),
            "--log-path",
            str(paths.logs_dir() / "dbt"),
        ],
        env={**os.environ, **dbt_environment(placeholder)},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not target.exists():
        # dbt prints the cause on the lines after "Encountered an error": keep them all.
        output = result.stdout + result.stderr
        cause = (
            output[output.find("Encountered an error") :]
            if "Encountered an error" in output
            else output[-800:]
        )
        detail = " | ".join(line.strip() for line in cause.splitlines() if line.strip())
        raise CemError(
            f"`dbt parse` failed, so the transform DAG cannot be rendered: {detail[:800]}"
        )
    return target


if __name__ == "__main__":
    print(ensure_manifest(force=True))
