"""`cem warehouse up|down|status|url`."""

from __future__ import annotations

import argparse

from cem_warehouse.warehouse.connection import check_warehouse
from cem_warehouse.warehouse.embedded import EmbeddedWarehouse
from cem_warehouse.warehouse.settings import configured_warehouse, warehouse_location


def run(args: argparse.Namespace) -> int:
    configured = configured_warehouse()
    embedded = EmbeddedWarehouse()
    if args.action == "url":
        location = warehouse_location()
        print(location.url if args.show_password else location.redacted_url)
        return 0
    if args.action == "up":
        if configured is not None:
            major = check_warehouse(configured)
            print(
                f"Using CEM_WAREHOUSE_URL: {configured.redacted_url} (PostgreSQL {major}); nothing to start."
            )
        else:
            location = embedded.up()
            print(
                f"Embedded warehouse running: {location.redacted_url} (data in {embedded.data_dir})."
            )
        _bootstrap()
        return 0
    if args.action == "down":
        if configured is not None:
            print(
                "CEM_WAREHOUSE_URL points at an external server; `cem warehouse down` only stops the embedded one."
            )
            return 0
        stopped = embedded.down()
        print(
            "Embedded warehouse stopped; data kept in " + str(embedded.data_dir)
            if stopped
            else "Embedded warehouse was not running."
        )
        return 0
    # status
    if configured is not None:
        major = check_warehouse(configured)
        print(f"external  {configured.redacted_url}  PostgreSQL {major}  reachable")
        return 0
    status = embedded.status()
    if status.running:
        major = check_warehouse(embedded.location())
        print(
            f"embedded  running  pid {status.pid}  127.0.0.1:{status.port}  PostgreSQL {major}  data {status.data_dir}"
        )
        return 0
    state = "stopped" if status.initialised else "not initialised"
    print(f"embedded  {state}  data {status.data_dir}  (start it with `cem warehouse up`)")
    return 3


def _bootstrap() -> None:
    from cem_warehouse.warehouse.bootstrap import bootstrap

    bootstrap(warehouse_location())
