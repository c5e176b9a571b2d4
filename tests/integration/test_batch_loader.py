"""The batch loader against a real PostgreSQL: nothing lost, idempotent, order-independent."""

from __future__ import annotations

import csv
import io

import psycopg
import pytest

from cem_warehouse.load.batch import BatchBlocked, BatchLoader, IncomingBatch
from cem_warehouse.load.contracts import Column, EntityContract
from cem_warehouse.load.policy import SourcePolicy
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect

CONTRACT = EntityContract(
    source="surveys",
    entity="survey_responses",
    columns=(
        Column("response_id", "text", nullable=False, locked=True),
        Column("respondent_email", "text"),
        Column("touchpoint", "text"),
        Column("responded_at", "timestamptz", locked=True),
        Column("ltr", "integer", locked=True),
        Column("csat", "integer"),
    ),
    natural_key=("response_id",),
    version_column="responded_at",
    cursor_column="responded_at",
)
COLUMNS = CONTRACT.column_names


def batch(rows: list[list], columns: list[str] = COLUMNS, **kwargs) -> IncomingBatch:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    data = buffer.getvalue().encode()
    return IncomingBatch(columns=list(columns), chunks=lambda: iter([data]), **kwargs)


def good_rows(n: int, start: int = 0, day: int = 1) -> list[list]:
    return [
        [f"R{i}", f"c{i}@x.com", "relationship", f"2026-10-{day:02d}T10:00:00Z", i % 11, 1 + i % 5]
        for i in range(start, start + n)
    ]


@pytest.fixture
def loader(fresh_database):
    bootstrap(fresh_database)
    return BatchLoader(
        fresh_database, CONTRACT, SourcePolicy(name="surveys", bad_row_threshold=0.2)
    )


def raw_state(location) -> list[tuple]:
    with connect(location) as conn:
        return conn.execute(
            "select response_id, respondent_email, touchpoint, responded_at, ltr, csat from raw.survey_responses order by 1"
        ).fetchall()


def test_clean_batch_publishes_every_row(loader):
    outcome = loader.load(batch(good_rows(200)))
    assert (outcome.rows_received, outcome.rows_published, outcome.rows_quarantined) == (
        200,
        200,
        0,
    )
    assert len(raw_state(loader.location)) == 200
    with connect(loader.location) as conn:
        ledger = conn.execute(
            "select status, rows_received, rows_published, rows_quarantined, cursor_to from ops.load_batches"
        ).fetchone()
        cursor = conn.execute("select cursor_value from ops.source_cursors").fetchone()
    assert ledger[:4] == ("published", 200, 200, 0)
    assert cursor[0].startswith("2026-10-01")
    # Every expectation of the suite has its outcome recorded, with its count.
    from cem_warehouse.quality.gx_runner import load_suite_definition

    suite = load_suite_definition("survey_responses")["expectations"]
    with connect(loader.location) as conn:
        recorded = conn.execute(
            "select count(*), count(*) filter (where success and unexpected_count = 0) "
            "from ops.dq_results where expectation_type like 'expect_column%%'"
        ).fetchone()
        # The first load into an empty raw table rebuilds its primary key.
        key = conn.execute(
            "select pg_get_constraintdef(oid) from pg_constraint "
            "where conrelid = 'raw.survey_responses'::regclass and contype = 'p'"
        ).fetchone()
    expected = sum(e["kwargs"]["column"] in COLUMNS for e in suite)
    assert recorded == (expected, expected)
    assert key == ("PRIMARY KEY (response_id)",)
    # ...and leaves planner statistics behind (the incremental marts plan on them).
    with connect(loader.location) as conn:
        analyzed = conn.execute(
            "select reltuples from pg_class where oid = 'raw.survey_responses'::regclass"
        ).fetchone()[0]
    assert analyzed == 200
    # ...and a BRIN index on _loaded_at: incremental marts read "loaded after the watermark".
    with connect(loader.location) as conn:
        brin = conn.execute(
            "select indexdef from pg_indexes where schemaname = 'raw' "
            "and tablename = 'survey_responses' and indexdef like '%%USING brin%%'"
        ).fetchall()
    assert [d for (d,) in brin if "(_loaded_at)" in d]
    # The validation is browsable as GX Data Docs, linked from the front page.
    from cem_warehouse.quality.gx_runner import data_docs_dir

    assert "survey_responses/index.html" in (data_docs_dir() / "index.html").read_text()
    pages = list((data_docs_dir() / "survey_responses" / "validations").rglob("*.html"))
    assert pages and "ltr" in pages[0].read_text()


