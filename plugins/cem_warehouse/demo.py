"""`cem demo` (behind `make demo`): warehouse up, sample data, the pipeline, the answers."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cem_warehouse.load.landing import survey_landing_dir
from cem_warehouse.orchestration.runner import run_pipeline
from cem_warehouse.sources.thin_slice import write_survey_responses
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import check_warehouse, connect
from cem_warehouse.warehouse.embedded import ensure_warehouse
from cem_warehouse.warehouse.settings import WarehouseLocation

console = Console()


def run_demo(*, seed: int, customers: int) -> int:
    location = ensure_warehouse()
    major = check_warehouse(location)
    console.print(f"Warehouse: {location.redacted_url} (PostgreSQL {major})")
    bootstrap(location)
    export = write_survey_responses(
        survey_landing_dir() / f"survey_responses_seed{seed}.csv", responses=customers, seed=seed
    )
    console.print(f"Sample data: {customers} survey responses in {export}")
    run_pipeline()
    print_answers(location)
    return 0


def print_answers(location: WarehouseLocation) -> None:
    """What the marts say, straight from the marts schema (as an analyst would query it)."""
    with connect(location) as conn:
        overall = conn.execute(
            """
            select sum(responses), sum(promoters), sum(passives), sum(detractors)
            from marts.fct_nps_monthly
            """
        ).fetchone()
        rows = conn.execute(
            """
            select response_month, touchpoint, responses, nps, nps_margin_of_error, is_small_sample
            from marts.fct_nps_monthly
            order by response_month, touchpoint
            """
        ).fetchall()
    n, promoters, passives, detractors = (int(v or 0) for v in overall)
    if n == 0:
        console.print("[yellow]The marts are empty: no survey responses were loaded.[/yellow]")
        return
    p, d = promoters / n, detractors / n
    nps = 100 * (p - d)
    margin = 1.96 * 100 * ((p + d - (p - d) ** 2) / n) ** 0.5
    console.print(
        f"\n[bold]NPS overall: {nps:+.1f} ± {margin:.1f}[/bold] (n = {n}: {promoters} promoters, "
        f"{passives} passives, {detractors} detractors; 95% margin of error)"
    )
    table = Table(title="NPS by month and touchpoint (marts.fct_nps_monthly)")
    for column in ("month", "touchpoint", "n", "NPS", "± margin", "note"):
        table.add_column(column, justify="right" if column in ("n", "NPS", "± margin") else "left")
    for month, touchpoint, responses, month_nps, month_margin, small in rows:
        table.add_row(
            str(month),
            touchpoint,
            str(responses),
            f"{month_nps:+.1f}",
            f"{month_margin:.1f}",
            "n < 30" if small else "",
        )
    console.print(table)
    console.print('Query the marts yourself: psql "$(.venv/bin/cem warehouse url --show-password)"')
