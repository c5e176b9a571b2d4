"""Run dbt with the longest remaining chain of work first.

dbt hands ready nodes to its threads by depth in the graph: a staging test goes before a
model five levels down, whatever either costs. An incremental build is as long as its
longest chain of models (identity resolution, fct_orders, the purchase days, the churn
models, dim_customers, then the marts after it), and with two threads that chain kept
waiting for a free thread behind shallow, short nodes: four waits of 1.0-2.3 s in one
build at 1M customers (docs/operations/marts.md, "Scheduling").

So ``python -m cem_warehouse.transform.dbt_schedule <dbt arguments>`` runs the dbt CLI with
two changes to its queue:

* a ready node's priority is the seconds of the longest path from it to the end of the
  graph, each node counted at what it took in the previous run (dbt's run_results.json
  in ``dbt_target_dir()``, where run_dbt has dbt write; with no previous run every node counts alike, which still puts
  long chains first);
* dbt's main loop takes a node from the queue as soon as one is ready and lines it up in
  its thread pool, first come first served, so priorities alone would change nothing: a
  node is now taken only when one of the ``CEM_DBT_THREADS`` threads is free, and the
  choice is made at the moment it can start.

Which nodes run, and after what, is dbt's own graph, unchanged; only the order among
nodes that are ready at once differs.

The same entry point keeps each thread's connection open from one node to the next
(cem_warehouse.transform.dbt_connections), where dbt would open one per node, and has a
build write its manifest once, at its end (cem_warehouse.transform.dbt_manifest_once).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path

import networkx as nx

from cem_warehouse.transform.dbt import dbt_target_dir, dbt_threads, say_dbt_changed
from cem_warehouse.transform.dbt_connections import keep_connections_open
from cem_warehouse.transform.dbt_manifest_once import write_manifest_at_the_end_only

# What a node counts when the previous run timed no node of its type (models, tests, ...);
# an untimed node of a timed type counts the median of its type.
UNTIMED_NODE_SECONDS = 1.0


def node_seconds(run_results: dict) -> dict[str, float]:
    """Seconds each node took, by unique_id, from a parsed run_results.json."""
    return {
        r["unique_id"]: float(r["execution_time"])
        for r in run_results.get("results", [])
        if r.get("execution_time") is not None
    }


def previous_node_seconds(target_dir: Path) -> dict[str, float]:
    """Seconds each node took in the last dbt run that wrote ``target_dir``; {} when unknown."""
    try:
        return node_seconds(json.loads((target_dir / "run_results.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def longest_remaining_seconds(graph: nx.DiGraph, seconds: Mapping[str, float]) -> dict[str, float]:
    """For each node: its own seconds plus those of the longest path of its descendants."""
    by_type: dict[str, list[float]] = {}
    for node, value in seconds.items():
        by_type.setdefault(node.split(".", 1)[0], []).append(value)
    untimed = {kind: statistics.median(values) for kind, values in by_type.items()}

    def cost(node: str) -> float:
        if node in seconds:
            return seconds[node]
        return untimed.get(node.split(".", 1)[0], UNTIMED_NODE_SECONDS)

    remaining: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        tail = max((remaining[child] for child in graph.successors(node)), default=0.0)
        remaining[node] = cost(node) + tail
    return remaining


def install(target_dir: Path, threads: int) -> bool:
    """Make dbt's queue hand out, whenever one of ``threads`` is free, the ready node with
    the longest remaining path.

    Returns False, and dbt keeps its own order, if this dbt's queue lacks what this relies
    on (a dbt upgrade changed it): the build is then slower, never wrong.
    """
    try:
        from dbt.graph.queue import GraphQueue
    except ImportError:
        return False
    original_get = getattr(GraphQueue, "get", None)
    if not (callable(getattr(GraphQueue, "_get_scores", None)) and callable(original_get)):
        say_dbt_changed("GraphQueue", "this build runs in dbt's own order", __name__)
        return False
    seconds = previous_node_seconds(target_dir)

    def critical_path_first(self, graph: nx.DiGraph) -> dict[str, float]:
        # The queue takes the lowest score first.
        return {node: -value for node, value in longest_remaining_seconds(graph, seconds).items()}

    def get_when_a_thread_is_free(self, block: bool = True, timeout: float | None = None):
        # in_progress: nodes handed out and not yet marked done, one per busy thread;
        # some_task_done: notified (under the queue's lock) each time one is marked done.
        done = getattr(self, "some_task_done", None)
        if done is not None and isinstance(getattr(self, "in_progress", None), set):
            with done:
                while len(self.in_progress) >= threads:
                    done.wait(timeout=1.0)
        return original_get(self, block, timeout)

    GraphQueue._get_scores = critical_path_first
    GraphQueue.get = get_when_a_thread_is_free
    return True


def _command(arguments: list[str]) -> str:
    """dbt's subcommand among its CLI ``arguments`` (the first that is not an option)."""
    return next((argument for argument in arguments if not argument.startswith("-")), "")


def main() -> None:
    # run_dbt's --target-path: where the previous run left its timings.
    install(dbt_target_dir(), dbt_threads())
    keep_connections_open()
    write_manifest_at_the_end_only(_command(sys.argv[1:]))
    from dbt.cli.main import cli

    sys.argv = ["dbt", *sys.argv[1:]]
    sys.exit(cli())


if __name__ == "__main__":
    main()
