"""The three ingestion pipelines: where each source's batches come from.

Each function is what one ``ingest_<source>`` DAG task calls: it gets the warehouse and
the source's connection, and returns the run summary (or raises naming what blocked).
"""

from __future__ import annotations

from collections.abc import Iterator

from cem_warehouse.load.batch import IncomingBatch
from cem_warehouse.load.contracts import EntityContract
from cem_warehouse.load.ingest import SourceRun, run_source
from cem_warehouse.load.policy import SourcePolicy
from cem_warehouse.load.tables import ensure_entity_tables
from cem_warehouse.sources.clients import crm as crm_client
from cem_warehouse.sources.clients import landing_files, postgres_db
from cem_warehouse.sources.clients.http_api import ApiClient
from cem_warehouse.sources.connections import SourceConnection
from cem_warehouse.sources.contracts import BY_SOURCE, CRM, SALES, SURVEY_FOLDERS, SURVEYS
from cem_warehouse.warehouse.bootstrap import bootstrap
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

# Orders and responses whose customer the CRM has not sent (yet): kept in raw, listed here.
LATE_ARRIVING_VIEW = """
create or replace view ops.late_arriving_customers as
with known as (
    select distinct lower(btrim(email, E' \\t\\r\\n')) as email from raw.customers where email is not null
)
select 'sales' as source, 'orders' as entity, orders.order_id::text as record_id,
       lower(btrim(orders.customer_email, E' \\t\\r\\n')) as customer_email, orders._loaded_at
from raw.orders as orders
where not exists (select 1 from known where known.email = lower(btrim(orders.customer_email, E' \\t\\r\\n')))
union all
select 'surveys', 'survey_responses', responses.response_id::text,
       lower(btrim(responses.respondent_email, E' \\t\\r\\n')), responses._loaded_at
from raw.survey_responses as responses
where not exists (select 1 from known where known.email = lower(btrim(responses.respondent_email, E' \\t\\r\\n')))
"""


def prepare_warehouse(location: WarehouseLocation) -> None:
    """Every raw and quarantine table exists from the first run, whichever source loads first."""
    bootstrap(location)
    with connect(location, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('cem_warehouse.raw_tables'))")
        try:
            for contracts in BY_SOURCE.values():
                for contract in contracts:
                    ensure_entity_tables(conn, contract)
            conn.execute(LATE_ARRIVING_VIEW)
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('cem_warehouse.raw_tables'))")


def ingest_crm(
    location: WarehouseLocation,
    connection: SourceConnection,
    *,
    client: ApiClient | None = None,
    **options,
) -> SourceRun:
    prepare_warehouse(location)
    api = client or ApiClient(connection.base_url, connection.token)

    def extract(
        contract: EntityContract, cursor: str | None, policy: SourcePolicy
    ) -> Iterator[IncomingBatch]:
        yield crm_client.extract_stream(api, contract, f"/api/v1/{contract.entity}", cursor)

    try:
        return run_source(location, "crm", CRM, extract, **options)
    finally:
        if client is None:
            api.close()


def ingest_sales(location: WarehouseLocation, connection: SourceConnection, **options) -> SourceRun:
    prepare_warehouse(location)
    source_db = connection.postgres()

    def extract(
        contract: EntityContract, cursor: str | None, policy: SourcePolicy
    ) -> Iterator[IncomingBatch]:
        yield postgres_db.extract_table(source_db, contract, cursor, policy.lookback_minutes)

    return run_source(location, "sales", SALES, extract, **options)


def _loaded_checksums(location: WarehouseLocation) -> set[str]:
    with connect(location) as conn:
        exists = conn.execute("select to_regclass('ops.landed_files')").fetchone()[0]
        if exists is None:
            return set()
        return {
            r[0]
            for r in conn.execute("select checksum from ops.landed_files where source = 'surveys'")
        }


def ingest_surveys(
    location: WarehouseLocation, connection: SourceConnection, **options
) -> SourceRun:
    prepare_warehouse(location)
    url = connection.path

    def extract(
        contract: EntityContract, cursor: str | None, policy: SourcePolicy
    ) -> Iterator[IncomingBatch]:
        fs, files = landing_files.list_files(url, SURVEY_FOLDERS[contract.entity])
        loaded = _loaded_checksums(location)
        root = landing_files.landing_root(url)
        for path in files:
            landed = landing_files.checksum(fs, path)
            if landed.checksum in loaded:
                continue
            relative = path[len(root) :].lstrip("/")
            yield landing_files.extract_file(
                fs, landed, contract, append={"_source_file": relative}
            )
            loaded.add(landed.checksum)

    return run_source(location, "surveys", SURVEYS, extract, **options)
