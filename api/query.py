"""Running queries for HTTP: admission control, a bounded engine pool, streaming, the cache.

The event loop never runs engine or encoding work. A query takes a slot (at most
``max_concurrent_queries`` per worker, ``max_queued_queries`` waiting, then 429); the engine
starts in the pool and the first chunk is produced there, so errors before any byte is sent
become proper problem+json statuses. The rest streams one chunk per pool hop. A client that
goes away — while the query computes or mid-stream — interrupts the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from litestar import Request, Response
from litestar.response import Stream

from api.cache import ResultCache, cache_key, etag_for
from engine.backends.base import QueryControl
from engine.catalog import TableSnapshot
from engine.database import Database, check_engine
from engine.errors import ColonnadeError, Overloaded, QueryCancelled
from engine.formats import MEDIA_TYPES, encode
from engine.result import Result
from engine.sql import ValidatedQuery
from engine.tokens import Token

ELAPSED_HEADER = "X-Colonnade-Elapsed-Ms"
MAX_BYTES_HEADER = "X-Colonnade-Max-Result-Bytes"
query_log = logging.getLogger("colonnade.query")


@dataclass
class QueryRequest:
    sql: str
    params: Sequence[Any] | None
    engine: str
    fmt: str
    timeout_s: float | None
    cacheable: bool  # GETs: ETag + 304; all: the result cache
    token: Token | None = None


class QueryLogEntry:
    """One structured line per query: who, what, how much, how long, how it ended.
    The token's name is logged, never its secret; the SQL text is not logged either."""

    def __init__(self, q: QueryRequest) -> None:
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {
            "token": q.token.name if q.token else None,
            "engine": q.engine,
            "format": q.fmt,
            "tables": [],
        }
        self._done = False

    def finish(self, outcome: str, **fields: Any) -> None:
        if self._done:
            return
        self._done = True
        record = {
            "ts": round(time.time(), 3),
            **self.fields,
            **fields,
            "outcome": outcome,
            "ms": round((time.perf_counter() - self.started) * 1000, 3),
        }
        query_log.info(json.dumps(record, separators=(",", ":")))


