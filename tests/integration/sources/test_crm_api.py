"""The CRM API stand-in over real HTTP on a free loopback port: auth, pages, cursor, faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pyarrow as pa
import pytest

from cem_warehouse.sources.crm import CrmStore
from cem_warehouse.sources.crm_server import CrmServer, Faults, encode_cursor

TOKEN = "test-token"
BASE_US = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
BURST_US = BASE_US + 3_600_000_000


def _customers(n: int, burst: int) -> pa.Table:
    """n customers, one per second, except ``burst`` of them sharing one updated_at."""
    ts = BASE_US + np.arange(n, dtype=np.int64) * 1_000_000
    ts[10 : 10 + burst] = BURST_US
    ids = (
        np.random.default_rng(0).permutation(n).astype(np.int64) + 1_000_000
    )  # keys not in time order
    return pa.table(
        {
            "customer_id": ids,
            "email": [f"c{i}@example.com" for i in ids],
            "acquisition_date": pa.array(np.full(n, 20000, dtype=np.int32), pa.date32()),
            "cancelled_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "updated_at": pa.array(ts, pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture
def store(tmp_path) -> CrmStore:
    store = CrmStore(tmp_path / "crm")
    store.reset()
    store.write("customers", _customers(120, burst=45), "d0000")
    store.touch()
    return store


@pytest.fixture
def serve(store) -> Iterator:
    servers = []

    def start(faults: Faults | None = None) -> CrmServer:
        server = CrmServer(store.root, TOKEN, port=0, faults=faults).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _client(server: CrmServer, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout
    )


def _walk(client: httpx.Client, limit: int, **params) -> tuple[list[dict], int, str | None]:
    """Follow next_cursor to the end, retrying 429/503; returns records, requests, last cursor."""
    records, requests, cursor = [], 0, None
    while True:
        query = {"limit": limit, **params} if cursor is None else {"limit": limit, "cursor": cursor}
        response = client.get("/api/v1/customers", params=query)
        requests += 1
        if response.status_code in (429, 503):
            continue
        response.raise_for_status()
        body = response.json()
        records += body["results"]
        if body["paging"]["next_cursor"]:
            cursor = body["paging"]["next_cursor"]
        if not body["paging"]["has_more"]:
            return records, requests, cursor


def test_requires_the_bearer_token(serve) -> None:
    server = serve()
    assert httpx.get(f"{server.base_url}/api/v1/customers").status_code == 401
    wrong = httpx.get(
        f"{server.base_url}/api/v1/customers", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}


def test_pages_cover_every_record_once_even_inside_a_timestamp_burst(serve) -> None:
    with _client(serve()) as client:
        records, requests, _ = _walk(client, limit=20)
    ids = [r["customer_id"] for r in records]
    assert len(ids) == 120 and len(set(ids)) == 120
    assert requests == 6
    keys = [(r["updated_at"], r["customer_id"]) for r in records]
    assert keys == sorted(keys)
    assert sum(r["updated_at"] == "2025-06-01T01:00:00Z" for r in records) == 45
    assert records[0]["acquisition_date"] == "2024-10-04" and records[0]["cancelled_at"] is None


def test_updated_since_and_resuming_from_a_saved_cursor(serve, store) -> None:
    with _client(serve()) as client:
        since = client.get(
            "/api/v1/customers", params={"updated_since": "2025-06-01T01:00:00Z", "limit": 1000}
        ).json()
        assert len(since["results"]) == 45  # the burst is the latest timestamp
        plus = client.get(
            "/api/v1/customers", params={"updated_since": "2025-06-01T01:00:00+00:00"}
        ).json()
        assert len(plus["results"]) == len(since["results"])
        _, _, cursor = _walk(client, limit=50)
        # a new day's records arrive; the saved cursor returns exactly those
        later = _customers(3, burst=0).set_column(
            4, "updated_at", pa.array([BASE_US + 10**10] * 3, pa.timestamp("us", tz="UTC"))
        )
        store.write("customers", later.set_column(0, "customer_id", pa.array([5, 6, 7])), "d0001")
        store.touch()
        fresh = client.get("/api/v1/customers", params={"cursor": cursor}).json()
        assert [r["customer_id"] for r in fresh["results"]] == [5, 6, 7]
        assert fresh["paging"]["has_more"] is False


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"updated_since": "2025-06-01T00:00:00"}, "zone"),
        ({"updated_since": "yesterday"}, "ISO-8601"),
        ({"cursor": "%%%garbage"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
    ],
)
def test_bad_parameters_get_400_with_a_reason(serve, params, fragment) -> None:
    with _client(serve()) as client:
        response = client.get("/api/v1/customers", params=params)
    assert response.status_code == 400 and fragment in response.json()["message"]


def test_unknown_stream_is_404(serve) -> None:
    with _client(serve()) as client:
        assert client.get("/api/v1/deals").status_code == 404


def test_rate_limit_answers_429_with_retry_after(serve) -> None:
    with _client(serve(Faults(rate_limit_every=3, retry_after_seconds=7))) as client:
        codes = [client.get("/api/v1/customers") for _ in range(6)]
    assert [r.status_code for r in codes] == [200, 200, 429, 200, 200, 429]
    assert codes[2].headers["Retry-After"] == "7"


def test_occasional_5xx_and_a_client_that_retries_still_gets_everything(serve) -> None:
    with _client(serve(Faults(error_every=4, rate_limit_every=5))) as client:
        records, requests, _ = _walk(client, limit=20)
    assert len({r["customer_id"] for r in records}) == 120 and len(records) == 120
    assert requests > 6


def test_repeated_page_duplicates_records_but_loses_none(serve) -> None:
    with _client(serve(Faults(repeat_page_every=3))) as client:
        records, _, _ = _walk(client, limit=20)
    ids = [r["customer_id"] for r in records]
    assert len(ids) > 120 and len(set(ids)) == 120


def test_stalled_response_trips_the_client_timeout(serve) -> None:
    # The answered request has seconds, and the stall lasts far longer than them: with 0.4 s
    # and a 1.5 s stall, a CI run under load once timed out on the answered request.
    with _client(serve(Faults(stall_every=2, stall_seconds=15)), timeout=3.0) as client:
        assert client.get("/api/v1/customers").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            client.get("/api/v1/customers")


def test_cursor_is_opaque_but_stable() -> None:
    assert encode_cursor(BURST_US, 42) == encode_cursor(BURST_US, 42)
    assert "=" not in encode_cursor(BURST_US, 42)