def test_bad_rows_are_quarantined_and_the_rest_published(loader):
    rows = good_rows(50)
    rows[3][4] = "10 - very likely"  # not an integer
    rows[4][4] = 11  # out of range
    rows[5][4] = -1
    rows[6][0] = ""  # no key
    rows[7][3] = "2026-13-45 25:00"  # not a timestamp
    outcome = loader.load(batch(rows))
    assert outcome.rows_received == 50
    assert outcome.rows_quarantined == 5
    assert outcome.rows_published == 45
    with connect(loader.location) as conn:
        reasons = [
            r[0]
            for r in conn.execute("select reason from quarantine.survey_responses order by reason")
        ]
        payload = conn.execute(
            "select payload->>'ltr' from quarantine.survey_responses where reason like 'ltr: not a valid%%'"
        ).fetchone()
    assert any("ltr: not a valid integer" in r for r in reasons)
    assert any("responded_at: not a valid timestamptz" in r for r in reasons)
    assert sum("expect_column_values_to_be_between on ltr" in r for r in reasons) == 2
    assert any("natural key" in r for r in reasons)
    assert payload == ("10 - very likely",)


def test_too_many_bad_rows_block_the_batch_and_publish_nothing(loader):
    rows = good_rows(20)
    for row in rows[:10]:
        row[4] = 42
    with pytest.raises(BatchBlocked, match="cem_rejected_row_share_at_most"):
        loader.load(batch(rows))
    assert raw_state(loader.location) == []
    with connect(loader.location) as conn:
        assert conn.execute("select status from ops.load_batches").fetchone() == ("blocked",)
        assert conn.execute("select count(*) from ops.source_cursors").fetchone() == (0,)
        leftovers = conn.execute(
            "select count(*) from pg_tables where schemaname = 'staging'"
        ).fetchone()
    assert leftovers == (0,)


def test_replays_in_any_order_leave_raw_identical(fresh_database, database_factory):
    first = good_rows(30)
    changed = [list(r) for r in good_rows(30, day=2)]
    for row in changed:
        row[5] = 5  # a later version of every response
    duplicate_within = good_rows(5) + good_rows(5)
    batches = [first, changed, duplicate_within, first]

    states = []
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]):
        location = database_factory()
        bootstrap(location)
        loader = BatchLoader(location, CONTRACT, SourcePolicy(name="surveys"))
        for index in order:
            outcome = loader.load(batch(batches[index]))
            assert outcome.rows_received == outcome.rows_published + outcome.rows_quarantined
            if index == 2:
                # Into a raw table that has rows: each repeated key quarantined, once.
                assert (outcome.rows_published, outcome.rows_quarantined) == (5, 5)
        states.append(raw_state(location))
    assert states[0] == states[1] == states[2]
    assert {row[5] for row in states[0]} == {5}, "the newest version wins"


def test_same_version_conflicts_resolve_the_same_way_in_any_order(fresh_database, database_factory):
    a = good_rows(10)
    b = [list(r) for r in a]
    for row in b:
        row[1] = row[1].upper()  # same key, same version, different content
    results = []
    for order in ((a, b), (b, a)):
        location = database_factory()
        bootstrap(location)
        loader = BatchLoader(location, CONTRACT, SourcePolicy(name="surveys"))
        for rows in order:
            loader.load(batch(rows))
        results.append(raw_state(location))
    assert results[0] == results[1]


def test_new_columns_follow_the_drift_policy(fresh_database):
    bootstrap(fresh_database)
    rows = [r + ["web"] for r in good_rows(10)]
    blocking = BatchLoader(
        fresh_database, CONTRACT, SourcePolicy(name="surveys", schema_drift="block")
    )
    with pytest.raises(BatchBlocked, match=r"new column\(s\) \['channel'\]"):
        blocking.load(batch(rows, columns=[*COLUMNS, "channel"]))
    adding = BatchLoader(fresh_database, CONTRACT, SourcePolicy(name="surveys", schema_drift="add"))
    adding.load(batch(rows, columns=[*COLUMNS, "channel"]))
    with connect(fresh_database) as conn:
        assert conn.execute(
            "select count(*) from raw.survey_responses where channel = 'web'"
        ).fetchone() == (10,)


def test_type_change_on_a_locked_column_blocks(loader):
    with pytest.raises(
        BatchBlocked, match=r"type change on locked column\(s\) ltr \(integer -> text\)"
    ):
        loader.load(batch(good_rows(5), source_types={"ltr": "text"}))


def test_missing_required_column_blocks(loader):
    columns = [c for c in COLUMNS if c != "response_id"]
    rows = [r[1:] for r in good_rows(5)]
    with pytest.raises(BatchBlocked, match=r"required column\(s\) \['response_id'\] missing"):
        loader.load(batch(rows, columns=columns))


def test_empty_batch_blocks_only_when_the_source_must_not_be_empty(fresh_database):
    bootstrap(fresh_database)
    BatchLoader(fresh_database, CONTRACT, SourcePolicy(name="surveys", allow_empty=True)).load(
        batch([])
    )
    strict = BatchLoader(fresh_database, CONTRACT, SourcePolicy(name="surveys", allow_empty=False))
    with pytest.raises(BatchBlocked, match="expect_table_row_count_to_be_between"):
        strict.load(batch([]))


