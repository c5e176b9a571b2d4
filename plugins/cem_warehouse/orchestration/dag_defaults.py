"""What every DAG of the project shares, so each DAG file only says what is its own."""

from __future__ import annotations

from datetime import timedelta

import pendulum

START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")


def default_args(owner: str) -> dict:
    """Two retries for transient failures (the API client already retries 429/5xx inside a try)."""
    return {"owner": owner, "retries": 2, "retry_delay": timedelta(minutes=2)}
