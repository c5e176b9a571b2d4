"""Write dbt's manifest once per build, at its end, instead of twice.

A `dbt build` writes ``manifest.json`` (and ``semantic_manifest.json``) into its target
directory twice: right after parsing, before any node may start, and again when the run
ends, over the first copy, with what the run compiled. Nothing reads the first copy in
between: the catch-up after the swap reads the one the run ends with
(cem_warehouse.transform.generations), and Cosmos renders the DAG from a manifest of its
own (cem_warehouse.transform.manifest). At 1M customers the first write held every build
up by about 0.3 s (a one-model `dbt run`: 2.23-2.24 s without it against 2.54-2.66 s,
three runs each; docs/operations/marts.md, "Stop 66").

:func:`write_manifest_at_the_end_only` skips the write that follows parsing, for the
commands whose run writes the manifest again at its end (``build`` and ``run``). Every other
command (``parse``, ``docs generate``, ``compile``, ``ls``) writes as dbt does. A run that
stops on an error before its end leaves the previous run's manifest in place, as it
leaves the previous run's results; no publication follows a failed build.
"""

from __future__ import annotations

from cem_warehouse.transform.dbt import say_dbt_changed

# dbt commands whose run ends by writing the manifest (dbt's GraphRunnableTask.run).
WRITTEN_AT_THE_END = frozenset({"build", "run"})


def write_manifest_at_the_end_only(command: str) -> bool:
    """Skip the manifest write after parsing when ``command`` writes it at its end.

    Returns False, and dbt writes both copies, for any other command, or if this dbt's
    parser or run task lacks what this relies on (a dbt upgrade changed them): the build is
    then a little slower, never different.
    """
    if command not in WRITTEN_AT_THE_END:
        return False
    try:
        import dbt.parser.manifest as parser
        import dbt.task.runnable as runnable
    except ImportError:
        return False
    # The run's own write at its end goes through the name its module imported; parsing
    # calls the parser module's. Only the latter is replaced.
    ends_with_write = getattr(runnable, "write_manifest", None)
    if not (callable(getattr(parser, "write_manifest", None)) and callable(ends_with_write)):
        say_dbt_changed("manifest writes", "this build writes the manifest twice", __name__)
        return False
    if ends_with_write is not parser.write_manifest:
        return False  # already replaced in this process

    def written_when_the_run_ends(*args, **kwargs) -> None:
        return None

    parser.write_manifest = written_when_the_run_ends
    return True