def test_volume_far_off_the_recent_average_blocks(fresh_database):
    bootstrap(fresh_database)
    steady = BatchLoader(
        fresh_database, CONTRACT, SourcePolicy(name="surveys", volume_factor=5, volume_min_rows=100)
    )
    steady.load(
        batch(good_rows(5000, start=100_000, day=1))
    )  # a first full load is not a normal day
    for day in (2, 3, 4):
        steady.load(
            batch(good_rows(200, start=day * 1000, day=day), cursor_from=f"2026-10-0{day - 1}")
        )
    with pytest.raises(BatchBlocked, match="expect_table_row_count_to_be_between.*observed 1500"):
        steady.load(batch(good_rows(1500, start=20_000, day=5), cursor_from="2026-10-04"))
    # A quiet day is normal for a source that may be empty, not for one that must deliver.
    steady.load(batch(good_rows(10, start=9000, day=6), cursor_from="2026-10-05"))
    strict = BatchLoader(
        fresh_database,
        CONTRACT,
        SourcePolicy(name="surveys", volume_factor=5, volume_min_rows=100, allow_empty=False),
    )
    with pytest.raises(BatchBlocked, match="expect_table_row_count_to_be_between.*observed 10"):
        strict.load(batch(good_rows(10, start=9100, day=7), cursor_from="2026-10-06"))


def test_a_small_day_after_a_chunked_backfill_publishes(fresh_database):
    """A history export split into big files is the initial load, not the volume baseline:
    the first normal day after it (far smaller) publishes, even for a source that must
    deliver. Once normal days exist, a day far off them still blocks."""
    from cem_warehouse.load.ingest import run_source

    bootstrap(fresh_database)
    policy = SourcePolicy(name="surveys", volume_factor=5, volume_min_rows=100, allow_empty=False)
    history = [
        batch(good_rows(3000, start=chunk * 3000, day=1), cursor_from=f"history-c{chunk}.csv")
        for chunk in range(3)
    ]
    run_source(
        fresh_database, "surveys", [CONTRACT], lambda c, cursor, p: iter(history), policy=policy
    )
    for day in (2, 3, 4):
        day_file = batch(good_rows(150, start=day * 10_000, day=day), cursor_from=f"day-{day}.csv")
        run_source(
            fresh_database,
            "surveys",
            [CONTRACT],
            lambda c, cursor, p, day_file=day_file: iter([day_file]),
            policy=policy,
        )
    with connect(fresh_database) as conn:
        marked = conn.execute(
            "select initial_load, count(*) from ops.load_batches where status = 'published' group by 1 order by 1"
        ).fetchall()
    assert marked == [(False, 3), (True, 3)]
    replayed_history = batch(good_rows(3000, start=50_000, day=5), cursor_from="day-5.csv")
    with pytest.raises(BatchBlocked, match="expect_table_row_count_to_be_between.*observed 3000"):
        run_source(
            fresh_database,
            "surveys",
            [CONTRACT],
            lambda c, cursor, p: iter([replayed_history]),
            policy=policy,
        )


def test_a_suite_failing_while_the_publish_writes_rolls_every_write_back(loader):
    """The suite runs beside the publish transaction: when it fails, the upsert into a raw
    table that already has rows, the quarantine and the cursor all roll back."""
    loader.load(batch(good_rows(50)))
    with connect(loader.location) as conn:
        cursor_before = conn.execute("select cursor_value from ops.source_cursors").fetchone()
    before = raw_state(loader.location)
    rows = good_rows(20, start=0, day=2)  # newer versions of 20 published records...
    for row in rows[:10]:
        row[4] = 42  # ...half of them with an LTR out of range: over the bad-row threshold
    with pytest.raises(BatchBlocked, match="cem_rejected_row_share_at_most"):
        loader.load(batch(rows))
    assert raw_state(loader.location) == before
    with connect(loader.location) as conn:
        assert conn.execute("select count(*) from quarantine.survey_responses").fetchone() == (0,)
        assert (
            conn.execute("select cursor_value from ops.source_cursors").fetchone() == cursor_before
        )
        assert conn.execute(
            "select status from ops.load_batches order by started_at"
        ).fetchall() == [("published",), ("blocked",)]


# ---- landing over several connections ------------------------------------------------------


def _quoted_rows(n: int) -> list[list]:
    # Values with commas, quotes and newlines: a cut in the wrong place would split a record.
    return [
        [
            f'R{i}, "the {i}th",\nsecond line' if i % 7 == 0 else f"R{i}",
            f"c{i}@x.com",
            "relationship",
            f"2026-10-01T10:{i % 60:02d}:00Z",
            i % 11,
            1 + i % 5,
        ]
        for i in range(n)
    ]


