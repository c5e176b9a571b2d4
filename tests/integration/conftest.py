"""Source stand-ins for ingestion tests: generated data in a sales database of its own, a
CRM store and a survey landing folder per test, and a CRM API server on a free port."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cem_warehouse import paths
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.sources.connections import SourceConnection
from cem_warehouse.sources.contracts import BY_SOURCE
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

TOKEN = "test-token-not-a-secret"


@dataclass
class StandIns:
    warehouse: WarehouseLocation
    sales_db: WarehouseLocation
    crm_store: Path
    landing: Path
    targets: object
    token: str = TOKEN

    @staticmethod
    def fingerprint(
        location: WarehouseLocation,
        contracts: list[EntityContract] | None = None,
        schema: str = "raw",
    ):
        return raw_fingerprint(location, contracts, schema)

    @property
    def sales(self) -> SourceConnection:
        db = self.sales_db
        return SourceConnection(
            "cem_source_sales", "postgres", db.host, db.port, db.user, db.password, db.dbname
        )

    @property
    def surveys(self) -> SourceConnection:
        return SourceConnection("cem_source_surveys", "fs", extra={"path": str(self.landing)})

    def insert_sales_order(
        self,
        *,
        order_id: int,
        line_id: int,
        account: str,
        email: str | None,
        ordered_at,
        updated_at,
        quantity: int = 1,
    ) -> None:
        """A delivered order with one line of the first product at list price, written to
        the sales system; the next sales load reads it when ``updated_at`` is after every
        order it read before."""
        with connect(self.sales_db) as conn:
            product_id, price = conn.execute(
                "select product_id, list_price from products order by product_id limit 1"
            ).fetchone()
            conn.execute(
                "insert into orders (order_id, sales_account_id, customer_email, status, currency, "
                "order_total, ordered_at, created_at, updated_at) "
                "values (%s, %s, %s, 'delivered', 'EUR', %s, %s, %s, %s)",
                (order_id, account, email, price * quantity, ordered_at, ordered_at, updated_at),
            )
            conn.execute(
                "insert into order_lines (order_line_id, order_id, line_number, product_id, quantity, "
                "unit_price, line_amount, created_at, updated_at) "
                "values (%s, %s, 1, %s, %s, %s, %s, %s, %s)",
                (
                    line_id,
                    order_id,
                    product_id,
                    quantity,
                    price,
                    price * quantity,
                    ordered_at,
                    updated_at,
                ),
            )
            conn.commit()

    def ingest_all(self) -> None:
        """Load all three sources into the warehouse, as the ingestion DAGs do."""
        from cem_warehouse.load.sources import ingest_crm, ingest_sales, ingest_surveys

        with self.crm() as crm:
            ingest_crm(self.warehouse, crm)
        ingest_sales(self.warehouse, self.sales)
        ingest_surveys(self.warehouse, self.surveys)

    @contextmanager
    def crm(self, **faults) -> Iterator[SourceConnection]:
        from cem_warehouse.sources.crm_server import CrmServer, Faults

        server = CrmServer(self.crm_store, TOKEN, faults=Faults(**faults)).start()
        try:
            host, port = server.httpd.server_address[:2]
            yield SourceConnection("cem_source_crm", "http", host, port, password=TOKEN)
        finally:
            server.stop()


@pytest.fixture
def stand_ins(database_factory, tmp_path) -> StandIns:
    from cem_warehouse.sources.generator.run import Targets, generate

    warehouse = database_factory("cem_test_wh")
    sales_db = database_factory("cem_test_sales")
    targets = Targets(
        sales_db, tmp_path / "crm_store", str(tmp_path / "landing"), tmp_path / "generator"
    )
    generate(300, 7, targets)
    return StandIns(warehouse, sales_db, tmp_path / "crm_store", tmp_path / "landing", targets)


def raw_fingerprint(
    location: WarehouseLocation, contracts: list[EntityContract] | None = None, schema: str = "raw"
) -> dict[str, tuple]:
    """Row count and a content hash of every table (data columns only, in key order)."""
    contracts = contracts or [c for group in BY_SOURCE.values() for c in group]
    result = {}
    with connect(location) as conn:
        for contract in contracts:
            if (
                conn.execute(
                    "select to_regclass(%s)", (f"{schema}.{contract.raw_table}",)
                ).fetchone()[0]
                is None
            ):
                result[contract.entity] = (0, None)
                continue
            columns = ", ".join(f'"{c}"' for c in contract.column_names)
            key = ", ".join(contract.natural_key)
            result[contract.entity] = conn.execute(
                f"select count(*), md5(string_agg(md5(row({columns})::text), '' order by {key})) "
                f"from {schema}.{contract.raw_table}"
            ).fetchone()
    return result


@pytest.fixture
def small_dbt_project(tmp_path, monkeypatch):
    """A dbt project of a test's own, run by run_dbt as every build runs the warehouse's:
    ``make(name, with_macros=False)`` writes its dbt_project.yml and the warehouse's profile
    (and, with ``with_macros``, a copy of the warehouse's macros), points CEM_PROJECT_DIR
    and CEM_HOME at ``tmp_path``, and returns its empty models folder."""

    def make(name: str, *, with_macros: bool = False) -> Path:
        root = tmp_path / "dbt_project"
        (root / "models").mkdir(parents=True)
        (root / "dbt_project.yml").write_text(
            textwrap.dedent(
                f"""
                name: {name}
                version: "1.0"
                config-version: 2
                profile: cem_warehouse
                model-paths: ["models"]
                macro-paths: ["macros"]
                flags:
                  send_anonymous_usage_stats: false
                """
            )
        )
        shutil.copy(paths.dbt_project_dir() / "profiles.yml", root / "profiles.yml")
        if with_macros:
            shutil.copytree(paths.dbt_project_dir() / "macros", root / "macros")
        monkeypatch.setenv("CEM_PROJECT_DIR", str(tmp_path))
        monkeypatch.setenv("CEM_HOME", str(tmp_path / "state"))
        return root / "models"

    return make
