"""The dbt project as Airflow tasks (Cosmos), rendered from the parsed manifest.

One task per model that builds it and then runs its data tests (``dbt build --select``), so a
failing test stops what depends on that model and the Airflow UI shows where. The profile comes from the Airflow connection
``cem_warehouse``, the same place everything else reads the warehouse from.
"""

from __future__ import annotations

from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from cem_warehouse import paths
from cem_warehouse.orchestration.airflow_env import WAREHOUSE_CONN_ID
from cem_warehouse.transform.dbt import UNIT_TESTS_SELECTOR, dbt_executable
from cem_warehouse.transform.manifest import manifest_path


def dbt_build_vars() -> dict[str, str]:
    """The dbt vars of this transform run, rendered by Airflow into every Cosmos task.

    ``as_of_date`` comes from the run's conf (``cem run --as-of``, or "Trigger DAG w/ config"
    in the UI); ``data_interval_end`` from the run itself. Empty means "not given": the
    dbt model int_as_of_date then falls back as documented there. (The staging tests'
    window is read by dbt from the warehouse: cem_warehouse.transform.staging_tests.)
    """
    return {
        "as_of_date": "{{ (dag_run.conf or {}).get('as_of') or '' }}",
        "data_interval_end": "{{ data_interval_end or '' }}",
    }


def dbt_models_task_group(
    group_id: str = "dbt", dbt_vars: dict[str, str] | None = None
) -> DbtTaskGroup:
    manifest = manifest_path()
    if not manifest.exists():
        raise FileNotFoundError(
            f"dbt manifest {manifest} is missing: run `cem run` or `make airflow` (they parse the dbt project), "
            "or `python -m cem_warehouse.transform.manifest`."
        )
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=paths.dbt_project_dir(),
            manifest_path=manifest,
            project_name="cem_warehouse",
        ),
        profile_config=ProfileConfig(
            profile_name="cem_warehouse",
            target_name="warehouse",
            profile_mapping=PostgresUserPasswordProfileMapping(
                conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": "public"}
            ),
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            # A test with two parent models (relationships) runs once both are built.
            should_detach_multiple_parents_tests=True,
            # Cosmos passes this to each model's `dbt build` as well (see UNIT_TESTS_SELECTOR).
            exclude=[UNIT_TESTS_SELECTOR],
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            # dbt in-process: no interpreter start-up per model.
            invocation_mode=InvocationMode.DBT_RUNNER,
            dbt_executable_path=dbt_executable(),
        ),
        operator_args={"install_deps": False, "vars": dbt_vars or {}},
    )
