"""Whole-number settings read from the environment, refused with one clear line when malformed."""

from __future__ import annotations

import os

from cem_warehouse.errors import ConfigurationError


def whole_number_from_env(
    name: str, default: int, *, meaning: str, minimum: int = 1, maximum: int | None = None
) -> int:
    """``name``'s value as a whole number in ``minimum``..``maximum``, else ``default`` when unset.

    ``meaning`` completes "set it to ...", e.g. "how many models dbt may build at once".
    """
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    allowed = f"{minimum} or more" if maximum is None else f"{minimum}-{maximum}"
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise ConfigurationError(
            f"{name}={raw!r} is not a whole number {allowed}: set it to {meaning}, "
            f"or unset it for {default}."
        )
    return value
