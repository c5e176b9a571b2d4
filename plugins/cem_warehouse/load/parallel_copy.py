"""COPY one CSV stream into a table over several connections at once.

A single COPY is bound by one server process parsing the CSV: one core. A large batch is
cut at record boundaries into pieces that a few connections COPY side by side into the
same batch table, so landing uses the machine's cores. Rows land in no
particular order, which nothing downstream relies on: duplicates are ranked by version and
content, never by arrival.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext

import psycopg
from psycopg import sql

from cem_warehouse.env import whole_number_from_env
from cem_warehouse.load import failpoints

# A piece is at least this large: big enough that handing it to a connection costs nothing
# measurable, small enough that the connections finish close together.
PIECE_BYTES = 4 << 20
STREAMS_ENV = "CEM_COPY_STREAMS"


def copy_streams() -> int:
    """How many connections land a large batch: ``CEM_COPY_STREAMS``, else one per core (at most 4)."""
    return whole_number_from_env(
        STREAMS_ENV,
        max(1, min(4, os.cpu_count() or 1)),
        meaning="how many connections may COPY one batch at once (1 turns parallel landing off)",
    )


def record_end(buffer: bytes | bytearray, limit: int | None = None, newline: bytes = b"\n") -> int:
    """Length of the longest prefix of CSV ``buffer[:limit]`` that ends on a record boundary (0: none).

    ``buffer`` must start on a record boundary. A newline ends a record unless it lies inside
    a quoted field, that is after an odd number of quote characters (a doubled quote inside
    a field counts twice, so the parity still holds).
    """
    end = len(buffer) if limit is None else min(limit, len(buffer))
    quotes_before = buffer.count(b'"', 0, end)  # quotes before the candidate newline
    position = buffer.rfind(newline, 0, end)
    while position >= 0:
        quotes_before -= buffer.count(b'"', position, end)
        end = position
        if quotes_before % 2 == 0:
            return position + 1
        position = buffer.rfind(newline, 0, position)
    return 0


def record_aligned(chunks: Iterable[bytes], piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
    """Re-cut a CSV byte stream into pieces of whole records, each about ``piece_bytes``."""
    pending = bytearray()
    newline = None
    for chunk in chunks:
        pending += chunk
        if newline is None and len(pending) >= piece_bytes:
            # COPY also reads files whose lines end in a bare carriage return (old Mac
            # exports); in those no line feed ever comes, and cutting at one never would.
            newline = b"\n" if b"\n" in pending or b"\r" not in pending else b"\r"
        while len(pending) >= piece_bytes:
            # The last record end within the piece size; past it only for a longer record.
            cut = record_end(pending, piece_bytes, newline) or record_end(pending, None, newline)
            if not cut:
                break  # one record longer than everything so far: wait for its end
            yield bytes(pending[:cut])
            del pending[:cut]
    if pending:
        yield bytes(pending)


_DONE = object()


def copy_in_parallel(
    connect: Callable[[], psycopg.Connection],
    statement: sql.Composable,
    chunks: Iterable[bytes],
    streams: int,
    piece_bytes: int | None = None,
    *,
    first: psycopg.Connection | None = None,
) -> int:
    """COPY the CSV ``chunks`` with ``statement`` over up to ``streams`` connections; returns rows copied.

    ``first``, an open connection in autocommit mode, carries the first stream and stays
    open; the others are opened with ``connect`` and closed. Each connection commits its own
    COPY, so when one fails the others' rows may be in the table: the caller empties the
    table before it tries anything else. The first error raised by any connection is raised
    here, after all of them have stopped.
    """
    pieces: queue.Queue = queue.Queue(maxsize=streams * 2)  # bounded: memory stays flat
    errors: list[BaseException] = []
    copied: list[int] = []
    lock = threading.Lock()

    def worker(stream: Callable[[], AbstractContextManager[psycopg.Connection]]) -> None:
        rows = 0
        finished = False  # this worker has taken its end marker from the queue
        try:
            with stream() as conn:
                conn.execute("set synchronous_commit = off")
                with conn.cursor() as cur:
                    with cur.copy(statement) as copy:
                        while (piece := pieces.get()) is not _DONE:
                            if not errors:
                                copy.write(piece)
                        finished = True
                        if errors:
                            # Another stream failed: end this COPY with an error so it
                            # writes nothing more (the caller empties the table anyway).
                            raise _Abandoned()
                    rows = cur.rowcount
        except _Abandoned:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            with lock:
                errors.append(exc)
            while not finished:  # keep draining so the producer never blocks
                finished = pieces.get() is _DONE
        with lock:
            copied.append(rows)

    threads: list[threading.Thread] = []
    try:
        for piece in record_aligned(chunks, piece_bytes or PIECE_BYTES):
            failpoints.reach("during_copy")
            if errors:
                break
            if len(threads) < streams and (not threads or not pieces.empty()):
                # A new connection only when the ones running have a backlog: a small batch
                # lands over one connection, as before.
                stream = (
                    (lambda: nullcontext(first)) if first is not None and not threads else connect
                )
                thread = threading.Thread(
                    target=worker, args=(stream,), name=f"cem-copy-{len(threads)}", daemon=True
                )
                thread.start()
                threads.append(thread)
            pieces.put(piece)
    finally:
        for _ in threads:
            pieces.put(_DONE)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return sum(copied)


class _Abandoned(Exception):
    """Raised inside a COPY block to abort it because another stream already failed."""
