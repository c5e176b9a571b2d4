"""`make install` compiles the dependencies to bytecode (see the Makefile's install recipe).

Where PYTHONDONTWRITEBYTECODE=1 is set, as on this machine, CI and in the project's image,
Python keeps nothing it compiles: without bytecode from the install, every dbt build, Airflow
task and audit compiled dbt, Airflow and GX from source again (dbt's start 7.9 s instead of
3.4 s, GX's import 14.3 s instead of 5.9 s on the 2-core machine, docs/operations/marts.md).
"""

import importlib.util
import os
from pathlib import Path

import pytest

# Under PYTHONDONTWRITEBYTECODE=1 no import writes bytecode, so what exists came from the install.
HEAVY_ENTRY_POINTS = ("dbt.cli.main", "great_expectations.core.batch", "airflow.models.dag")


@pytest.mark.skipif(
    os.environ.get("PYTHONDONTWRITEBYTECODE") != "1",
    reason="Python writes the bytecode itself on first import here",
)
@pytest.mark.parametrize("module", HEAVY_ENTRY_POINTS)
def test_heavy_dependencies_were_compiled_at_install(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed"
    cached = Path(importlib.util.cache_from_source(spec.origin))
    assert cached.exists(), (
        f"{module} has no bytecode ({cached}): run `make install` again, which compiles "
        "the dependencies (uv pip sync --compile-bytecode)"
    )
