"""What a DAG file may read at parse time: its schedule from the sources config (a local file)."""

from __future__ import annotations

from cem_warehouse.load.policy import source_policy


def schedule_for(source: str) -> str | None:
    """The source's schedule, or None (manual runs only) when it is disabled."""
    policy = source_policy(source)
    return policy.schedule if policy.enabled else None
