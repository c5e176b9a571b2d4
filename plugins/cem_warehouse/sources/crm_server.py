"""The CRM stand-in's REST API (``cem sources serve``): paginated JSON over HTTP on loopback.

``GET /api/v1/<stream>?updated_since=<ISO-8601 with zone>&cursor=<opaque>&limit=<1..1000>``
with ``Authorization: Bearer <token>`` returns::

    {"stream": "customers", "results": [...],
     "paging": {"next_cursor": "...", "has_more": true, "limit": 500}}

Records come ordered by ``(updated_at, key)``; ``next_cursor`` encodes the last pair, so
a page boundary inside a burst of equal timestamps loses nothing. ``cursor`` wins over
``updated_since``. Like hosted CRMs it misbehaves on purpose (see :class:`Faults`): 429 with
``Retry-After``, 503, a page served twice, a response that stalls.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cem_warehouse.sources.crm import STREAM_BY_NAME, CrmStore

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
API_PREFIX = "/api/v1/"


@dataclass
class Faults:
    """Misbehaviour, counted per request so tests are deterministic (0 switches a fault off)."""

    rate_limit_every: int = 0  # every Nth API request answers 429 with Retry-After
    retry_after_seconds: int = 1
    error_every: int = 0  # every Nth API request answers 503
    repeat_page_every: int = 0  # every Nth API request serves the previous request's page again
    stall_every: int = 0  # every Nth API request waits stall_seconds before answering
    stall_seconds: float = 5.0

    @staticmethod
    def realistic() -> Faults:
        """What ``cem sources serve`` does by default: occasional 429 and 503."""
        return Faults(rate_limit_every=40, error_every=97)


class BadRequest(Exception):
    pass


def encode_cursor(updated_at_us: int, key: int) -> str:
    raw = json.dumps([int(updated_at_us), int(key)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, key = json.loads(raw)
        return int(ts), int(key)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(
            "cursor is not one this API issued: pass next_cursor back unchanged"
        ) from None


def parse_since(value: str) -> int:
    try:
        # an unescaped "+" in a query string arrives as a space
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise BadRequest(
            "updated_since must be ISO-8601 with a zone, e.g. 2025-01-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest("updated_since has no time zone: add Z or +00:00")
    return int(parsed.timestamp() * 1_000_000)


@dataclass
class _Loaded:
    table: pa.Table
    ts: np.ndarray
    keys: np.ndarray


class CrmData:
    """The store's latest records per stream, reloaded when the generator touches the store."""

    def __init__(self, root: Path) -> None:
        self.store = CrmStore(root)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._streams: dict[str, _Loaded] = {}

    def stream(self, name: str) -> _Loaded:
        with self._lock:
            version = self.store.version()
            if version != self._version:
                self._streams, self._version = {}, version
            if name not in self._streams:
                table = self.store.read(name)
                key = STREAM_BY_NAME[name].primary_key
                ts = table.column("updated_at").cast(pa.int64()).to_numpy()
                self._streams[name] = _Loaded(table, ts, table.column(key).to_numpy())
            return self._streams[name]

    def page(
        self, name: str, since_us: int | None, cursor: tuple[int, int] | None, limit: int
    ) -> dict:
        data = self.stream(name)
        if cursor is not None:
            t, k = cursor
            lo = int(np.searchsorted(data.ts, t, "left"))
            hi = int(np.searchsorted(data.ts, t, "right"))
            start = lo + int(np.searchsorted(data.keys[lo:hi], k, "right"))
        elif since_us is not None:
            start = int(np.searchsorted(data.ts, since_us, "left"))
        else:
            start = 0
        stop = min(start + limit, len(data.ts))
        rows = data.table.slice(start, stop - start)
        next_cursor = (
            encode_cursor(data.ts[stop - 1], data.keys[stop - 1]) if stop > start else None
        )
        return {
            "stream": name,
            "results": _records(rows),
            "paging": {"next_cursor": next_cursor, "has_more": stop < len(data.ts), "limit": limit},
        }


def _records(table: pa.Table) -> list[dict]:
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            column = pc.strftime(column.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_date(column.type):
            column = column.cast(pa.string())
        columns[name] = column
    return pa.table(columns).to_pylist() if columns else []


class CrmServer:
    """A threaded HTTP server for the CRM stand-in; ``port=0`` picks a free port (tests)."""

    def __init__(
        self,
        store_root: Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        self.data = CrmData(store_root)
        self.token = token
        self.faults = faults or Faults()
        self._count = 0
        self._count_lock = threading.Lock()
        self._previous: dict[str, dict] = {}
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CrmServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="crm-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_request_number(self) -> int:
        with self._count_lock:
            self._count += 1
            return self._count

    def handle(
        self, path: str, query: dict[str, list[str]], auth: str | None
    ) -> tuple[int, dict, dict]:
        """(status, headers, body) for one GET; the HTTP plumbing is in the handler class."""
        if path == "/health":
            return 200, {}, {"status": "ok"}
        if not path.startswith(API_PREFIX):
            return (
                404,
                {},
                {
                    "error": "not_found",
                    "message": f"unknown path {path}; streams live under {API_PREFIX}",
                },
            )
        name = path[len(API_PREFIX) :].strip("/")
        if name not in STREAM_BY_NAME:
            return (
                404,
                {},
                {
                    "error": "not_found",
                    "message": f"unknown stream {name!r}; one of {sorted(STREAM_BY_NAME)}",
                },
            )
        expected = f"Bearer {self.token}"
        if not auth or not hmac.compare_digest(auth.encode(), expected.encode()):
            return (
                401,
                {"WWW-Authenticate": 'Bearer realm="cem-crm"'},
                {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
            )
        n = self.next_request_number()
        f = self.faults
        if f.stall_every and n % f.stall_every == 0:
            time.sleep(f.stall_seconds)
        if f.rate_limit_every and n % f.rate_limit_every == 0:
            return (
                429,
                {"Retry-After": str(f.retry_after_seconds)},
                {"error": "rate_limited", "message": "too many requests; retry after the delay"},
            )
        if f.error_every and n % f.error_every == 0:
            return (
                503,
                {"Retry-After": "1"},
                {"error": "unavailable", "message": "temporarily unavailable; retry"},
            )
        try:
            limit = int(query.get("limit", [DEFAULT_LIMIT])[0])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            return (
                400,
                {},
                {"error": "bad_request", "message": f"limit must be an integer in 1..{MAX_LIMIT}"},
            )
        try:
            cursor = decode_cursor(query["cursor"][0]) if query.get("cursor") else None
            since = parse_since(query["updated_since"][0]) if query.get("updated_since") else None
        except BadRequest as exc:
            return 400, {}, {"error": "bad_request", "message": str(exc)}
        request = {"since": since, "cursor": cursor, "limit": limit}
        if f.repeat_page_every and n % f.repeat_page_every == 0 and name in self._previous:
            request = self._previous[name]
        self._previous[name] = request
        return 200, {}, self.data.page(name, request["since"], request["cursor"], request["limit"])


def _handler_for(server: CrmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            try:
                status, headers, body = server.handle(
                    parts.path, parse_qs(parts.query), self.headers.get("Authorization")
                )
            except Exception as exc:  # a bug must still answer, as a 500
                status, headers, body = (
                    500,
                    {},
                    {"error": "internal", "message": type(exc).__name__},
                )
            payload = json.dumps(body, ensure_ascii=False, default=str).encode()
            try:
                self.send_response(status, HTTPStatus(status).phrase)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout during a stall)

        def log_message(self, format: str, *args: object) -> None:  # quiet by default
            pass

    return Handler
