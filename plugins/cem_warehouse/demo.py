"""`cem demo` (behind `make demo`): warehouse up, sample data, the pipeline, the answers."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cem_warehouse.orchestration.runner import run_pipeline
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import check_warehouse, connect
from cem_warehouse.warehouse.embedded import ensure_warehouse
from cem_warehouse.warehouse.settings import WarehouseLocation

console = Console()


def run_demo(*, seed: int, customers: int) -> int:
    from cem_warehouse.sources.generator.run import Targets, generate

    location = ensure_warehouse()
    major = check_warehouse(location)
    console.print(f"Warehouse: {location.redacted_url} (PostgreSQL {major})")
    bootstrap(location)
    with console.status(
        f"Generating sample source data for {customers:,} customers (seed {seed})..."
    ):
        generate(customers, seed, Targets.default())
    console.print(
        f"Sample data: {customers:,} customers in the CRM, sales and survey stand-ins (seed {seed})"
    )
    run_pipeline()
    print_loads(location)
    print_answers(location)
    return 0


def print_loads(location: WarehouseLocation) -> None:
    with connect(location) as conn:
        rows = conn.execute(
            """
            select source, entity, count(*), sum(rows_received), sum(rows_published), sum(rows_quarantined)
            from ops.load_batches where status = 'published'
            group by source, entity order by source, entity
            """
        ).fetchall()
    table = Table(title="What was loaded (ops.load_batches)")
    for column in ("source", "entity", "batches", "received", "published", "quarantined"):
        table.add_column(column, justify="left" if column in ("source", "entity") else "right")
    for source, entity, batches, received, published, quarantined in rows:
        table.add_row(
            source, entity, *(f"{int(v):,}" for v in (batches, received, published, quarantined))
        )
    console.print(table)


def print_answers(location: WarehouseLocation) -> None:
    """What the marts say, straight from the marts schema (as an analyst would query it)."""
    with connect(location) as conn:
        overall = conn.execute(
            "select sum(responses), sum(promoters), sum(passives), sum(detractors) from marts.fct_nps_monthly"
        ).fetchone()
        rows = conn.execute(
            """
            select touchpoint, sum(responses), sum(promoters), sum(detractors)
            from marts.fct_nps_monthly group by touchpoint order by touchpoint
            """
        ).fetchall()
    n, promoters, passives, detractors = (int(v or 0) for v in overall)
    if n == 0:
        console.print("[yellow]The marts are empty: no survey responses were loaded.[/yellow]")
        return
    console.print(
        f"\n[bold]NPS overall: {_nps(promoters, detractors, n)}[/bold] (n = {n:,}: {promoters:,} promoters, "
        f"{passives:,} passives, {detractors:,} detractors; 95% margin of error)"
    )
    table = Table(title="NPS by touchpoint (from marts.fct_nps_monthly)")
    for column in ("touchpoint", "n", "NPS ± margin"):
        table.add_column(column, justify="left" if column == "touchpoint" else "right")
    for touchpoint, responses, tp_promoters, tp_detractors in rows:
        table.add_row(
            touchpoint,
            f"{int(responses):,}",
            _nps(int(tp_promoters), int(tp_detractors), int(responses)),
        )
    console.print(table)
    console.print('Query the marts yourself: psql "$(.venv/bin/cem warehouse url --show-password)"')


def _nps(promoters: int, detractors: int, n: int) -> str:
    p, d = promoters / n, detractors / n
    margin = 1.96 * 100 * ((p + d - (p - d) ** 2) / n) ** 0.5
    flag = " (n < 30)" if n < 30 else ""
    return f"{100 * (p - d):+.1f} ± {margin:.1f}{flag}"
