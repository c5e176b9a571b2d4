"""Per-source load policy from one documented file: ``dags/sources.yml``.

The file sits with the DAGs because it is configuration of the DAGs (schedule, on/off);
``CEM_SOURCES_CONFIG`` points at another file. Where each source *lives* is not here: that
is the source's Airflow connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cem_warehouse import paths
from cem_warehouse.errors import ConfigurationError

CONFIG_ENV = "CEM_SOURCES_CONFIG"
DRIFT_MODES = ("add", "block")


@dataclass(frozen=True)
class SourcePolicy:
    name: str
    enabled: bool = True
    schedule: str | None = "@daily"
    schema_drift: str = "add"  # add new columns to raw, or block the batch
    bad_row_threshold: float = 0.05  # share of a batch that may be quarantined before it is blocked
    lookback_minutes: int = 60  # re-read this much before the cursor (database sources)
    allow_empty: bool = True
    volume_factor: float = 20.0  # block when a batch is this many times off its recent average
    volume_min_rows: int = 1000  # ...but only once batches are at least this big
    options: dict = field(default_factory=dict)


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else paths.dags_dir() / "sources.yml"


def _policy(name: str, raw: dict) -> SourcePolicy:
    known = set(SourcePolicy.__dataclass_fields__) - {"name", "options"}
    unknown = set(raw) - known - {"options"}
    if unknown:
        raise ConfigurationError(
            f"{config_path()}: source {name!r} has unknown setting(s) {sorted(unknown)}; known: {sorted(known)}."
        )
    policy = SourcePolicy(name=name, **raw)
    if policy.schema_drift not in DRIFT_MODES:
        raise ConfigurationError(
            f"{config_path()}: {name}.schema_drift is {policy.schema_drift!r}; use one of {DRIFT_MODES}."
        )
    if not 0 <= policy.bad_row_threshold <= 1:
        raise ConfigurationError(
            f"{config_path()}: {name}.bad_row_threshold must be between 0 and 1."
        )
    return policy


def load_policies() -> dict[str, SourcePolicy]:
    path = config_path()
    if not path.exists():
        raise ConfigurationError(f"{path} is missing: restore it from git or set {CONFIG_ENV}.")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    sources = document.get("sources") or {}
    return {name: _policy(name, settings or {}) for name, settings in sources.items()}


def source_policy(name: str) -> SourcePolicy:
    policies = load_policies()
    if name not in policies:
        raise ConfigurationError(f"{config_path()} has no entry for source {name!r}.")
    return policies[name]
