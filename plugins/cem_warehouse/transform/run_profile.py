"""Where a dbt build's time went, read from its run_results.json and manifest.json.

Two figures decide whether a build can get shorter, and by what kind of change
(docs/operations/marts.md, "What is still slow"):

* the **longest path of models**: the models one after the other that no number of
  threads could run side by side, each counted at what it took. A build is never shorter
  than that path; when the path is most of the build, only a shorter path helps.
* the **threads' idle seconds**: between dbt's first node and its last, the seconds a
  thread had nothing to run. With few of them, both threads are busy and only less work
  helps; many of them, and the work waits on the path.

Stop 66 and later worked both out with scratch scripts over each build's files; the
benchmark now prints them for every build it times.
"""

from __future__ import annotations

from datetime import datetime

import networkx as nx

from cem_warehouse.transform.dbt_schedule import longest_remaining_seconds, node_seconds


def longest_path_of_models(run_results: dict, manifest: dict) -> dict:
    """The longest path through the models that ran, by the manifest's dependencies between
    them, each at its ``execution_time``: its total seconds and its models in order.

    Tests are left out: in ``dbt build`` a model's tests also hold back its children, so the
    build's true longest path is at least this long."""
    seconds = {
        node: taken
        for node, taken in node_seconds(run_results).items()
        if node.startswith("model.")
    }
    graph = nx.DiGraph()
    graph.add_nodes_from(seconds)
    for model in seconds:
        node = manifest.get("nodes", {}).get(model, {})
        for parent in node.get("depends_on", {}).get("nodes", []):
            if parent in seconds:
                graph.add_edge(parent, model)
    if not seconds:
        return {"seconds": 0.0, "models": {}}
    remaining = longest_remaining_seconds(graph, seconds)
    # the model with the most seconds still ahead of it starts the longest path
    node = max(remaining, key=remaining.__getitem__)
    path = [node]
    while successors := list(graph.successors(node)):
        node = max(successors, key=remaining.__getitem__)
        path.append(node)
    return {
        "seconds": round(remaining[path[0]], 2),
        "models": {model.split(".")[-1]: round(seconds[model], 2) for model in path},
    }


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def thread_use(run_results: dict) -> dict:
    """From dbt's first node to its last: how many threads ran nodes, the span, the
    thread-seconds its nodes (models and tests, compiling included) took, and the
    thread-seconds left idle in the span."""
    spans: list[tuple[float, float]] = []
    threads: set[str] = set()
    for result in run_results.get("results", []):
        phases = {phase["name"]: phase for phase in result.get("timing") or []}
        if "execute" not in phases:
            continue  # skipped, or failed before it ran: it held no thread
        started = phases.get("compile", phases["execute"])["started_at"]
        spans.append((_timestamp(started), _timestamp(phases["execute"]["completed_at"])))
        threads.add(result.get("thread_id") or "")
    if not spans:
        return {"threads": 0, "span_seconds": 0.0, "busy_seconds": 0.0, "idle_seconds": 0.0}
    span = max(end for _, end in spans) - min(start for start, _ in spans)
    busy = sum(end - start for start, end in spans)
    return {
        "threads": len(threads),
        "span_seconds": round(span, 2),
        "busy_seconds": round(busy, 2),
        "idle_seconds": round(max(len(threads) * span - busy, 0.0), 2),
    }
