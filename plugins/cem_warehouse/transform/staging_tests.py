"""Which raw rows the staging tests of a build read: those loaded since the last published build.

The staging models are views over raw, and their row tests (``accepted_values``,
``not_null``) used to scan every raw row on every build: about 5 s of the two dbt threads
at 1M customers, at the start of the build where every model waits for them, and growing
with the history kept. A row that a published build has already tested cannot have
changed since without being loaded again (loads stamp every row they write with a new
``_loaded_at``), so a build tests only the rows loaded after the previous publication's
window. The macro ``postgres__get_where_subquery`` reads that from
``ops.mart_publications`` when each test runs (a dbt var that changed with every build made
dbt parse the whole project every time). Uniqueness is not scoped (PostgreSQL enforces
raw's primary keys), and a full refresh, or a publication that did not record its window,
tests every row again.

Completeness rests on the raw-publish gate (``ops.raw_publish_gate``): the window's end is
read while holding it in SHARE mode, so no load is half-way through publishing, and any
row committed later is stamped after it (``cem_warehouse.load.tables.begin_raw_publish``).
Every row up to the end is therefore visible to the tests, which run after it is read, and
the next build starts where this one's window ended, once this build is published.
"""

from __future__ import annotations

from cem_warehouse.load.tables import RAW_PUBLISH_GATE
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation


def staging_tests_window_end(location: WarehouseLocation) -> str:
    """Where this build's staging test window ends, recorded with its publication as the
    next build's start. Read before the dbt build starts (its tests must run after this);
    where the window starts, the macro reads itself."""
    with connect(location) as conn, conn.transaction():
        # Waits for a publish into raw that is half-way; loads wait for this transaction.
        conn.execute(f"lock table {RAW_PUBLISH_GATE} in share mode")
        return conn.execute("select cast(clock_timestamp() as text)").fetchone()[0]
