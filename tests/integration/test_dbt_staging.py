"""The dbt staging layer on really loaded data: `dbt build` passes (models, data tests, unit
tests), staging keeps every raw row, and the email normalisation resolves identities."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from cem_warehouse.errors import CemError
from cem_warehouse.sources.contracts import BY_SOURCE
from cem_warehouse.sources.generator.params import DEFAULT_PARAMS
from cem_warehouse.sources.generator.run import generate_next_day
from cem_warehouse.transform.dbt import run_dbt
from cem_warehouse.warehouse.connection import connect

# Staging model of each raw table (one model per source table).
STAGING = {
    ("crm", "customers"): "stg_crm__customers",
    ("crm", "support_cases"): "stg_crm__support_cases",
    ("crm", "interactions"): "stg_crm__interactions",
    ("crm", "referrals"): "stg_crm__referrals",
    ("sales", "products"): "stg_sales__products",
    ("sales", "orders"): "stg_sales__orders",
    ("sales", "order_lines"): "stg_sales__order_lines",
    ("sales", "refunds"): "stg_sales__refunds",
    ("sales", "order_status_changes"): "stg_sales__order_status_changes",
    ("surveys", "survey_definitions"): "stg_surveys__survey_definitions",
    ("surveys", "invitations"): "stg_surveys__invitations",
    ("surveys", "survey_responses"): "stg_surveys__responses",
}
# A customer who types their email with tabs, spaces and capitals at checkout.
SLOPPY_EMAIL = "E'\\t ' || upper(customer_email) || E' \\t\\r\\n'"


def _scalar(conn, sql: str):
    return conn.execute(sql).fetchone()[0]


def test_staging_builds_keeps_every_row_and_normalises_emails(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    # A second day in which the CRM archives (soft-deletes) some customers.
    generate_next_day(stand_ins.targets, replace(DEFAULT_PARAMS, archive_per_day=0.05))
    with connect(stand_ins.sales_db) as conn:
        sloppy_order_id = _scalar(conn, "select min(order_id) from orders")
        conn.execute(
            f"update orders set customer_email = {SLOPPY_EMAIL} where order_id = %s",
            (sloppy_order_id,),
        )
        conn.commit()
    stand_ins.ingest_all()

    run_dbt(stand_ins.warehouse, ["build"])  # raises on any failed model, data test or unit test

    target = tmp_path / "state" / "dbt" / "target"
    run_results = json.loads((target / "run_results.json").read_text())
    results = run_results["results"]
    # The manifest the catch-up reads is this build's, written when its run ended (the
    # write after parsing is skipped: transform/dbt_manifest_once.py).
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["metadata"]["invocation_id"] == run_results["metadata"]["invocation_id"]
    # Exposures (the dashboards) are listed by `dbt build` as no-ops.
    assert not [
        (r["unique_id"], r["status"])
        for r in results
        if r["status"] not in ("success", "pass", "warn")
        and not (r["unique_id"].startswith("exposure.") and r["status"] == "no-op")
    ]
    # On generated data even the warn-only staging tests (values outside the documented sets) pass.
    staging = [r for r in results if "stg_" in r["unique_id"] or ".source_" in r["unique_id"]]
    assert staging and all(r["status"] in ("success", "pass") for r in staging)
    passed = {r["unique_id"] for r in results}
    for model in STAGING.values():
        assert f"model.cem_warehouse.{model}" in passed
    staging_unit_tests = [u for u in passed if u.startswith("unit_test.cem_warehouse.stg_")]
    assert len(staging_unit_tests) >= 6
    # A plain `dbt build` runs every unit test (production builds leave them out).
    assert {u for u in passed if u.startswith("unit_test.")} == set(manifest["unit_tests"])

    # Every raw table declares freshness on _loaded_at, and a fresh load passes it.
    run_dbt(stand_ins.warehouse, ["source", "freshness"])
    freshness = json.loads((target / "sources.json").read_text())["results"]
    assert {r["unique_id"].split(".", 2)[2] for r in freshness} == {f"{s}.{e}" for s, e in STAGING}
    assert all(r["status"] == "pass" for r in freshness)

    with connect(stand_ins.warehouse) as conn:
        # Staging renames and categorises, never filters: every raw row is staged once.
        for (source, entity), model in STAGING.items():
            assert entity in {c.entity for c in BY_SOURCE[source]}
            raw = _scalar(conn, f"select count(*) from raw.{entity}")
            assert raw > 0, entity
            assert _scalar(conn, f"select count(*) from staging.{model}") == raw, model

        # Archived customers are flagged, not dropped.
        archived = _scalar(conn, "select count(*) from raw.customers where is_archived")
        assert archived > 0
        assert (
            _scalar(conn, "select count(*) from staging.stg_crm__customers where is_archived")
            == archived
        )

        # Every staged email is the raw one lower-cased and trimmed of spaces, tabs, line breaks.
        for model, key, raw_table, column in (
            ("stg_sales__orders", "order_id", "orders", "customer_email"),
            ("stg_surveys__responses", "response_id", "survey_responses", "respondent_email"),
            ("stg_surveys__invitations", "invitation_id", "invitations", "respondent_email"),
        ):
            mismatched = _scalar(
                conn,
                f"select count(*) from staging.{model} as staged "
                f"inner join raw.{raw_table} as typed using ({key}) "
                f"where staged.{column} is distinct from nullif(lower(btrim(typed.{column}, E' \\t\\r\\n')), '') "
                f"or staged.{column} ~ '[A-Z[:space:]]'",
            )
            assert mismatched == 0, model

        # Normalisation is what lets sales and surveys find the CRM customer.
        sloppy = conn.execute(
            "select orders.customer_email_as_typed, customers.customer_id "
            "from staging.stg_sales__orders as orders "
            "left join staging.stg_crm__customers as customers using (customer_email) "
            "where orders.order_id = %s",
            (sloppy_order_id,),
        ).fetchone()
        assert "\t" in sloppy[0] and sloppy[0] != sloppy[0].lower()
        assert sloppy[1] is not None
        for model, column in (
            ("stg_sales__orders", "customer_email"),
            ("stg_surveys__responses", "respondent_email"),
        ):
            typed_differently, matched = conn.execute(
                f"select count(*), count(customers.customer_id) from staging.{model} as staged "
                f"left join staging.stg_crm__customers as customers on customers.customer_email = staged.{column} "
                f"where staged.{column} <> staged.{column}_as_typed"
            ).fetchone()
            assert typed_differently > 0, model
            assert matched >= 0.9 * typed_differently, model

        # NPS bucketing on real answers agrees with the glossary.
        assert (
            _scalar(
                conn,
                "select count(*) from staging.stg_surveys__responses where nps_category is distinct from "
                "case when likelihood_to_recommend >= 9 then 'promoter' when likelihood_to_recommend >= 7 "
                "then 'passive' when likelihood_to_recommend >= 0 then 'detractor' end",
            )
            == 0
        )

        # Every column of a staging or intermediate model is documented, and every
        # documented column exists (the marts' contracts hold them to their YAML already).
        manifest = json.loads((target / "manifest.json").read_text())
        unpublished = [
            node
            for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["schema"] == "staging"
        ]
        assert set(STAGING.values()) < {node["name"] for node in unpublished}
        for node in unpublished:
            model = node["name"]
            documented = {
                name for name, column in node["columns"].items() if column.get("description")
            }
            actual = {
                row[0]
                for row in conn.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'staging' and table_name = %s",
                    (model,),
                )
            }
            assert documented == actual, (model, documented ^ actual)
        for model in STAGING.values():
            node = manifest["nodes"][f"model.cem_warehouse.{model}"]
            assert Path(node["original_file_path"]).parent.name == model.split("__")[
                0
            ].removeprefix("stg_")

    # The key tests fail when a key breaks. A duplicated key in a model: `primary_key`.
    with connect(stand_ins.warehouse) as conn:
        conn.execute("insert into staging.int_as_of_date select * from staging.int_as_of_date")
        conn.commit()
    with pytest.raises(CemError, match="primary_key_int_as_of_date"):
        run_dbt(stand_ins.warehouse, ["test", "--select", "int_as_of_date"])
    # A raw table whose key is no longer PostgreSQL's primary key: `enforced_primary_key`.
    with connect(stand_ins.warehouse) as conn:
        conn.execute("alter table raw.products drop constraint products_pkey")
        conn.commit()
    with pytest.raises(CemError, match="enforced_primary_key"):
        run_dbt(stand_ins.warehouse, ["test", "--select", "source:sales.products"])
    # A staging view's key is checked through its plan: one scan of a raw table passing the
    # key through. The products view now reads a column nothing enforces.
    with pytest.raises(CemError, match="enforced_primary_key_stg_sales__products"):
        run_dbt(stand_ins.warehouse, ["test", "--select", "stg_sales__products"])
    # A view that could repeat a row (here: every referral twice) is refused by its plan.
    referrals = "stg_crm__referrals"
    run_dbt(stand_ins.warehouse, ["test", "--select", referrals])
    with connect(stand_ins.warehouse) as conn:
        definition = _scalar(conn, f"select pg_get_viewdef('staging.{referrals}')").rstrip("; \n")
        conn.execute(
            f"create or replace view staging.{referrals} as ({definition}) union all ({definition})"
        )
        conn.commit()
    with pytest.raises(CemError, match=f"enforced_primary_key_{referrals}"):
        run_dbt(stand_ins.warehouse, ["test", "--select", referrals])
    # A view holding a WITH is not merged into its readers (no join reaches raw's indexes
    # through it): refused too, though its rows are right.
    interactions = "stg_crm__interactions"
    run_dbt(stand_ins.warehouse, ["test", "--select", interactions])
    with connect(stand_ins.warehouse) as conn:
        definition = _scalar(conn, f"select pg_get_viewdef('staging.{interactions}')").rstrip(
            "; \n"
        )
        conn.execute(
            f"create or replace view staging.{interactions} as "
            f"with source as ({definition}) select * from source"
        )
        conn.commit()
    with pytest.raises(CemError, match=f"enforced_primary_key_{interactions}"):
        run_dbt(stand_ins.warehouse, ["test", "--select", interactions])
    # A large model whose key PostgreSQL enforces through a unique index and NOT NULL: the
    # catalog test fails when the column may be null, and when the index is gone.
    observations = "int_identity_observations"
    run_dbt(stand_ins.warehouse, ["test", "--select", observations])
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            f"alter table staging.{observations} alter column observation_id drop not null"
        )
        conn.commit()
    with pytest.raises(CemError, match=f"enforced_primary_key_{observations}"):
        run_dbt(stand_ins.warehouse, ["test", "--select", observations])
    # Its other rules are PostgreSQL's too. The accepted sources are a CHECK constraint
    # (post-hook enforce_accepted_values) that refuses any other value as it is written;
    # without the constraint, the catalog test fails.
    with connect(stand_ins.warehouse) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                f"update staging.{observations} set source = 'fax' "
                f"where observation_id = (select min(observation_id) from staging.{observations})"
            )
        conn.rollback()
        check = conn.execute(
            "select conname from pg_constraint where conrelid = %s::regclass "
            "and conname like 'source\\_accepted\\_values\\_%%'",
            (f"staging.{observations}",),
        ).fetchone()[0]
        conn.execute(f'alter table staging.{observations} drop constraint "{check}"')
        conn.commit()
    with pytest.raises(CemError, match=f"enforced_accepted_values_{observations}_source"):
        run_dbt(stand_ins.warehouse, ["test", "--select", observations])
    # NOT NULLs the post-hook set_not_null made, checked by one test for the model's
    # columns: it fails once they are dropped, with a row for each column dropped.
    resolved = "int_customers_resolved_across_sources"
    run_dbt(stand_ins.warehouse, ["test", "--select", resolved])
    with connect(stand_ins.warehouse) as conn:
        for column in ("identifier", "is_inferred"):
            conn.execute(f"alter table staging.{resolved} alter column {column} drop not null")
        conn.commit()
    with pytest.raises(
        CemError,
        match=f"enforced_not_null_{resolved}_customer_key__identifier__is_inferred.*Got 2 results",
    ):
        run_dbt(stand_ins.warehouse, ["test", "--select", resolved])
    with connect(stand_ins.warehouse) as conn:
        conn.execute(f"alter table staging.{observations} alter column observation_id set not null")
        unique_index = conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass "
            "and indisunique",
            (f"staging.{observations}",),
        ).fetchone()[0]
        conn.execute(f"drop index {unique_index}")
        conn.commit()
    with pytest.raises(CemError, match=f"enforced_primary_key_{observations}"):
        run_dbt(stand_ins.warehouse, ["test", "--select", observations])


def _analyzed_at(warehouse, table: str):
    with connect(warehouse) as conn:
        return _scalar(
            conn,
            f"select coalesce(last_analyze, last_autoanalyze) from pg_stat_all_tables "
            f"where relid = 'staging.{table}'::regclass",
        )


def test_incremental_models_analyze_only_when_stale_and_leave_unchanged_rows(
    stand_ins, tmp_path, monkeypatch
):
    """analyze_when_stale: a table built in full gets statistics at once, a build that
    changes nothing does not analyze again, one after a tenth of the rows changed does.
    change_log_skip_unchanged: a build re-deriving rows equal to the stored ones rewrites
    and logs none of them."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    resolved = "int_customers_resolved_across_sources"
    select = ["run", "--select", f"+{resolved}"]
    run_dbt(stand_ins.warehouse, select)
    built = _analyzed_at(stand_ins.warehouse, resolved)
    assert built is not None, "built in full: analyzed"
    with connect(stand_ins.warehouse) as conn:
        # Only the post-hook may analyze it here: an autovacuum ANALYZE between two builds
        # resets the count of changed rows, and the hook then rightly finds nothing stale
        # (seen once, under load, as a failure of the last assertion below).
        conn.execute(f"alter table staging.{resolved} set (autovacuum_enabled = false)")
        conn.commit()
    # PostgreSQL counts the build in full's own rows as changes once it commits, after its
    # ANALYZE; they were recorded as counted, so the next build does not analyze again.
    run_dbt(stand_ins.warehouse, ["run", "--select", resolved])
    assert _analyzed_at(stand_ins.warehouse, resolved) == built, "analyzed again for its own rows"

    # Every identifier logged as changed (as a day touching all of them would): the model
    # re-derives them all, finds them equal and leaves them (no writes, no log, no ANALYZE).
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            "insert into ops.mart_key_changes (producer, key_value) "
            f"select 'staging.int_identity_observations', customer_identifier_id from staging.{resolved}"
        )
        identifiers = _scalar(conn, f"select count(*) from staging.{resolved}")
        before = _scalar(conn, "select max(change_id) from ops.mart_key_changes")
        rows = conn.execute(f"select ctid::text, * from staging.{resolved} order by 2").fetchall()
        conn.commit()
    run_dbt(stand_ins.warehouse, ["run", "--select", resolved])
    with connect(stand_ins.warehouse) as conn:
        assert (
            conn.execute(f"select ctid::text, * from staging.{resolved} order by 2").fetchall()
            == rows
        ), "unchanged rows were rewritten"
        assert (
            _scalar(
                conn,
                f"select count(*) from ops.mart_key_changes where change_id > {before} "
                f"and producer = 'staging.{resolved}'",
            )
            == 0
        ), "unchanged rows were logged"
    assert _analyzed_at(stand_ins.warehouse, resolved) == built, "analyzed with nothing changed"

    # A fifth of the rows changed since: the next build analyzes.
    with connect(stand_ins.warehouse) as conn:
        conn.execute(
            f"update staging.{resolved} set first_seen_at = first_seen_at "
            f"where customer_identifier_id in (select customer_identifier_id from staging.{resolved} "
            f"order by 1 limit {identifiers // 5 + 60})"
        )
        conn.commit()
    run_dbt(stand_ins.warehouse, ["run", "--select", resolved])
    assert _analyzed_at(stand_ins.warehouse, resolved) > built


