"""``cem generate`` and ``cem sources ...``: fill and serve the source-system stand-ins."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from cem_warehouse.errors import CemError


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="fill the CRM, sales and survey stand-ins with synthetic customers",
        description="Day 0 replaces the stand-ins' contents; --next-day adds one more day to them.",
    )
    gen.add_argument(
        "--customers",
        type=int,
        default=10_000,
        metavar="N",
        help="customers on day 0 (default 10000)",
    )
    gen.add_argument(
        "--seed",
        type=int,
        default=42,
        metavar="S",
        help="random seed; the same seed gives the same data",
    )
    gen.add_argument(
        "--next-day",
        action="store_true",
        help="write one more day's delta instead of day 0 (customers and seed come from day 0)",
    )
    gen.add_argument(
        "--bad-rate",
        type=float,
        default=None,
        metavar="R",
        help="share of rows corrupted with bad inputs, plus one of each catalog case (default 0)",
    )
    gen.add_argument(
        "--benchmark", action="store_true", help="print wall seconds and peak memory as JSON"
    )
    gen.set_defaults(handler=_cmd_generate)

    sources = subparsers.add_parser(
        "sources", help="the source systems: where they are, and the CRM API stand-in"
    )
    actions = sources.add_subparsers(dest="sources_action", required=True, metavar="ACTION")
    serve = actions.add_parser(
        "serve", help="run the CRM REST API stand-in on loopback until Ctrl-C"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port (default $CEM_CRM_PORT or 8765)"
    )
    serve.add_argument(
        "--faults",
        choices=["realistic", "none"],
        default="realistic",
        help="realistic: occasional 429 and 503, like hosted CRMs (default); none: always answer",
    )
    serve.set_defaults(handler=_cmd_serve)
    show = actions.add_parser(
        "show", help="print where each source system is (connection ids and locations)"
    )
    show.set_defaults(handler=_cmd_show)


def _peak_memory_mb() -> float:
    """Peak resident memory of this process plus its (waited-for) children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + children) / 1024.0, 1)


def _cmd_generate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cem_warehouse.sources.generator.run import Targets, generate, generate_next_day

    if args.bad_rate is not None and not 0.0 <= args.bad_rate <= 1.0:
        raise CemError("--bad-rate must be between 0 and 1 (e.g. 0.01 for 1% bad inputs).")
    console = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    targets = Targets.default()
    show_progress = sys.stderr.isatty() and (args.next_day or args.customers >= 50_000)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("next day" if args.next_day else "customers", total=args.customers)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if args.next_day:
            result = generate_next_day(targets, bad_rate=args.bad_rate, progress=progress)
        else:
            result = generate(
                args.customers, args.seed, targets, bad_rate=args.bad_rate or 0.0, progress=progress
            )
    wall = round(time.perf_counter() - started, 2)
    if args.benchmark:
        print(
            json.dumps(
                {
                    "command": "cem generate " + " ".join(sys.argv[2:])
                    if len(sys.argv) > 2
                    else "cem generate",
                    "customers": result.customers,
                    "day": result.day,
                    "wall_seconds": wall,
                    "peak_memory_mb": _peak_memory_mb(),
                    "rows": result.rows,
                },
                indent=2,
            )
        )
        return 0
    label = f"day {result.day} ({result.export_date})"
    console.print(f"Generated {label} for {result.customers:,} customers in {wall}s:")
    for key, value in sorted(result.rows.items()):
        console.print(f"  {key:<36} {value:>12,}")
    if result.bad_cases:
        console.print(f"  bad-input catalog cases written:     {len(result.bad_cases):>12}")
    console.print(
        f"sales: {targets.sales.redacted_url}\ncrm store: {targets.crm_store} (serve: cem sources serve)\n"
        f"surveys: {targets.surveys_url}"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from cem_warehouse.sources import connections
    from cem_warehouse.sources.crm_server import CrmServer, Faults

    port = args.port if args.port is not None else connections.crm_port()
    faults = Faults.realistic() if args.faults == "realistic" else Faults()
    try:
        server = CrmServer(
            connections.crm_store_dir(), connections.crm_token(), "127.0.0.1", port, faults
        )
    except OSError as exc:
        raise CemError(
            f"Cannot listen on 127.0.0.1:{port} ({exc.strerror}): pick another --port or stop what uses it."
        ) from None
    print(
        f"CRM API on {server.base_url}/api/v1/<customers|support_cases|interactions|referrals>",
        flush=True,
    )
    print(
        f"bearer token in {connections.crm_token_file()}; faults: {args.faults}; Ctrl-C stops",
        flush=True,
    )
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from cem_warehouse.sources import connections

    crm = connections.crm_connection()
    surveys = connections.surveys_connection()
    rows = [(connections.CRM_CONN_ID, crm.base_url, crm.is_default)]
    try:
        sales = connections.sales_connection()
        rows.append((connections.SALES_CONN_ID, sales.postgres().redacted_url, sales.is_default))
    except CemError as exc:
        rows.append((connections.SALES_CONN_ID, f"unavailable: {exc}", True))
    rows.append((connections.SURVEYS_CONN_ID, surveys.path, surveys.is_default))
    for conn_id, where, default in rows:
        origin = "local stand-in" if default else connections.env_var(conn_id)
        print(f"{conn_id:<20} {where}  ({origin})")
    return 0
