"""`build_marts` imports GX while dbt runs, so a fresh process (`cem marts build`) does not
wait for that import after dbt (docs/operations/marts.md, "Stop 28").

Runs in a process of its own, where GX is not imported yet. Only dbt is replaced: by a
step that watches for GX while "dbt" runs and then fails the build, so nothing is audited
or published. Bootstrap and the staging tests' window run on the real test database.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cem_warehouse.warehouse.settings import WarehouseLocation

WATCHING_DBT = """
import sys, time
from cem_warehouse.errors import CemError
from cem_warehouse.transform import marts
from cem_warehouse.warehouse.settings import parse_warehouse_url

assert "great_expectations" not in sys.modules, "imported before the build started"

def dbt_watching_for_gx(location, args):
    deadline = time.monotonic() + 120
    while "great_expectations" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.05)
    print("gx imported while dbt ran:", "great_expectations" in sys.modules)
    raise CemError("dbt build failed: stopped by the test")

marts.run_dbt = dbt_watching_for_gx
try:
    marts.build_marts(parse_warehouse_url(sys.argv[1]))
except CemError as exc:
    print("build stopped:", exc)
"""


def test_gx_is_imported_while_dbt_runs(fresh_database: WarehouseLocation) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", WATCHING_DBT, fresh_database.url],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "gx imported while dbt ran: True" in ran.stdout, ran.stdout + ran.stderr[-2000:]
    assert "build stopped: dbt build failed: stopped by the test" in ran.stdout