def test_a_large_batch_lands_over_several_connections_and_loses_nothing(fresh_database):
    from psycopg import sql

    from cem_warehouse.load.parallel_copy import copy_in_parallel

    with connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "create table landed (response_id text, respondent_email text, touchpoint text, "
            "responded_at timestamptz, ltr integer, csat integer)"
        )
    buffer = io.StringIO()
    csv.writer(buffer).writerows(_quoted_rows(3000))
    data = buffer.getvalue().encode()
    opened = []

    def connect_counted():
        opened.append(1)
        return connect(fresh_database, autocommit=True)

    rows = copy_in_parallel(
        connect_counted,
        sql.SQL("copy landed from stdin (format csv)"),
        (data[i : i + 1000] for i in range(0, len(data), 1000)),
        streams=3,
        piece_bytes=2000,
    )
    assert rows == 3000
    assert len(opened) > 1, "a backlog of pieces should have opened more connections"
    with connect(fresh_database) as conn:
        landed = conn.execute(
            "select response_id, respondent_email, touchpoint, responded_at, ltr, csat from landed"
        ).fetchall()
    expected = [tuple(r) for r in csv.reader(io.StringIO(data.decode()))]
    assert sorted(tuple("" if v is None else str(v) for v in r[:3]) for r in landed) == sorted(
        e[:3] for e in expected
    )


@pytest.mark.parametrize("bad_line", [100, 15000], ids=["first-stream", "a-later-stream"])
def test_a_bad_value_in_one_stream_fails_the_copy_without_hanging(fresh_database, bad_line):
    """Whichever stream meets the bad value, the COPY fails with PostgreSQL's message, and
    the caller's own connection, which carried the first stream, is left usable (the loader
    goes on with it to empty the table and land the batch as text)."""
    import psycopg
    from psycopg import sql

    from cem_warehouse.load.parallel_copy import copy_in_parallel

    lines = [f"{i}\n" for i in range(20000)]
    lines[bad_line] = "not a number\n"
    data = "".join(lines).encode()
    with connect(fresh_database, autocommit=True) as conn:
        conn.execute("create table landed (n integer)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="not a number"):
            copy_in_parallel(
                lambda: connect(fresh_database, autocommit=True),
                sql.SQL("copy landed from stdin (format csv)"),
                (data[i : i + 512] for i in range(0, len(data), 512)),
                streams=2,
                piece_bytes=1024,
                first=conn,
            )
        assert not conn.closed
        conn.execute("truncate landed")
        assert conn.execute("select count(*) from landed").fetchone()[0] == 0


def test_the_publish_waits_for_its_commit_to_reach_the_disk(loader):
    """The load's connection lands with synchronous_commit off (batch tables are scratch
    after a crash), and the same connection publishes: the publish transaction must turn
    the wait back on, or a batch reported published could be lost by a crash."""
    seen = {}

    def during_publish(conn, batch_id):
        seen["in_publish"] = conn.execute("show synchronous_commit").fetchone()[0]

    loader.load(batch(good_rows(30), on_publish=during_publish))
    assert seen == {"in_publish": "on"}


@pytest.mark.parametrize("trusted_types", [True, False])
def test_landing_over_several_connections_publishes_what_one_connection_does(
    database_factory, monkeypatch, trusted_types
):
    """The same batch (one bad value, one duplicate) through one and through three connections."""
    from cem_warehouse.load import parallel_copy

    rows = _quoted_rows(3000)
    rows[1234][4] = "eleven"  # not an integer: quarantined on the text path
    rows.append(list(rows[10]))  # a duplicate key in the batch
    results = []
    for streams in ("1", "3"):
        location = database_factory()
        bootstrap(location)
        monkeypatch.setenv(parallel_copy.STREAMS_ENV, streams)
        monkeypatch.setattr(parallel_copy, "PIECE_BYTES", 4096)
        outcome = BatchLoader(
            location, CONTRACT, SourcePolicy(name="surveys", bad_row_threshold=0.2)
        ).load(batch(rows, trusted_types=trusted_types))
        with connect(location) as conn:
            quarantined = conn.execute(
                "select reason from quarantine.survey_responses order by reason"
            ).fetchall()
        results.append(
            (
                outcome.rows_received,
                outcome.rows_published,
                outcome.rows_quarantined,
                raw_state(location),
                quarantined,
            )
        )
    assert results[0][:3] == (3001, 2999, 2), results[0][4][:5]
    assert results[1] == results[0]


# ---- a batch into an empty raw table becomes its storage ------------------------------------


def _partitions(location) -> list[str]:
    with connect(location) as conn:
        return [
            name
            for (name,) in conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
                "where i.inhparent = 'raw.survey_responses'::regclass order by 1"
            )
        ]