def test_every_model_prefetches_scattered_reads_for_its_own_transaction(
    database_factory, tmp_path, monkeypatch
):
    """The project-wide pre-hook (macros/prefetch_reads.sql) is on every model, and as dbt
    renders it, it raises effective_io_concurrency for the model's transaction only, on the
    real server."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    warehouse = database_factory()
    output = run_dbt(warehouse, ["compile", "--inline", "{{ prefetch_reads() }}"])
    manifest = json.loads((tmp_path / "state" / "dbt" / "target" / "manifest.json").read_text())
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    without = [
        model["name"]
        for model in models
        if not any("prefetch_reads()" in hook["sql"] for hook in model["config"]["pre-hook"])
    ]
    assert models and not without, f"models without the prefetch pre-hook: {without}"
    # the DO block as dbt printed it, from its opening to its closing dollar quote
    hook = output[output.index("do $prefetch$") : output.rindex("$prefetch$") + len("$prefetch$")]
    with connect(warehouse) as conn:
        default = _scalar(conn, "show effective_io_concurrency")
        conn.execute(hook)
        assert _scalar(conn, "show effective_io_concurrency") == "256"
        conn.commit()  # the model's transaction ends
        assert _scalar(conn, "show effective_io_concurrency") == default


def _index_definitions(conn, table: str) -> list[str]:
    """The table's indexes as PostgreSQL prints them, without their names."""
    return sorted(
        re.sub(r"INDEX \S+ ON", "INDEX ON", definition)
        for (definition,) in conn.execute(
            "select pg_get_indexdef(indexrelid) from pg_index where indrelid = %s::regclass",
            (table,),
        )
    )


