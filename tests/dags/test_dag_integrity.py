"""Every DAG file imports cleanly and carries what operators rely on."""

import ast
import os
from datetime import timedelta

import pytest

EXPECTED_DAGS = {"ingest_crm", "ingest_sales", "ingest_surveys", "transform_cx_marts"}


@pytest.fixture(scope="module")
def dagbag(project_root):
    from cem_warehouse.transform.manifest import ensure_manifest

    ensure_manifest()
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(project_root / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_expected_dags_present_and_named_after_their_files(dagbag):
    assert set(dagbag.dag_ids) >= EXPECTED_DAGS
    for dag_id in dagbag.dag_ids:
        dag = dagbag.dags.get(dag_id)
        assert os.path.basename(dag.fileloc) == f"{dag_id}.py"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_has_owner_tags_retries_catchup_and_doc(dagbag, dag_id):
    dag = dagbag.dags.get(dag_id)
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag_id} has no documentation"
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
        assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries}"
        assert task.retry_delay <= timedelta(minutes=10)


def test_catchup_is_explicit_in_every_dag_file(project_root):
    """The DAG must say catchup=..., not rely on the installation's default."""
    for path in (project_root / "dags").glob("*.py"):
        keywords = {
            kw.arg
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            for kw in node.keywords
        }
        assert "catchup" in keywords, path.name


def test_dag_files_are_configuration_only(project_root):
    """No database or network work at parse time: only airflow, pendulum and cem_warehouse at top level."""
    allowed = {"airflow", "pendulum", "datetime", "cem_warehouse", "__future__"}
    for path in (project_root / "dags").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert module.split(".")[0] in allowed, (
                    f"{path.name} imports {module} at parse time"
                )


def test_transform_is_scheduled_on_the_raw_assets(dagbag):
    from cem_warehouse.orchestration.dag_runner import (
        consumed_assets,
        dependency_order,
        produced_assets,
    )

    ingest, transform = dagbag.dags.get("ingest_surveys"), dagbag.dags.get("transform_cx_marts")
    assert produced_assets(ingest) & consumed_assets(transform)
    order = [d.dag_id for d in dependency_order([transform, ingest])]
    assert order.index("ingest_surveys") < order.index("transform_cx_marts")


def test_transform_publishes_only_after_every_model_and_the_audit(dagbag):
    """Write-audit-publish: the swap depends on the audit, which depends on every dbt task."""
    transform = dagbag.dags.get("transform_cx_marts")
    audit, publish = transform.get_task("audit_marts"), transform.get_task("publish_marts")
    dbt_tasks = [t for t in transform.tasks if t.task_id.startswith("dbt.")]
    assert len(dbt_tasks) > 20
    # The swap also records where this run's staging tests ended (the window read first).
    assert publish.upstream_task_ids == {"audit_marts", "staging_test_window"}
    # Every dbt task reaches the audit (directly or through a downstream dbt task), and
    # runs after the window of raw rows its tests read was taken.
    upstream_of_audit = audit.get_flat_relative_ids(upstream=True)
    assert {t.task_id for t in dbt_tasks} <= upstream_of_audit
    window = transform.get_task("staging_test_window")
    assert {t.task_id for t in dbt_tasks} <= window.get_flat_relative_ids(upstream=False)
    assert transform.get_task("publish_docs").upstream_task_ids == {"publish_marts"}
    # The as-of date reaches dbt from the run's conf and data interval, not the clock. The
    # staging tests read their window from the warehouse: no var that changes every run.
    assert set(dbt_tasks[0].vars) == {"as_of_date", "data_interval_end"}


def test_transform_builds_every_model_with_its_data_tests_but_not_the_unit_tests(dagbag):
    """Each model's `dbt build` runs its data tests; the unit tests (fixtures, not data) run in CI."""
    import json

    from cem_warehouse.transform.manifest import manifest_path

    manifest = json.loads(manifest_path().read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    builds = {
        t.select.rsplit(".", 1)[-1]: t
        for t in dagbag.dags.get("transform_cx_marts").tasks
        if type(t).__name__ == "DbtBuildLocalOperator"
    }
    assert set(builds) == models
    assert all("resource_type:unit_test" in task.exclude for task in builds.values())