@pytest.mark.parametrize("trusted_types", [True, False])
def test_a_batch_into_an_empty_raw_table_becomes_its_storage(loader, trusted_types):
    """Written once: the batch table itself, without its rejected rows, is raw's partition."""
    rows = good_rows(40)
    rows[3][4] = 42  # out of range: quarantined
    rows.append(list(rows[5]))  # the same record twice: one copy quarantined
    rows[-1][5] = 5 if rows[5][5] != 5 else 4  # same version, other content
    if not trusted_types:
        rows[7][0] = ""  # no key: quarantined (a typed COPY refuses it: NOT NULL)
    outcome = loader.load(batch(rows, trusted_types=trusted_types))
    published = 39 if trusted_types else 38
    assert (outcome.rows_received, outcome.rows_published, outcome.rows_quarantined) == (
        41,
        published,
        41 - published,
    )
    assert _partitions(loader.location) == [f"survey_responses__batch_{outcome.batch_id}"]
    keys = [r[0] for r in raw_state(loader.location)]
    assert len(keys) == len(set(keys)) == published
    assert "R3" not in keys and "R5" in keys and ("R7" in keys) == trusted_types
    with connect(loader.location) as conn:
        bookkeeping = conn.execute(
            "select distinct r._batch_id, r._source, r._loaded_at = b.started_at is not null "
            "from raw.survey_responses r join ops.load_batches b on b.batch_id = r._batch_id"
        ).fetchall()
        quarantined = conn.execute("select count(*) from quarantine.survey_responses").fetchone()
        keys_enforced = conn.execute(
            "select conrelid::regclass::text from pg_constraint where contype = 'p' "
            "and conrelid in (select 'raw.survey_responses'::regclass union all "
            "select inhrelid from pg_inherits where inhparent = 'raw.survey_responses'::regclass) "
            "order by 1"
        ).fetchall()
        brin = conn.execute(
            "select count(*) from pg_indexes where schemaname = 'raw' and tablename = %s "
            "and indexdef like '%%USING brin (_loaded_at)%%'",
            (f"survey_responses__batch_{outcome.batch_id}",),
        ).fetchone()
    assert bookkeeping == [(outcome.batch_id, "surveys", True)]
    assert quarantined == (41 - published,)
    assert keys_enforced == [
        ("raw.survey_responses",),
        (f"raw.survey_responses__batch_{outcome.batch_id}",),
    ]
    assert brin == (1,)
    # The next batch merges into it as into any raw table.
    later = loader.load(batch(good_rows(10, start=100) + good_rows(2, start=0, day=2)))
    assert _partitions(loader.location) == [f"survey_responses__batch_{outcome.batch_id}"]
    assert len(raw_state(loader.location)) == published + 10
    assert later.rows_changed == 12


def _loaded_at_indexes(location) -> list[str]:
    with connect(location) as conn:
        return [
            f"{table}: {method}"
            for table, method in conn.execute(
                "select c.relname, a.amname from pg_index i "
                "join pg_class c on c.oid = i.indrelid join pg_class x on x.oid = i.indexrelid "
                "join pg_am a on a.oid = x.relam join pg_attribute t "
                "on t.attrelid = i.indrelid and t.attnum = i.indkey[0] "
                "where t.attname = '_loaded_at' and c.relnamespace = 'raw'::regnamespace "
                "order by 1, 2"
            )
        ]


def test_an_entity_updated_in_place_indexes_loaded_at_with_a_btree(fresh_database):
    """A contract's loaded_at_index chooses the index behind "rows loaded since" reads; a
    warehouse made with the other kind gets the new one at its next load."""
    import dataclasses

    bootstrap(fresh_database)
    BatchLoader(fresh_database, CONTRACT, SourcePolicy(name="surveys")).load(
        batch(good_rows(20), trusted_types=True)
    )
    partition = _partitions(fresh_database)[0]
    assert _loaded_at_indexes(fresh_database) == [
        "survey_responses: brin",
        f"{partition}: brin",
    ]
    updated_in_place = dataclasses.replace(CONTRACT, loaded_at_index="btree")
    later = BatchLoader(fresh_database, updated_in_place, SourcePolicy(name="surveys")).load(
        batch(good_rows(5, start=100, day=2))
    )
    assert later.rows_published == 5
    assert _loaded_at_indexes(fresh_database) == [
        "survey_responses: btree",
        f"{partition}: btree",
    ]
    with pytest.raises(ValueError, match="loaded_at_index must be"):
        dataclasses.replace(CONTRACT, loaded_at_index="hash")


def _recorded_outcomes(location, batch_id: str) -> dict[tuple[str, str], tuple]:
    with connect(location) as conn:
        return {
            (kind, column): (success, unexpected, observed)
            for kind, column, success, unexpected, observed in conn.execute(
                "select expectation_type, column_name, success, unexpected_count, observed_value "
                "from ops.dq_results where batch_id = %s and column_name is not null",
                (batch_id,),
            )
        }