def _open_gap_indexes(conn) -> list[str]:
    return [
        definition
        for definition in _index_definitions(conn, "staging.int_purchase_gaps_assessed_for_churn")
        if "(purchase_date + threshold_days)" in definition
    ]


def test_incremental_models_get_the_indexes_they_declare_without_a_full_refresh(
    stand_ins, tmp_path, monkeypatch
):
    """dbt creates a model's declared indexes only with its table. The project-wide post-hook
    create_missing_indexes gives an incremental build's table those it lacks (an index added
    to a model's config, or dropped), and create_index_if_missing gives the churn gaps their
    partial index once per table, a full refresh's new table included."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    gaps = "int_purchase_gaps_assessed_for_churn"
    observations = "staging.int_identity_observations"
    run_dbt(stand_ins.warehouse, ["run", "--select", f"+{gaps}"])
    with connect(stand_ins.warehouse) as conn:
        declared = _index_definitions(conn, observations)
        assert any(d.startswith("CREATE UNIQUE INDEX") for d in declared), declared
        for (index,) in conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass",
            (observations,),
        ).fetchall():
            conn.execute(f"drop index {index}")
        built_in_full = _open_gap_indexes(conn)
        conn.commit()
    assert len(built_in_full) == 1, built_in_full
    assert "WHERE (is_last_purchase_day AND (NOT is_churned))" in built_in_full[0]

    run_dbt(stand_ins.warehouse, ["run", "--select", "int_identity_observations", gaps])
    run_dbt(stand_ins.warehouse, ["run", "--select", gaps, "--full-refresh"])
    with connect(stand_ins.warehouse) as conn:
        assert _index_definitions(conn, observations) == declared, "declared indexes back"
        assert _open_gap_indexes(conn) == built_in_full, "one partial index, on the new table too"


def test_the_purchase_days_key_is_one_unique_index_on_their_grain_and_an_old_one_goes(
    stand_ins, tmp_path, monkeypatch
):
    """The purchase days and the churn gaps keep one index each, unique on their grain
    (customer_key, purchase_date): it enforces the key (enforced_primary_key with
    `columns`) and serves the lookups by customer. Until stop 65 each also had a unique
    index on the text purchase_day_id and a plain one on customer_key, both made by dbt. A
    table built then loses both at its next incremental build (create_missing_indexes);
    an index named by hand stays. Without the grain's index the key test fails."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    tables = [
        "staging.int_orders_aggregated_to_purchase_days",
        "staging.int_purchase_gaps_assessed_for_churn",
    ]
    selected = ["int_orders_aggregated_to_purchase_days", "int_purchase_gaps_assessed_for_churn"]
    run_dbt(stand_ins.warehouse, ["build", "--select", "+int_purchase_gaps_assessed_for_churn"])
    declared = {}
    with connect(stand_ins.warehouse) as conn:
        for number, table in enumerate(tables):
            declared[table] = _index_definitions(conn, table)
            plain = [d for d in declared[table] if " WHERE " not in d]
            assert plain == [
                f"CREATE UNIQUE INDEX ON {table} USING btree (customer_key, purchase_date)"
            ]
            # the table as a build before stop 65 left it: dbt's md5-named indexes, and one by hand
            (grain,) = conn.execute(
                "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass "
                "and indisunique",
                (table,),
            ).fetchone()
            conn.execute(f"drop index {grain}")
            conn.execute(f'create unique index "{"a" * 31}{number}" on {table} (purchase_day_id)')
            conn.execute(f'create index "{"b" * 31}{number}" on {table} (customer_key)')
            conn.execute(f"create index kept_by_hand_{number} on {table} (purchase_day_id)")
        conn.commit()

    with pytest.raises(CemError, match="enforced_primary_key"):
        run_dbt(stand_ins.warehouse, ["test", "--select", *selected])

    run_dbt(stand_ins.warehouse, ["build", "--select", *selected])
    with connect(stand_ins.warehouse) as conn:
        for table in tables:
            by_hand = f"CREATE INDEX ON {table} USING btree (purchase_day_id)"
            assert _index_definitions(conn, table) == sorted([*declared[table], by_hand])


