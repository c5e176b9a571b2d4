"""`cem demo` (behind `make demo`): warehouse up, sample data, the pipeline, the answers."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from cem_warehouse.orchestration.runner import run_pipeline
from cem_warehouse.quality.gx_runner import data_docs_dir
from cem_warehouse.transform.docs import dbt_docs_dir
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
    """What the marts say to the questions of the domain, read from `marts` as an analyst would."""
    with connect(location) as conn:
        if conn.execute("select to_regclass('marts.fct_nps_monthly')").fetchone()[0] is None:
            console.print("[yellow]The marts are not published: see `cem status`.[/yellow]")
            return
        as_of = conn.execute("select max(as_of_date) from marts.fct_customer_churn").fetchone()[0]
        overall = conn.execute(
            "select sum(responses), sum(promoters), sum(passives), sum(detractors) from marts.fct_nps_monthly"
        ).fetchone()
        by_touchpoint = conn.execute(
            "select touchpoint, sum(responses), sum(promoters), sum(detractors) "
            "from marts.fct_nps_monthly group by touchpoint order by touchpoint"
        ).fetchall()
        by_segment = conn.execute(
            "select segment, sum(responses), sum(promoters), sum(detractors) "
            "from marts.fct_nps_monthly group by segment order by segment"
        ).fetchall()
        advocacy = conn.execute(
            f"select {', '.join(_ADVOCACY_COLUMNS)} from marts.fct_advocacy_by_loyalty_category "
            "order by array_position(array['promoter', 'passive', 'detractor', 'unknown'], loyalty_category::text)"
        ).fetchall()
        feedback = dict(
            conn.execute(
                "select loyalty_category, round(sum(responses)::numeric / nullif(sum(invitations), 0), 4) "
                "from marts.fct_survey_response_rates_by_loyalty_category group by 1"
            ).fetchall()
        )
        satisfied = conn.execute(
            "select churned_customers, churned_customers_with_csat, satisfied_churned_customers, "
            "satisfied_but_churned_share from marts.fct_satisfied_but_churned where breakdown = 'overall'"
        ).fetchone()
        after_contacts = conn.execute(
            "select case_outcome, cases, followed_up_cases, churn_rate_after_case, repurchase_rate_after_case, "
            "churn_window_days, repurchase_window_days from marts.fct_churn_after_support_cases "
            "order by is_resolved desc, case_outcome"
        ).fetchall()
        lifecycle = conn.execute(
            "select lifecycle_stage, count(*) from marts.dim_customers group by 1 order by 2 desc"
        ).fetchall()
    n, promoters, passives, detractors = (int(v or 0) for v in overall)
    if n == 0:
        console.print("[yellow]The marts are empty: no survey responses were loaded.[/yellow]")
        return

    console.print(
        f"\n[bold]What the marts say[/bold] (as of {as_of}; definitions: docs/metrics.md)"
    )
    console.print(
        f"\n[bold]1. How many advocates? NPS {_nps(promoters, detractors, n)}[/bold] (n = {n:,}: "
        f"{promoters:,} promoters, {passives:,} passives, {detractors:,} detractors; ± is the 95% margin of error)"
    )
    for title, rows in (("touchpoint", by_touchpoint), ("segment", by_segment)):
        table = Table(title=f"NPS by {title} (marts.fct_nps_monthly)")
        for column in (title, "n", "NPS ± margin"):
            table.add_column(column, justify="left" if column == title else "right")
        for name, responses, cell_promoters, cell_detractors in rows:
            table.add_row(
                name,
                f"{int(responses):,}",
                _nps(int(cell_promoters), int(cell_detractors), int(responses)),
            )
        console.print(table)

    table = Table(
        title="2. Do advocates behave differently? (marts.fct_advocacy_by_loyalty_category)"
    )
    for column in ("loyalty category", "customers", "repurchase", "2+ lines", "refer", "feedback"):
        table.add_column(column, justify="left" if column == "loyalty category" else "right")
    rows = [dict(zip(_ADVOCACY_COLUMNS, row, strict=True)) for row in advocacy]
    for values in rows:
        table.add_row(
            values["loyalty_category"],
            f"{values['customers']:,}",
            _pct(values["repeat_purchase_rate"]),
            _pct(values["multi_line_share"]),
            _pct(values["referral_rate"]),
            _pct(feedback.get(values["loyalty_category"])),
        )
    console.print(table)
    console.print(
        "   repurchase: share of buyers with 2+ purchase days; 2+ lines: share buying 2+ product lines; refer: "
        "share who referred someone; feedback: share of survey invitations answered (category when invited)."
    )
    total_revenue = sum(float(values["revenue"] or 0) for values in rows) or 1.0
    table = Table(title="4. What is loyalty worth? (marts.fct_advocacy_by_loyalty_category)")
    for column in (
        "loyalty category",
        "revenue",
        "share",
        "per customer",
        "gross margin",
        "churned",
    ):
        table.add_column(column, justify="left" if column == "loyalty category" else "right")
    for values in rows:
        table.add_row(
            values["loyalty_category"],
            _money(values["revenue"]),
            _pct(float(values["revenue"] or 0) / total_revenue),
            _money(values["revenue_per_customer"]),
            _money(values["gross_margin"]),
            _pct(values["churn_rate"]),
        )
    console.print(table)

    if satisfied:
        churned, with_csat, satisfied_count, share = satisfied
        console.print(
            f"\n[bold]3. Is satisfaction enough? {_pct(share)} of churned customers were satisfied[/bold] "
            f"(CSAT ≥ 4 at their last survey before churning: {satisfied_count:,} of the {with_csat:,} churned "
            f"customers with a CSAT; {churned:,} churned in all; marts.fct_satisfied_but_churned)"
        )

    table = Table(
        title="6. Every contact is a test of the brand (marts.fct_churn_after_support_cases)"
    )
    for column in ("case outcome", "cases", "churned after", "repurchased after"):
        table.add_column(column, justify="left" if column == "case outcome" else "right")
    for (
        outcome,
        cases,
        _followed,
        churn_rate,
        repurchase_rate,
        _churn_days,
        _repurchase_days,
    ) in after_contacts:
        table.add_row(outcome, f"{cases:,}", _pct(churn_rate), _pct(repurchase_rate))
    console.print(table)
    if after_contacts:
        console.print(
            f"   churned within {after_contacts[0][5]} days / repurchased within {after_contacts[0][6]} days of the case "
            "(cases followed for the whole window)."
        )
    console.print(
        "7. Where are customers in the lifecycle? "
        + ", ".join(f"{stage} {count:,}" for stage, count in lifecycle)
        + " (marts.dim_customers.lifecycle_stage)"
    )
    # Where they really are: CEM_HOME (and CEM_DBT_DOCS_DIR, CEM_GX_DOCS_DIR) move them.
    console.print(
        f"\nMore: dbt docs in {_shown(dbt_docs_dir() / 'index.html')}, data-quality reports in "
        f"{_shown(data_docs_dir() / 'index.html')}. "
        'Query the marts yourself: psql "$(.venv/bin/cem warehouse url --show-password)"'
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (``.cem/...``)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_ADVOCACY_COLUMNS = (
    "loyalty_category",
    "customers",
    "repeat_purchase_rate",
    "multi_line_share",
    "referral_rate",
    "revenue_per_customer",
    "revenue",
    "gross_margin",
    "churn_rate",
)


def _money(value) -> str:
    amount = float(value or 0)
    if abs(amount) >= 1_000_000:
        return f"€{amount / 1_000_000:,.1f}M"
    if abs(amount) >= 10_000:
        return f"€{amount / 1_000:,.0f}k"
    return f"€{amount:,.0f}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _nps(promoters: int, detractors: int, n: int) -> str:
    p, d = promoters / n, detractors / n
    margin = 1.96 * 100 * ((p + d - (p - d) ** 2) / n) ** 0.5
    flag = " (n < 30)" if n < 30 else ""
    return f"{100 * (p - d):+.1f} ± {margin:.1f}{flag}"