class QueryService:
    def __init__(self, db: Database) -> None:
        self.db = db
        limits = db.settings.limits
        self.max_concurrent = max(1, limits.max_concurrent_queries)
        self.max_queued = max(0, limits.max_queued_queries)
        self.pool = ThreadPoolExecutor(self.max_concurrent + 2, thread_name_prefix="colonnade-query")
        self.cache = ResultCache(db.settings.cache.max_bytes, db.settings.cache.ttl_s)
        self._validated = _ValidationMemo()
        self._slots = asyncio.Semaphore(self.max_concurrent)
        self._waiting = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # set at startup

    def bind_loop(self) -> None:
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def run_blocking(self, fn: Any, *args: Any) -> Any:
        """Cheap blocking work (validation, catalog reads) off the loop, outside query slots."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- the request path ------------------------------------------------------------------

    async def respond(self, request: Request, q: QueryRequest) -> Response:
        entry = QueryLogEntry(q)
        try:
            return await self._respond(request, q, entry)
        except ColonnadeError as exc:
            entry.finish(exc.code)
            raise
        except BaseException:
            entry.finish("cancelled")
            raise

    async def _respond(self, request: Request, q: QueryRequest, entry: QueryLogEntry) -> Response:
        started = time.perf_counter()
        query, key = await self.run_blocking(self._prepare, q)
        entry.fields["tables"] = list(query.tables)
        etag = etag_for(key)
        if q.cacheable and etag in _if_none_match(request):
            entry.finish("ok", cache="not_modified", rows=None, bytes=0)
            return Response(b"", status_code=304, headers={"ETag": etag})
        if (hit := self.cache.get(key)) is not None:
            headers = {ELAPSED_HEADER: f"{(time.perf_counter() - started) * 1000:.3f}", "X-Colonnade-Cache": "hit"}
            if q.cacheable:
                headers["ETag"] = etag
            entry.finish("ok", cache="hit", rows=None, bytes=len(hit.body))
            return Response(hit.body, media_type=hit.media_type, headers=headers)
        await self._acquire_slot()
        stream = await self._start(request, query, q)
        headers = {ELAPSED_HEADER: f"{(time.perf_counter() - started) * 1000:.3f}", "X-Colonnade-Cache": "miss"}
        headers[MAX_BYTES_HEADER] = str(self.db.settings.limits.max_result_bytes)  # a cut stream is this cap
        if q.cacheable:
            headers["ETag"] = etag
        relay = self._relay(stream, key, entry)
        # An async generator that is never started never runs its finally block (the client may
        # vanish before the response body starts): free the engine and the slot when it is dropped.
        weakref.finalize(relay, self._abandon, stream, entry)
        return Stream(relay, media_type=MEDIA_TYPES[q.fmt], headers=headers)

    def _abandon(self, stream: _RunningStream, entry: QueryLogEntry) -> None:
        """Idempotent: after a normal end every step here is already done and does nothing."""
        if stream.relayed or stream.released:
            return
        stream.cancel()
        entry.finish("cancelled")
        with contextlib.suppress(RuntimeError):  # the pool is gone when the server is stopping
            self.pool.submit(stream.cleanup)

    def _prepare(self, q: QueryRequest) -> tuple[ValidatedQuery, str]:
        check_engine(q.engine, allow_auto=True)
        query, normalized = self._validated.get(q.sql, self.db)
        if q.token is not None:  # every table it touches: joins, CTEs, subqueries alike
            q.token.check_tables(query.tables)
        params = query.check_params(q.params)
        versions = {name: snap.fingerprint for name, snap in _snapshots(self.db, query.tables).items()}
        limits = self.db.settings.limits
        key = cache_key(
            normalized,
            q.engine,
            params,
            q.fmt,
            sorted(versions.items()),
            limits.max_result_rows,
            limits.max_result_bytes,
        )
        return query, key

    async def _acquire_slot(self) -> None:
        if self._slots.locked() and self._waiting >= self.max_queued:
            raise Overloaded(
                f"{self.max_concurrent} queries are running and {self._waiting} are waiting; try again shortly",
                retry_after=1,
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    async def _start(self, request: Request, query: ValidatedQuery, q: QueryRequest) -> _RunningStream:
        """Start the engine and produce the first chunk in the pool, watching for hang-ups.
        From here on the slot is released by ``_RunningStream.cleanup``, whatever happens."""
        limits = self.db.settings.limits
        timeout = limits.query_timeout_s if q.timeout_s is None else min(q.timeout_s, limits.query_timeout_s)
        running = _RunningStream(self, query, q, timeout)
        started = self.pool.submit(running.start)
        first = asyncio.wrap_future(started)
        gone = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({first, gone}, return_when=asyncio.FIRST_COMPLETED)
            if first not in done:  # the client left while the engine was still working
                raise QueryCancelled("the client disconnected")
            first.result()  # an engine or validation error becomes its problem response
            return running
        except BaseException:
            running.cancel()
            first.add_done_callback(_consume)  # its error was handled, or nobody is left to tell
            started.add_done_callback(lambda _: self.pool.submit(running.cleanup))
            raise
        finally:
            gone.cancel()

    async def _relay(self, running: _RunningStream, key: str, entry: QueryLogEntry) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        kept: list[bytes] | None = []
        sent = 0
        outcome = "cancelled"  # unless the stream ends or fails below
        try:
            chunk = running.first
            while chunk is not None:
                sent += len(chunk)
                if kept is not None:
                    kept.append(chunk)
                    if sent > self.cache.max_entry_bytes:
                        kept = None
                yield chunk
                running.pending = self.pool.submit(running.next_chunk)
                chunk = await asyncio.wrap_future(running.pending, loop=loop)
            outcome = "ok"
            if kept is not None:
                self.cache.put(key, b"".join(kept), MEDIA_TYPES[running.q.fmt], running.result.elapsed_ms)
        except ColonnadeError as exc:  # mid-stream: the status is sent already; the body is cut
            outcome = exc.code
            raise
        finally:
            if outcome != "ok":
                running.cancel()
            entry.finish(outcome, cache="miss", rows=running.result.rows if running.result else None, bytes=sent)
            running.relayed = True
            self.pool.submit(running.cleanup)


class _RunningStream:
    """One query's engine result and encoder, driven from pool threads."""

    def __init__(self, service: QueryService, query: ValidatedQuery, q: QueryRequest, timeout_s: float) -> None:
        self.service = service
        self.query = query
        self.q = q
        self.result: Result | None = None
        self.chunks: Iterator[bytes] | None = None
        self.first: bytes | None = None
        self.pending: Future | None = None
        self.released = False
        self.relayed = False  # the response body ran (and its finally block cleans up)
        self.control = QueryControl(timeout_s)  # exists before the engine starts: cancel works at once

    def start(self) -> None:
        limits = self.service.db.settings.limits
        self.result = self.service.db.execute(self.query, self.q.params, engine=self.q.engine, control=self.control)
        batches = _prefetched(self.result.reader())
        self.chunks = encode(
            self.q.fmt,
            self.result.schema,
            batches,
            max_rows=limits.max_result_rows,
            max_bytes=limits.max_result_bytes,
            elapsed_ms=lambda: self.result.elapsed_ms,
        )
        self.first = next(self.chunks, None)

    def next_chunk(self) -> bytes | None:
        assert self.chunks is not None
        return next(self.chunks, None)

    def cancel(self) -> None:
        self.control.cancel("cancelled")

    def cleanup(self) -> None:
        """Close the engine stream once no pool thread is inside it, then free the slot."""
        if self.released:
            return
        self.released = True
        if self.pending is not None:
            with contextlib.suppress(BaseException):
                self.pending.result()
        if self.chunks is not None:
            with contextlib.suppress(BaseException):
                self.chunks.close()  # type: ignore[attr-defined]
        if self.result is not None:
            self.result.close()
        assert self.service.loop is not None
        self.service.loop.call_soon_threadsafe(self.service._slots.release)


