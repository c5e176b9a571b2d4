"""dbt's ready nodes are taken longest remaining chain first (cem_warehouse.transform.dbt_schedule)."""

from __future__ import annotations

import json
import threading
from queue import PriorityQueue
from types import SimpleNamespace

import networkx as nx
import pytest
from dbt.adapters.base.connections import BaseConnectionManager
from dbt.graph.queue import GraphQueue

from cem_warehouse.errors import CemError
from cem_warehouse.transform import dbt_connections, dbt_manifest_once, dbt_schedule
from cem_warehouse.transform.dbt import dbt_threads


def _build_graph() -> nx.DiGraph:
    # A shallow, short test and a deep chain, both ready at the start.
    graph = nx.DiGraph()
    graph.add_edges_from(
        [
            ("model.p.staging", "test.p.staging_accepted_values"),
            ("model.p.staging", "model.p.identity"),
            ("model.p.identity", "model.p.orders"),
            ("model.p.orders", "model.p.purchase_days"),
            ("model.p.orders_raw", "model.p.orders"),
        ]
    )
    graph.add_node("test.p.source_fresh")
    return graph


def test_longest_remaining_path_counts_each_node_at_its_last_run_seconds() -> None:
    seconds = {
        "model.p.staging": 0.5,
        "test.p.staging_accepted_values": 0.4,
        "model.p.identity": 5.0,
        "model.p.orders": 7.0,
        "model.p.purchase_days": 2.0,
        "test.p.source_fresh": 0.2,
    }
    remaining = dbt_schedule.longest_remaining_seconds(_build_graph(), seconds)
    assert remaining["model.p.purchase_days"] == pytest.approx(2.0)
    assert remaining["model.p.orders"] == pytest.approx(9.0)
    assert remaining["model.p.staging"] == pytest.approx(14.5)
    # Not timed last run: the median of the models that were (3.5 s).
    assert remaining["model.p.orders_raw"] == pytest.approx(3.5 + 9.0)
    assert remaining["test.p.source_fresh"] == pytest.approx(0.2)


def _write_last_run(target_dir) -> None:
    (target_dir / "run_results.json").write_text(
        json.dumps(
            {
                "results": [
                    {"unique_id": "model.p.staging", "execution_time": 0.5},
                    {"unique_id": "model.p.orders_raw", "execution_time": 0.1},
                    {"unique_id": "model.p.identity", "execution_time": 5.0},
                    {"unique_id": "model.p.orders", "execution_time": 7.0},
                    {"unique_id": "test.p.source_fresh", "execution_time": 3.0},
                ]
            }
        )
    )


def test_dbt_queue_takes_the_node_on_the_longest_chain_first(monkeypatch, tmp_path) -> None:
    _write_last_run(tmp_path)
    # install() replaces the method on dbt's class: put the original back afterwards.
    monkeypatch.setattr(GraphQueue, "_get_scores", GraphQueue._get_scores)
    monkeypatch.setattr(GraphQueue, "get", GraphQueue.get)
    assert dbt_schedule.install(tmp_path, threads=2), "this dbt's queue can no longer be reordered"
    scores = GraphQueue._get_scores(None, _build_graph())

    ready = PriorityQueue()
    for node in ("test.p.source_fresh", "model.p.orders_raw", "model.p.staging"):
        ready.put((scores[node], node))
    order = [ready.get()[1] for _ in range(3)]
    # dbt's own order (depth) would tie all three roots. By remaining seconds: staging
    # (15.25, through identity), orders_raw (9.85, through orders), the source test (3.0).
    assert order == ["model.p.staging", "model.p.orders_raw", "test.p.source_fresh"]


def test_without_a_previous_run_every_node_counts_alike(tmp_path) -> None:
    assert dbt_schedule.previous_node_seconds(tmp_path) == {}
    (tmp_path / "run_results.json").write_text("not json")
    assert dbt_schedule.previous_node_seconds(tmp_path) == {}
    remaining = dbt_schedule.longest_remaining_seconds(_build_graph(), {})
    assert remaining["model.p.staging"] == pytest.approx(4 * dbt_schedule.UNTIMED_NODE_SECONDS)


