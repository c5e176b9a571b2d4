"""Every Airflow Asset the project produces or consumes, in one place.

Producers put these in ``outlets``; consumers schedule on them. The URIs name warehouse
tables, so lineage in the Airflow UI reads like the warehouse itself.
"""

from __future__ import annotations

from airflow.sdk import Asset

from cem_warehouse.sources.contracts import BY_SOURCE


def warehouse_table(schema: str, table: str) -> Asset:
    return Asset(
        name=f"{schema}.{table}", uri=f"cem-warehouse://{schema}/{table}", group="cem_warehouse"
    )


# raw.<entity> for every entity, grouped by the source that loads it.
RAW_BY_SOURCE: dict[str, list[Asset]] = {
    source: [warehouse_table("raw", contract.raw_table) for contract in contracts]
    for source, contracts in BY_SOURCE.items()
}
RAW_TABLES = [asset for assets in RAW_BY_SOURCE.values() for asset in assets]

# The published marts: one asset, because they are swapped in together (write-audit-publish).
MARTS = Asset(name="marts", uri="cem-warehouse://marts", group="cem_warehouse")