def _snapshots(db: Database, tables: Sequence[str]) -> dict[str, TableSnapshot]:
    """``Catalog.snapshot`` for names that are already the catalog's spellings (a validated
    query's tables): skips ``resolve``, which lists and stats the data directory once per
    table — a quarter of a worker's CPU on the cached path. A table dropped since validation
    still raises TableNotFound (its Delta log is gone)."""
    catalog = db.catalog
    return {n: catalog.get(n) if catalog.is_external(n) else catalog._managed_snapshot(n) for n in tables}


def _catalog_stamp(db: Database) -> int:
    """Changes when a table directory is created or removed (the data dir's mtime)."""
    try:
        return os.stat(db.catalog.data_dir).st_mtime_ns
    except OSError:
        return -1


class _ValidationMemo:
    """Validated queries by SQL text, so a repeated query is not parsed and printed again
    (sqlglot costs 1-6 ms a query). Validation depends only on the text and on the catalog's
    table names (``Catalog.resolve``); an entry is reused only while the data directory's
    listing is unchanged (its mtime), so creating or dropping a table re-validates, and a table
    that vanished anyway fails its snapshot right after. Only successful validations are kept;
    table versions are read per request as before."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[int, ValidatedQuery, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sql: str, db: Database) -> tuple[ValidatedQuery, str]:
        """The validated query and its normalised text (the cache key's query part)."""
        stamp = _catalog_stamp(db)
        with self._lock:
            hit = self._entries.get(sql)
            if hit is not None and hit[0] == stamp:
                self._entries.move_to_end(sql)
                return hit[1], hit[2]
        query = db.validate(sql)
        normalized = query.normalized
        with self._lock:
            self._entries[sql] = (stamp, query, normalized)
            self._entries.move_to_end(sql)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return query, normalized


def _prefetched(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """Pull the first batch now (where the heavy work of most queries happens) so its errors
    surface before the response starts; then the rest lazily."""
    iterator = iter(reader)
    first = next(iterator, None)

    def chain() -> Iterator[pa.RecordBatch]:
        if first is not None:
            yield first
        yield from iterator

    return chain()


def _consume(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def parse_params(raw: str | None) -> list[Any] | None:
    """``?params=[1,"x"]`` on GET /api/sql."""
    if raw is None or raw == "":
        return None
    from engine.errors import InvalidParameters

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidParameters("params must be a JSON array") from None
    if not isinstance(value, list):
        raise InvalidParameters("params must be a JSON array")
    return value
