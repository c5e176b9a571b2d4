"""Every Airflow Asset the project produces or consumes, in one place.

Producers put these in ``outlets``; consumers schedule on them. The URIs name warehouse
tables, so lineage in the Airflow UI reads like the warehouse itself.
"""

from __future__ import annotations

from airflow.sdk import Asset


def warehouse_table(schema: str, table: str) -> Asset:
    return Asset(
        name=f"{schema}.{table}", uri=f"cem-warehouse://{schema}/{table}", group="cem_warehouse"
    )


RAW_SURVEY_RESPONSES = warehouse_table("raw", "survey_responses")

# What the transform DAG waits for: every raw table the marts read.
RAW_TABLES_FOR_MARTS = [RAW_SURVEY_RESPONSES]

MARTS = warehouse_table("marts", "cx_marts")