class _Manifest:
    """What GraphQueue.get asks of dbt's manifest: the node of an id."""

    def expect(self, node_id: str) -> SimpleNamespace:
        return SimpleNamespace(unique_id=node_id, resource_type="model")


def test_a_node_is_handed_out_only_when_a_thread_is_free(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(GraphQueue, "_get_scores", GraphQueue._get_scores)
    monkeypatch.setattr(GraphQueue, "get", GraphQueue.get)
    _write_last_run(tmp_path)
    assert dbt_schedule.install(tmp_path, threads=1)
    graph = _build_graph()
    queue = GraphQueue(graph, _Manifest(), set(graph.nodes()))

    first = queue.get()
    assert first.unique_id == "model.p.staging"  # the root of the longest chain
    handed_out: list[str] = []
    waiting = threading.Thread(target=lambda: handed_out.append(queue.get().unique_id))
    waiting.start()
    # The one thread is busy: dbt's main loop must not line a node up behind it.
    waiting.join(timeout=0.5)
    assert waiting.is_alive() and not handed_out
    queue.mark_done(first.unique_id)
    waiting.join(timeout=10)
    # Chosen once the thread was free, among everything ready by then: identity (14.75 s
    # to the end) before orders_raw (9.85 s), the source test (3 s) and staging's test.
    assert handed_out == ["model.p.identity"]


@pytest.mark.parametrize("configured", ["two", "0"])
def test_a_thread_count_that_is_not_a_positive_whole_number_is_refused(monkeypatch, configured):
    monkeypatch.setenv("CEM_DBT_THREADS", configured)
    with pytest.raises(CemError, match="CEM_DBT_THREADS"):
        dbt_threads()


def test_a_dbt_whose_connection_manager_changed_keeps_closing_connections(monkeypatch, capsys):
    # (the run itself: tests/integration/test_dbt_connections.py)
    original = BaseConnectionManager.release
    monkeypatch.setattr(BaseConnectionManager, "release", original)
    monkeypatch.delattr(BaseConnectionManager, "_rollback")
    assert dbt_connections.keep_connections_open() is False
    assert BaseConnectionManager.release is original
    assert "opens a connection per node" in capsys.readouterr().err


def test_a_build_writes_its_manifest_when_it_ends_not_after_parsing_too(
    monkeypatch, tmp_path
) -> None:
    # (a build's manifest is the one its run ended with: tests/integration/test_dbt_staging.py)
    import dbt.parser.manifest as parser
    import dbt.task.runnable as runnable

    original = parser.write_manifest
    monkeypatch.setattr(parser, "write_manifest", original)  # put back after the test
    for command in ("parse", "docs", "compile", "ls", ""):
        assert dbt_manifest_once.write_manifest_at_the_end_only(command) is False
        assert parser.write_manifest is original
    assert dbt_manifest_once.write_manifest_at_the_end_only("build") is True
    written: list[str] = []
    monkeypatch.setattr(parser.Manifest, "write", lambda self, path: written.append(path))
    parser.write_manifest(parser.Manifest(), str(tmp_path))
    assert written == [], "the write after parsing still happens"
    assert not list(tmp_path.iterdir()), "the write after parsing still happens"
    assert runnable.write_manifest is original, "the run's write at its end was replaced too"
    # once replaced, a second call changes nothing
    assert dbt_manifest_once.write_manifest_at_the_end_only("run") is False
    assert dbt_schedule._command(["build", "--vars", "{}", "--exclude", "x"]) == "build"


def test_a_dbt_whose_manifest_writes_changed_writes_both_copies(monkeypatch, capsys) -> None:
    import dbt.task.runnable as runnable

    monkeypatch.delattr(runnable, "write_manifest")
    assert dbt_manifest_once.write_manifest_at_the_end_only("build") is False
    assert "writes the manifest twice" in capsys.readouterr().err


def test_a_dbt_whose_queue_changed_runs_in_its_own_order(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.delattr(GraphQueue, "_get_scores")
    assert dbt_schedule.install(tmp_path, 2) is False
    assert "runs in dbt's own order" in capsys.readouterr().err