def test_an_index_replaced_by_a_wider_one_goes_at_the_next_build_without_a_full_refresh(
    stand_ins, tmp_path, monkeypatch
):
    """fct_order_lines' plain customer_key index became one that also carries the columns
    int_order_lines_aggregated_to_customers reads (stop 64). A table built before has the
    plain one: its next incremental build creates the new index and drops the old
    (create_missing_indexes), so no write keeps an index no reader uses."""
    monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
    stand_ins.ingest_all()
    lines = "marts_build.fct_order_lines"
    wider = "(customer_key, product_line, ordered_date, tier, is_cancelled)"
    run_dbt(stand_ins.warehouse, ["run", "--select", "+fct_order_lines"])
    with connect(stand_ins.warehouse) as conn:
        declared = _index_definitions(conn, lines)
        assert sum(wider in definition for definition in declared) == 1, declared
        assert not any("(customer_key)" in definition for definition in declared), declared
        # the table as a build before stop 64 left it
        (index,) = conn.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass "
            "and pg_get_indexdef(indexrelid) like %s",
            (lines, f"%{wider}"),
        ).fetchone()
        conn.execute(f"drop index {index}")
        conn.execute(f"create index on {lines} (customer_key)")
        conn.commit()

    run_dbt(stand_ins.warehouse, ["run", "--select", "fct_order_lines"])
    with connect(stand_ins.warehouse) as conn:
        assert _index_definitions(conn, lines) == declared
