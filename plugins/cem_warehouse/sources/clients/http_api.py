"""The REST client every HTTP source shares: bearer auth, pagination, retries by kind.

A stream only says its endpoint; this client owns the rest:

* 429 waits for ``Retry-After`` (or backs off), 5xx and connection resets back off
  exponentially, each up to ``max_attempts``;
* 401/403 fail at once (retrying cannot fix a credential), and so does any answer that
  breaks the contract (not JSON, no ``results``);
* pages are followed with the server's opaque ``next_cursor``, so records sharing one
  ``updated_at`` across a page boundary all arrive.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from cem_warehouse.errors import CemError


class SourceAuthError(CemError):
    """The source refused our credentials: fix the connection, do not retry."""


class SourceContractError(CemError):
    """The source answered something the contract does not allow."""


class SourceUnavailable(CemError):
    """The source kept failing after every retry."""


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * (
            0.5 + random.random() / 2
        )


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.requests = 0
        self.retries: dict[str, int] = {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count_retry(self, kind: str) -> None:
        self.retries[kind] = self.retries.get(kind, 0) + 1

    def get_json(self, path: str, params: dict) -> dict:
        url = f"{self.base_url}{path}"
        for attempt in range(1, self.retry.max_attempts + 1):
            last = attempt == self.retry.max_attempts
            self.requests += 1
            try:
                response = self._client.get(url, params=params)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if last:
                    raise SourceUnavailable(
                        f"{url}: {type(exc).__name__} after {attempt} attempts: {exc}"
                    ) from None
                self._count_retry("connection")
                self.sleep(self.retry.delay(attempt))
                continue
            status = response.status_code
            if status in (401, 403):
                raise SourceAuthError(
                    f"{url} answered {status}: the token was refused; fix the password/token of the source's "
                    "Airflow connection."
                )
            if status == 429:
                if last:
                    raise SourceUnavailable(
                        f"{url}: still rate limited (429) after {attempt} attempts."
                    )
                self._count_retry("429")
                self.sleep(_retry_after(response) or self.retry.delay(attempt))
                continue
            if status >= 500:
                if last:
                    raise SourceUnavailable(f"{url}: {status} after {attempt} attempts.")
                self._count_retry("5xx")
                self.sleep(self.retry.delay(attempt))
                continue
            if status != 200:
                raise SourceContractError(f"{url} answered {status}: {response.text[:200]}")
            try:
                body = response.json()
            except json.JSONDecodeError:
                raise SourceContractError(
                    f"{url} answered 200 with a body that is not JSON: {response.text[:100]!r}"
                ) from None
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise SourceContractError(
                    f"{url}: the answer has no 'results' list; the API contract changed."
                )
            return body
        raise AssertionError("unreachable")

    def paginate(self, path: str, params: dict) -> Iterator[list[dict]]:
        """Pages of records, following ``paging.next_cursor`` until ``has_more`` is false."""
        query = {**params, "limit": self.page_size}
        while True:
            body = self.get_json(path, query)
            yield body["results"]
            paging = body.get("paging") or {}
            if not paging.get("has_more"):
                return
            cursor = paging.get("next_cursor")
            if not cursor:
                raise SourceContractError(f"{path}: has_more is true but no next_cursor was given.")
            query = {"cursor": cursor, "limit": self.page_size}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