def test_a_typed_batch_has_its_copy_check_the_suite_and_gx_reads_the_answers_from_the_catalog(
    loader, tmp_path, monkeypatch
):
    """A clean typed batch: COPY checked every row against the suite's row rules (CHECK
    constraints on the batch table), so their outcomes come from the catalog, GX shows them
    in its Data Docs, and raw's partition keeps none of the batch's constraints (later
    batches merge into it under the suite of their day, which may have changed)."""
    monkeypatch.setenv("CEM_GX_DOCS_DIR", str(tmp_path / "docs"))
    outcome = loader.load(batch(good_rows(50), trusted_types=True))
    assert outcome.rows_published == 50
    recorded = _recorded_outcomes(loader.location, outcome.batch_id)
    assert recorded[("expect_column_values_to_be_between", "ltr")] == (
        True,
        0,
        "enforced by CHECK constraint ltr_between_0_and_10",
    )
    assert recorded[("expect_column_values_to_be_in_set", "touchpoint")][2].startswith(
        "enforced by CHECK constraint touchpoint_accepted_values_"
    )
    # response_id is raw's key: the batch table's NOT NULL answers for it.
    assert recorded[("expect_column_values_to_not_be_null", "response_id")][2] == (
        "enforced by the column's NOT NULL"
    )
    assert recorded[("expect_column_values_to_not_be_null", "responded_at")][2] == (
        "enforced by CHECK constraint responded_at_is_not_null"
    )
    with connect(loader.location) as conn:
        left = conn.execute(
            "select conname from pg_constraint where contype = 'c' and conrelid in "
            "(select inhrelid from pg_inherits where inhparent = 'raw.survey_responses'::regclass)"
        ).fetchall()
    assert left == []
    page = next((tmp_path / "docs" / "survey_responses" / "validations").rglob("*.html"))
    shown = page.read_text()
    assert "enforced by CHECK constraint ltr_between_0_and_10" in shown
    assert "100% not null" in shown and "unknown % not null" not in shown


def test_a_typed_batch_breaking_a_suite_rule_lands_again_and_gx_counts_the_rows(loader):
    """A row outside the suite's bounds fails the typed COPY: the batch lands again as text
    without the constraints, the row is quarantined with the rule as its reason, and GX
    counts the rules on the rows left instead of taking the catalog's word."""
    rows = good_rows(30)
    rows[4][5] = 9  # csat outside 1..5
    outcome = loader.load(batch(rows, trusted_types=True))
    assert (outcome.rows_published, outcome.rows_quarantined) == (29, 1)
    with connect(loader.location) as conn:
        reason = conn.execute("select reason from quarantine.survey_responses").fetchone()[0]
    assert reason.startswith("expect_column_values_to_be_between on csat")
    recorded = _recorded_outcomes(loader.location, outcome.batch_id)
    assert recorded[("expect_column_values_to_be_between", "csat")] == (True, 0, None)
    assert not any(
        (observed or "").startswith("enforced by CHECK") for _, _, observed in recorded.values()
    )


@pytest.mark.parametrize("trusted_types", [True, False])
def test_a_clean_first_load_advances_the_cursor_to_the_extractors_newest_value(
    loader, trusted_types
):
    """Read by the extractor with the rows (any ISO form), stored in raw's own text form, as a
    scan of the landed rows would have found it."""
    rows = good_rows(20) + good_rows(5, start=100, day=3)
    outcome = loader.load(
        batch(rows, trusted_types=trusted_types, newest_cursor_value="2026-10-03T12:00:00+02:00")
    )
    assert (outcome.rows_published, outcome.rows_quarantined) == (25, 0)
    with connect(loader.location) as conn:
        stored = conn.execute("select cursor_value, batch_id from ops.source_cursors").fetchone()
        scanned = conn.execute(
            "select max(responded_at)::text from raw.survey_responses"
        ).fetchone()
    assert outcome.cursor_to == stored[0] == scanned[0] == "2026-10-03 10:00:00+00"
    assert stored[1] == outcome.batch_id


def test_a_clean_first_load_takes_the_extractors_value_without_scanning_for_it(loader):
    """The extractor's value is taken as given (it was read in the rows' own snapshot): that
    is what spares a first load its scan of the landed rows. Here it is a second past the
    newest row, which only a loader that did not scan for it would store."""
    outcome = loader.load(
        batch(good_rows(20), trusted_types=True, newest_cursor_value="2026-10-01T10:00:01Z")
    )
    assert outcome.rows_published == 20
    assert outcome.cursor_to == "2026-10-01 10:00:01+00"


def test_a_batch_with_rejected_rows_advances_the_cursor_to_its_newest_published_row(loader):
    """The extractor's newest value may be a row that is quarantined: the cursor then comes
    from the rows published, as for any batch with rejects."""
    rows = good_rows(20) + good_rows(1, start=100, day=3)
    rows[-1][4] = 42  # the newest row breaks the suite's range: quarantined
    outcome = loader.load(
        batch(rows, trusted_types=True, newest_cursor_value="2026-10-03T10:00:00Z")
    )
    assert (outcome.rows_published, outcome.rows_quarantined) == (20, 1)
    assert outcome.cursor_to == "2026-10-01 10:00:00+00"


