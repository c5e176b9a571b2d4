"""Keep each dbt thread's database connection from one node to the next.

dbt closes a thread's connection when a node ends, so every model and every test of a
build opens a new one: 179 connections per build of the marts, each a new PostgreSQL
backend forked, authenticated and starting with empty catalog caches. At 50k customers,
where a build is mostly that fixed work, keeping them took the median build from 15.2 s to
14.1 s, and dbt's part of it from 8.7 s to 7.7 s, over eight builds each
(docs/operations/marts.md, "Stop 43").

:func:`keep_connections_open` changes what dbt does when a node releases its connection.
dbt's own reuse of an open connection for the thread's next node is unchanged. The release
now leaves the session as a new one would start, but keeps it open:

* the node's open transaction, if any, is rolled back (what closing did);
* ``DISCARD TEMP`` drops its temporary tables (dbt's incremental ``__dbt_tmp`` relations,
  the change log's ``__unchanged`` ones), which closing dropped too;
* ``RESET ALL`` puts back any setting a node changed for the session rather than for its
  transaction (the project's hooks use ``set local``, which the transaction's end undoes).

A connection that cannot be cleaned that way, or one opened with a role (``RESET ALL`` would
undo dbt's ``set role``), is closed as dbt closes it. dbt closes every connection at the end
of the run.
"""

from __future__ import annotations

from cem_warehouse.transform.dbt import say_dbt_changed

# Undo, on a connection kept open, what a node may have left in its session.
_SESSION_RESET = "discard temp; reset all"


def keep_connections_open() -> bool:
    """Make dbt keep each thread's connection open between nodes, cleaned as described above.

    Returns False, and dbt closes connections as usual, if this dbt's connection manager
    lacks what this relies on (a dbt upgrade changed it): the build is then slower, never
    different.
    """
    try:
        from dbt.adapters.base.connections import BaseConnectionManager
    except ImportError:
        return False
    close_connection = getattr(BaseConnectionManager, "release", None)
    if not all(
        callable(getattr(BaseConnectionManager, name, None))
        for name in ("release", "get_if_exists", "_rollback")
    ):
        say_dbt_changed("connection manager", "this build opens a connection per node", __name__)
        return False

    def release_keeping_the_connection(self) -> None:
        connection = self.get_if_exists()
        if (
            connection is None
            or connection.state != "open"
            or getattr(connection.credentials, "role", None)
        ):
            return close_connection(self)
        try:
            if connection.transaction_open:
                self._rollback(connection)  # dbt's own bookkeeping and log line
            # and any transaction the driver began outside dbt's, as closing would have
            connection.handle.rollback()
            cursor = connection.handle.cursor()
            cursor.execute(_SESSION_RESET)
            cursor.close()
            # the driver began a transaction for the reset: end it
            connection.handle.commit()
        except Exception:  # noqa: BLE001 - a broken connection: dbt's release closes it
            return close_connection(self)
        return None

    BaseConnectionManager.release = release_keeping_the_connection
    return True
