"""Where the project's folders are, so every component agrees on them."""

from __future__ import annotations

import os
from pathlib import Path

# plugins/cem_warehouse/paths.py -> the repository root is two levels above the package.
_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The repository root: ``CEM_PROJECT_DIR`` if set, else the checkout holding this package."""
    override = os.environ.get("CEM_PROJECT_DIR")
    if override:
        return Path(override).resolve()
    return _PACKAGE_DIR.parents[1]


def state_dir() -> Path:
    """Local, git-ignored state: embedded server data, Airflow home, landing files, logs.

    ``CEM_HOME`` moves it (tests use that to get a private state folder).
    """
    override = os.environ.get("CEM_HOME")
    return Path(override).resolve() if override else project_root() / ".cem"


def dags_dir() -> Path:
    return project_root() / "dags"


def plugins_dir() -> Path:
    return project_root() / "plugins"


def dbt_project_dir() -> Path:
    return project_root() / "dbt_project"


def expectations_dir() -> Path:
    return project_root() / "expectations"


def landing_dir() -> Path:
    """Default landing location for file-based sources (survey exports)."""
    return state_dir() / "landing"


def logs_dir() -> Path:
    return state_dir() / "logs"
