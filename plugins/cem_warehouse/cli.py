"""The ``cem`` command: operate the warehouse, run the pipeline, generate data, benchmark.

Each capability registers its own sub-commands (see ``_register_all``); this module only
wires them together and turns :class:`CemError` into one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cem_warehouse.errors import CemError


def _cmd_warehouse(args: argparse.Namespace) -> int:
    from cem_warehouse.warehouse import commands

    return commands.run(args)


def _register_warehouse(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "warehouse",
        help="start, stop and locate the warehouse",
        description="The embedded warehouse is used when CEM_WAREHOUSE_URL is unset.",
    )
    parser.add_argument("action", choices=["up", "down", "status", "url"])
    parser.add_argument(
        "--show-password", action="store_true", help="`url`: print the password instead of ***"
    )
    parser.set_defaults(handler=_cmd_warehouse)


def _cmd_run(args: argparse.Namespace) -> int:
    from cem_warehouse.orchestration.runner import run_pipeline

    return run_pipeline(as_of=args.as_of, logical_date=args.logical_date, only=args.dag)


def _register_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the project's DAGs end to end, in dependency order"
    )
    parser.add_argument(
        "--as-of",
        dest="as_of",
        metavar="YYYY-MM-DD",
        help="as-of date for the marts (default: the run's data interval end)",
    )
    parser.add_argument(
        "--logical-date",
        metavar="YYYY-MM-DD",
        help="logical date of the DAG runs (default: today, UTC)",
    )
    parser.add_argument(
        "--dag", action="append", metavar="DAG_ID", help="run only these DAGs (repeatable)"
    )
    parser.set_defaults(handler=_cmd_run)


def _cmd_marts_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cem_warehouse.transform.marts import build_marts
    from cem_warehouse.warehouse.embedded import ensure_warehouse

    location = ensure_warehouse()
    what = "full refresh" if args.full_refresh else "build"
    console = Console(stderr=True, highlight=False)
    with console.status(f"[bold]marts: dbt {what}, GX audit, publish[/] ({location.redacted_url})"):
        publication = build_marts(
            location, as_of=args.as_of, full_refresh=args.full_refresh, unit_tests=args.unit_tests
        )
    print(publication.summary)
    return 0


def _register_marts(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "marts",
        help="build, audit and publish the marts outside Airflow (what transform_cx_marts does)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="dbt build into marts_build, the GX audit, then the swap into marts",
        description="A failed model, test or audit publishes nothing: marts stays as it was.",
    )
    build.add_argument(
        "--as-of", dest="as_of", metavar="YYYY-MM-DD", help="as-of date (default: the latest data)"
    )
    build.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the incremental facts from raw (once after upgrading, or after a fact's columns changed)",
    )
    build.add_argument(
        "--unit-tests",
        dest="unit_tests",
        action="store_true",
        help="run the dbt unit tests as well (they check the models' SQL on fixtures: worth it after changing the project)",
    )
    build.set_defaults(handler=_cmd_marts_build)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cem_warehouse.demo import run_demo

    return run_demo(seed=args.seed, customers=args.customers)


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="start the warehouse, load sample data, build the marts, print what they say"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=2000)
    parser.set_defaults(handler=_cmd_demo)


def _cmd_status(args: argparse.Namespace) -> int:
    from cem_warehouse.ops_report import print_status

    return print_status()


def _register_status(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="last load batches per source and quarantined rows"
    )
    parser.set_defaults(handler=_cmd_status)


def _cmd_airflow(args: argparse.Namespace) -> int:
    from cem_warehouse.orchestration.local_airflow import serve

    return serve(port=args.port)


def _register_airflow(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "airflow", help="start the Airflow UI, scheduler, dag-processor and triggerer on localhost"
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(handler=_cmd_airflow)


def _cmd_bench_ingest(args: argparse.Namespace) -> int:
    from cem_warehouse.load.benchmark import run

    return run(args.rows)


def _cmd_bench_marts(args: argparse.Namespace) -> int:
    from cem_warehouse.transform.benchmark import run

    return run(args.customers, args.seed, keep=args.keep)


def _register_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks that print figures (JSON)")
    kinds = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    ingest = kinds.add_parser(
        "ingest", help="publish path vs psql \\copy of the same order-lines file"
    )
    ingest.add_argument("--rows", type=int, default=1_000_000)
    ingest.set_defaults(handler=_cmd_bench_ingest)
    marts = kinds.add_parser(
        "marts",
        help="full build of the marts, a warm incremental build, and one after a --next-day delta",
    )
    marts.add_argument("--customers", type=int, default=1_000_000, metavar="N")
    marts.add_argument("--seed", type=int, default=42)
    marts.add_argument(
        "--keep", action="store_true", help="keep the benchmark databases and files (printed)"
    )
    marts.set_defaults(handler=_cmd_bench_marts)


HEADLINE_METRICS = (
    "nps",
    "repeat_purchase_rate",
    "churn_rate",
    "satisfied_but_churned_share",
    "referral_rate",
)


def _cmd_metrics(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cem_warehouse.transform.manifest import ensure_manifest
    from cem_warehouse.transform.semantic import SemanticLayer
    from cem_warehouse.warehouse.settings import warehouse_location

    layer = SemanticLayer.from_manifest(ensure_manifest())
    names = args.metric or list(HEADLINE_METRICS)
    if args.by and not args.metric:
        # Of the headline metrics, those defined on a model that has this dimension.
        names = [name for name in names if args.by in layer.dimensions(name)]
        if not names:
            raise CemError(
                f"no headline metric can be split by {args.by!r}; try one of: "
                + ", ".join(sorted(set().union(*(layer.dimensions(n) for n in HEADLINE_METRICS))))
            )
    location = warehouse_location()
    table = Table(
        title="Semantic-layer metrics on the published marts"
        + (f", by {args.by}" if args.by else "")
    )
    table.add_column("metric")
    table.add_column(args.by or "")
    table.add_column("value", justify="right")
    for name in names:
        for group, value in sorted(layer.evaluate(location, name, by=args.by).items()):
            table.add_row(
                layer.metrics[name].get("label") or name,
                group,
                "-" if value is None else f"{value:.4f}",
            )
    Console().print(table)
    return 0


def _register_metrics(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="the headline metrics as the dbt semantic layer defines them, on the published marts",
    )
    parser.add_argument(
        "metric", nargs="*", help="metric names (default: the five headline metrics)"
    )
    parser.add_argument(
        "--by", metavar="DIMENSION", help="split by a dimension, e.g. loyalty_category"
    )
    parser.set_defaults(handler=_cmd_metrics)


def _optional_registrations() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands owned by other capabilities (sources, load, ...), when present."""
    registrations = []
    try:
        from cem_warehouse.sources.cli import register as register_sources
    except ImportError:
        pass
    else:
        registrations.append(register_sources)
    return registrations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cem", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (
        _register_warehouse,
        _register_run,
        _register_marts,
        _register_demo,
        _register_status,
        _register_airflow,
        _register_bench,
        _register_metrics,
        *_optional_registrations(),
    ):
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CemError as exc:
        print(f"cem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
