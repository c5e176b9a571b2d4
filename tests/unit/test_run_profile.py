"""The benchmark's figures of a dbt build: its longest path of models and idle threads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cem_warehouse.transform.run_profile import longest_path_of_models, thread_use

START = datetime(2026, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _result(unique_id: str, thread: str, start: float, compiled: float, end: float) -> dict:
    """A run_results.json entry: compiled from ``start`` to ``compiled``, executed to ``end``."""
    return {
        "unique_id": unique_id,
        "thread_id": thread,
        "status": "success",
        "execution_time": end - start,
        "timing": [
            {"name": "compile", "started_at": _at(start), "completed_at": _at(compiled)},
            {"name": "execute", "started_at": _at(compiled), "completed_at": _at(end)},
        ],
    }


def _model(name: str) -> str:
    return f"model.cem_warehouse.{name}"


# a -> b -> d and a -> c -> d, on two threads; c is long, so the path is a, c, d. A test of
# a (1.0-1.5 s) and a model that did not run (skipped: no timing) hold no time on the path.
RUN_RESULTS = {
    "results": [
        _result(_model("a"), "Thread-1", 0.0, 0.2, 1.0),
        _result("test.cem_warehouse.not_null_a_id", "Thread-1", 1.0, 1.1, 1.5),
        _result(_model("b"), "Thread-1", 1.5, 1.6, 3.5),
        _result(_model("c"), "Thread-2", 1.0, 1.3, 6.0),
        _result(_model("d"), "Thread-1", 6.0, 6.1, 7.0),
        {
            "unique_id": _model("skipped"),
            "thread_id": "Thread-2",
            "status": "skipped",
            "execution_time": 0.0,
            "timing": [],
        },
    ]
}
MANIFEST = {
    "nodes": {
        _model("a"): {"depends_on": {"nodes": ["source.cem_warehouse.raw.orders"]}},
        _model("b"): {"depends_on": {"nodes": [_model("a")]}},
        _model("c"): {"depends_on": {"nodes": [_model("a")]}},
        _model("d"): {"depends_on": {"nodes": [_model("b"), _model("c")]}},
        "test.cem_warehouse.not_null_a_id": {"depends_on": {"nodes": [_model("a")]}},
    }
}


def test_the_longest_path_follows_the_slowest_parents_through_models_only():
    path = longest_path_of_models(RUN_RESULTS, MANIFEST)

    assert list(path["models"]) == ["a", "c", "d"]
    assert path["models"] == {"a": 1.0, "c": 5.0, "d": 1.0}
    assert path["seconds"] == 7.0


def test_idle_thread_seconds_are_the_span_on_every_thread_less_what_the_nodes_took():
    use = thread_use(RUN_RESULTS)

    # span 0-7 s on two threads; the nodes took 1 + 0.5 + 2 + 5 + 1 s
    assert use == {"threads": 2, "span_seconds": 7.0, "busy_seconds": 9.5, "idle_seconds": 4.5}


def test_a_run_without_models_has_an_empty_profile():
    assert longest_path_of_models({"results": []}, {"nodes": {}}) == {"seconds": 0.0, "models": {}}
    assert thread_use({"results": []})["idle_seconds"] == 0.0


def test_the_benchmark_prints_the_path_with_a_manifest_and_null_without(monkeypatch, tmp_path):
    import json

    from cem_warehouse.transform import benchmark

    monkeypatch.setattr(benchmark, "dbt_target_dir", lambda: tmp_path)
    (tmp_path / "run_results.json").write_text(json.dumps(RUN_RESULTS))
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))

    with_manifest = benchmark._run_results()
    # per model by name, slowest first; the test's seconds summed apart
    assert list(with_manifest["models_seconds"].items()) == [
        ("c", 5.0),
        ("b", 2.0),
        ("a", 1.0),
        ("d", 1.0),
        ("skipped", 0.0),
    ]
    assert with_manifest["tests_seconds_total"] == 0.5
    assert with_manifest["longest_path_of_models"]["seconds"] == 7.0
    assert with_manifest["thread_use"]["idle_seconds"] == 4.5

    # dbt writes its manifest when a build ends: a build without one still prints the rest
    (tmp_path / "manifest.json").unlink()
    without_manifest = benchmark._run_results()
    assert without_manifest["longest_path_of_models"] is None
    assert without_manifest["thread_use"] == with_manifest["thread_use"]
    assert without_manifest["models_seconds"] == with_manifest["models_seconds"]