def test_a_batch_blocked_on_its_way_into_an_empty_raw_table_leaves_it_as_it_was(loader):
    loader.load(batch(good_rows(5)))
    with connect(loader.location, autocommit=True) as conn:
        conn.execute("truncate raw.survey_responses")
    partitions = _partitions(loader.location)
    rows = good_rows(20, start=50)
    for row in rows[:10]:
        row[4] = 42  # over the bad-row threshold: the suite fails inside the publish
    with pytest.raises(BatchBlocked, match="cem_rejected_row_share_at_most"):
        loader.load(batch(rows, trusted_types=True))
    assert raw_state(loader.location) == []
    assert _partitions(loader.location) == partitions
    with connect(loader.location) as conn:
        leftovers = conn.execute(
            "select count(*) from pg_tables where schemaname = 'staging'"
        ).fetchone()
    assert leftovers == (0,)
    # ...and the next clean batch takes the table's place.
    outcome = loader.load(batch(good_rows(20, start=50), trusted_types=True))
    assert _partitions(loader.location) == [f"survey_responses__batch_{outcome.batch_id}"]
    assert len(raw_state(loader.location)) == 20


def test_an_emptied_raw_table_keeps_the_columns_earlier_batches_added(fresh_database):
    bootstrap(fresh_database)
    loader = BatchLoader(fresh_database, CONTRACT, SourcePolicy(name="surveys", schema_drift="add"))
    loader.load(batch([r + ["web"] for r in good_rows(10)], columns=[*COLUMNS, "channel"]))
    with connect(fresh_database, autocommit=True) as conn:
        conn.execute("truncate raw.survey_responses")
    outcome = loader.load(batch(good_rows(10, start=20), trusted_types=True))
    assert _partitions(fresh_database) == [f"survey_responses__batch_{outcome.batch_id}"]
    with connect(fresh_database) as conn:
        channels = conn.execute(
            "select count(*), count(channel) from raw.survey_responses"
        ).fetchone()
    assert channels == (10, 0)


def test_a_batch_that_does_not_fit_an_empty_raw_table_is_inserted_into_it(loader):
    """A raw column whose type changed since the contract (here widened by hand) keeps the
    batch table from becoming raw's partition: the rows are inserted instead."""
    loader.load(batch(good_rows(5)))
    with connect(loader.location, autocommit=True) as conn:
        conn.execute("truncate raw.survey_responses")
        conn.execute("alter table raw.survey_responses alter column ltr type bigint")
    partitions = _partitions(loader.location)
    outcome = loader.load(batch(good_rows(20, start=50), trusted_types=True))
    assert outcome.rows_published == 20
    assert _partitions(loader.location) == partitions
    assert len(raw_state(loader.location)) == 20


def test_a_raw_table_made_before_raw_was_partitioned_still_loads(loader):
    """Warehouses from before keep a plain raw table: batches are inserted into it."""
    with connect(loader.location, autocommit=True) as conn:
        conn.execute(
            "create table raw.survey_responses (response_id text primary key, respondent_email text, "
            "touchpoint text, responded_at timestamptz, ltr integer, csat integer, "
            "_batch_id text not null, _loaded_at timestamptz not null, _source text not null)"
        )
    loader.load(batch(good_rows(30), trusted_types=True))
    loader.load(batch(good_rows(10, start=25, day=2)))
    published = raw_state(loader.location)
    assert len(published) == 35
    assert sum(r[3].day == 2 for r in published) == 10
    with connect(loader.location) as conn:
        kind = conn.execute(
            "select relkind from pg_class where oid = 'raw.survey_responses'::regclass"
        ).fetchone()
    assert kind == ("r",)


def test_the_suite_judges_what_is_published_though_it_starts_before_the_row_rules(
    loader, monkeypatch
):
    """The suite starts as soon as the batch has landed, beside the row rules. Here it is
    made to finish before them: the rules then quarantine a row it saw, so it runs again on
    the rows that are published (its first verdict would block the batch)."""
    import threading

    from cem_warehouse.load import batch as batch_module

    first_run_done = threading.Event()
    real_validate, real_rules = batch_module.SuiteRun.validate, BatchLoader._mark_rejects

    def validate(self):
        try:
            return real_validate(self)
        finally:
            first_run_done.set()

    def rules_after_the_suite(self, *args, **kwargs):
        assert first_run_done.wait(120)
        return real_rules(self, *args, **kwargs)

    monkeypatch.setattr(batch_module.SuiteRun, "validate", validate)
    monkeypatch.setattr(BatchLoader, "_mark_rejects", rules_after_the_suite)
    rows = good_rows(50)
    rows[4][4] = 11  # an LTR out of range: quarantined by the row rules
    outcome = loader.load(batch(rows, trusted_types=True))
    assert (outcome.rows_published, outcome.rows_quarantined) == (49, 1)
    with connect(loader.location) as conn:
        unexpected = conn.execute(
            "select unexpected_count from ops.dq_results where batch_id = %s "
            "and expectation_type = 'expect_column_values_to_be_between' and column_name = 'ltr'",
            (outcome.batch_id,),
        ).fetchall()
    assert unexpected == [(0,)]


def test_raw_statistics_follow_the_deltas_that_add_up_to_a_tenth_of_the_table(loader):
    """Autovacuum never analyzes a partitioned table: the loader does, once the publishes
    since the last ANALYZE changed a tenth of it, however small each one was."""

    def estimated_rows():
        with connect(loader.location) as conn:
            return conn.execute(
                "select reltuples from pg_class where oid = 'raw.survey_responses'::regclass"
            ).fetchone()[0]

    def analyzed() -> dict:
        """How often each table of raw.survey_responses was analyzed, and with which rows in
        pg_stats: the whole table's (inherited) and its partition's own."""
        with connect(loader.location) as conn:
            return {
                (relname == "survey_responses", count): stats
                for relname, count, stats in conn.execute(
                    "select c.relname, s.analyze_count, (select count(*) from pg_stats p "
                    "  where p.schemaname = 'raw' and p.tablename = c.relname "
                    "  and p.inherited = (c.relkind = 'p')) "
                    "from pg_class c join pg_stat_all_tables s on s.relid = c.oid "
                    "where c.oid = 'raw.survey_responses'::regclass or c.oid in "
                    "(select inhrelid from pg_inherits where inhparent = 'raw.survey_responses'::regclass)"
                ).fetchall()
            }

    loader.load(batch(good_rows(100)))
    assert estimated_rows() == 100
    # Each analyzed once (two connections, one sample each), both with statistics per column.
    counts = analyzed()
    assert sorted(counts) == [(False, 1), (True, 1)], counts
    assert all(stats >= 5 for stats in counts.values()), counts
    for day in range(4):  # four deltas of 4% each
        loader.load(batch(good_rows(4, start=100 + 4 * day)))
        if day == 1:
            assert estimated_rows() == 100  # 8%: not yet
    assert estimated_rows() >= 112


def test_a_read_of_the_rows_loaded_since_a_watermark_skips_the_older_ranges(loader):
    """The BRIN index on _loaded_at skips a block range only once it has summarized it:
    the loader summarizes the ranges each publish appends (no VACUUM needed), so finding
    the latest delta reads its pages, not those of the deltas before it."""
    loader.load(batch(good_rows(10_000)))  # the first load: raw's storage, index built on it
    loader.load(batch(good_rows(40_000, start=10_000, day=2)))  # appended after the index
    with connect(loader.location) as conn:
        watermark = conn.execute("select max(_loaded_at) from raw.survey_responses").fetchone()[0]
    loader.load(batch(good_rows(5_000, start=50_000, day=3)))
    with connect(loader.location) as conn:
        conn.execute("set enable_seqscan = off")  # the index, whatever the table's size
        plan = conn.execute(
            "explain (analyze, format json) select count(*) from raw.survey_responses "
            "where _loaded_at > %s",
            (watermark,),
        ).fetchone()[0][0]["Plan"]
        table_pages = conn.execute(
            "select sum(relpages) from pg_class where oid in "
            "(select inhrelid from pg_inherits where inhparent = 'raw.survey_responses'::regclass)"
        ).fetchone()[0]

    def heap_scans(node: dict) -> list[dict]:
        own = [node] if node["Node Type"] == "Bitmap Heap Scan" else []
        return own + [scan for child in node.get("Plans", []) for scan in heap_scans(child)]

    (scan,) = heap_scans(plan)
    read = scan.get("Exact Heap Blocks", 0) + scan.get("Lossy Heap Blocks", 0)
    assert scan["Actual Rows"] == 5_000
    # The last delta is a eleventh of the table: its pages and at most the range it shares
    # with the delta before (128 pages), not the 40k rows of that delta.
    assert 0 < read <= table_pages / 11 + 128 < table_pages / 2, (read, table_pages)


def test_a_failed_statistics_refresh_after_the_commit_leaves_the_batch_published(
    loader, monkeypatch, caplog
):
    """Statistics are refreshed after the publish committed: when that fails, the batch
    stays published (ledger included) and the log says what to run."""
    from cem_warehouse.load import tables

    def refresh_fails(*args, **kwargs):
        raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")

    monkeypatch.setattr(tables, "refresh_statistics", refresh_fails)
    with caplog.at_level("WARNING", logger="cem_warehouse.load.batch"):
        outcome = loader.load(batch(good_rows(20)))
    assert (outcome.status, outcome.rows_published) == ("published", 20)
    with connect(loader.location) as conn:
        assert conn.execute(
            "select status, rows_published from ops.load_batches where batch_id = %s",
            (outcome.batch_id,),
        ).fetchone() == ("published", 20)
        assert conn.execute("select count(*) from raw.survey_responses").fetchone()[0] == 20
    assert "ANALYZE raw.survey_responses" in caplog.text
