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
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from litestar import Request, Response
from litestar.response import Stream

from api.cache import ResultCache, etag_for, weak
from api.fastpath import Answered, AnsweredRequests, request_key
from api.head import HEAD_SCOPE_KEY
from api.operations import Operations, QueryRecord
from api.results import RANGEABLE, ResultStore, StoredResult, answer_file, content_disposition, file_body
from engine.backends.base import QueryControl
from engine.database import Database
from engine.errors import ColonnadeError, Overloaded, QueryCancelled, ResultTooLarge
from engine.formats import MEDIA_TYPES, encode
from engine.prepared import PreparedQuery
from engine.result import Result
from engine.tokens import Token

ELAPSED_HEADER = "X-Colonnade-Elapsed-Ms"
QUERY_ID_HEADER = "X-Colonnade-Query-Id"
ENGINE_HEADER = "X-Colonnade-Engine"  # the engine that answered (engine=auto resolved)
MAX_BYTES_HEADER = "X-Colonnade-Max-Result-Bytes"


@dataclass
class QueryRequest:
    sql: str
    params: Sequence[Any] | None
    engine: str
    fmt: str
    timeout_s: float | None
    cacheable: bool  # GETs: ETag + 304; all: the result cache
    token: Token | None = None
    request_key: str | None = None  # the request's identity for the hit path (api/fastpath.py)
    name: str | None = None  # what a download is called: the table of /rows; "query-<key>" else


class Admission:
    """``max_concurrent`` query slots and ``max_queued`` places to wait for one; past both, a
    query is refused (Overloaded, 429).

    Admission counts holders and waiters as one number, which changes only between awaits. It
    once read the semaphore beside a waiters count, but a slot's new holder stays a waiter until
    its coroutine resumes: a burst was then refused with queue places free (8 of 10 admitted
    under load), and one arriving before the semaphore ran admitted more than the queue holds.
    """

    def __init__(self, max_concurrent: int, max_queued: int, report: Callable[[int, int], None]) -> None:
        self.max_concurrent, self.max_queued = max_concurrent, max_queued
        self.busy = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_concurrent)
        self._report = report

    async def enter(self, cancelled: asyncio.Event) -> None:
        """Take a slot, waiting in the queue if need be; ``cancelled`` takes the query out of it."""
        if self.busy + self.waiting >= self.max_concurrent + self.max_queued:
            raise Overloaded(
                f"{self.max_concurrent} queries are running and {self.waiting} are waiting; try again shortly",
                retry_after=1,
            )
        self.waiting += 1
        self._report(self.busy, self.waiting)
        acquire = asyncio.ensure_future(self._slots.acquire())
        stopped = asyncio.ensure_future(cancelled.wait())
        acquired = False
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
            acquired = acquire.done() and not acquire.cancelled() and not cancelled.is_set()
        finally:  # also when the request itself is cancelled while it waits
            self.waiting -= 1
            stopped.cancel()
            if not acquired:
                if acquire.done() and not acquire.cancelled():
                    self._slots.release()
                else:
                    acquire.cancel()
            else:
                self.busy += 1
            self._report(self.busy, self.waiting)
        if not acquired:
            raise QueryCancelled("the query was cancelled while it waited for a slot")

    def leave(self) -> None:
        self.busy -= 1
        self._slots.release()
        self._report(self.busy, self.waiting)


class QueryService:
    def __init__(self, db: Database, ops: Operations) -> None:
        self.db = db
        self.ops = ops
        limits = db.settings.limits
        self.max_concurrent = max(1, limits.max_concurrent_queries)
        self.max_queued = max(0, limits.max_queued_queries)
        self.pool = ThreadPoolExecutor(self.max_concurrent + 2, thread_name_prefix="colonnade-query")
        self.cache = ResultCache(db.settings.cache.max_bytes, db.settings.cache.ttl_s)
        self.results = ResultStore(
            ops.runtime_dir / "results" if ops.runtime_dir else None, db.settings.cache.result_store_bytes
        )
        self.answered = AnsweredRequests()
        self.admission = Admission(self.max_concurrent, self.max_queued, ops.metrics.slots)
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
        record = self.ops.begin(q.token.name if q.token else None, q.engine, q.fmt)
        q.request_key = request_key(request.scope)
        try:
            response = await self._respond(request, q, record)
        except ColonnadeError as exc:
            if "tables" in exc.extra:  # a refusal names the tables the query tried
                record.tables = list(exc.extra["tables"])
            self.ops.finish(record, exc.code)
            exc.extra.setdefault("query_id", record.id)  # the problem body and its header
            raise
        except BaseException:
            self.ops.finish(record, "cancelled")
            raise
        response.headers[QUERY_ID_HEADER] = record.id
        return response

    async def _respond(self, request: Request, q: QueryRequest, record: QueryRecord) -> Response:
        started = time.perf_counter()
        # A query whose text was validated before is prepared at once, outside any slot: a
        # cache hit, a stored file or a 304 never waits behind running queries.
        prepared = await self.run_blocking(self._prepare_validated, q)
        if prepared is not None and (answer := await self._answer(request, q, prepared, record, started)) is not None:
            return answer
        await self._acquire_slot(record)
        # Out of the queue now, though the pool thread that validates or runs it may not have
        # started yet: an operator listing queries must not see a slot holder as "queued".
        record.state = "validating" if prepared is None else "running"
        running = await self._start(request, prepared, q, record)
        # New text was validated inside the slot, under the query's timeout (validation can be
        # as costly as a query): the cache may answer now.
        if prepared is None and (answer := await self._answer(request, q, running.prepared, record, started)):
            self.pool.submit(running.cleanup)
            return answer
        if running.first is _NOT_STARTED:
            await self._in_pool(request, running, running.start)
        if _wants_file(request, q, running.prepared):
            return await self._materialize(request, running, record, started)
        key = running.key
        etag = etag_for(key) if running.prepared.cacheable and q.cacheable else None
        headers = {
            ELAPSED_HEADER: f"{(time.perf_counter() - started) * 1000:.3f}",
            "X-Colonnade-Cache": "miss",
            ENGINE_HEADER: record.engine,
        }
        headers[MAX_BYTES_HEADER] = str(self.db.settings.limits.max_result_bytes)  # a cut stream is this cap
        if etag is not None:
            headers["ETag"] = weak(etag)
        headers.update(self._disposition(q, key))
        relay = self._relay(running, key if running.prepared.cacheable else None, record)
        # An async generator that is never started never runs its finally block (the client may
        # vanish before the response body starts): free the engine and the slot when it is dropped.
        weakref.finalize(relay, self._abandon, running, record)
        return Stream(relay, media_type=MEDIA_TYPES[q.fmt], headers=headers)

    async def _answer(
        self, request: Request, q: QueryRequest, prepared: PreparedQuery, record: QueryRecord, started: float
    ) -> Response | None:
        """A 304, a cache hit or a stored file for ``prepared``; None when the engine must run it.
        A request for a length or a range is answered from the store only."""
        wants_file = _wants_file(request, q, prepared)
        if not wants_file and (cached := self._cached(request, q, prepared, record, started)) is not None:
            return cached
        if q.fmt not in RANGEABLE or not prepared.cacheable:
            return None
        record.tables, record.engine = list(prepared.tables), prepared.engine
        stored = await self.run_blocking(self.results.get, self._key(prepared, q), q.fmt)
        return None if stored is None else self._stored(request, q, stored, record, started, "stored")

    async def _materialize(
        self, request: Request, running: _RunningStream, record: QueryRecord, started: float
    ) -> Response:
        """Run the query into the result store (in the pool, under its timeout, in its slot),
        then answer from the file: what a HEAD or a Range needs."""
        try:
            stored = await self._in_pool(request, running, running.store)
        finally:
            self.pool.submit(running.cleanup)
        if stored is None:
            raise ResultTooLarge(
                f"the result is larger than the result store ([cache] result_store_bytes = "
                f"{self.results.max_bytes}), so it cannot be served by ranges; GET it without a Range header"
            )
        return self._stored(request, running.q, stored, record, started, "miss", rows=running.result_rows)

    def _stored(
        self,
        request: Request,
        q: QueryRequest,
        stored: StoredResult,
        record: QueryRecord,
        started: float,
        cache: str,
        rows: int | None = None,
    ) -> Response:
        media_type = MEDIA_TYPES[q.fmt]
        answer = answer_file(
            stored,
            media_type,
            head=bool(request.scope.get(HEAD_SCOPE_KEY)),
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            if_none_match=_if_none_match(request),
        )
        headers = {
            **answer.headers,
            ELAPSED_HEADER: f"{(time.perf_counter() - started) * 1000:.3f}",
            "X-Colonnade-Cache": cache,
            ENGINE_HEADER: record.engine,
            **self._disposition(q, self._key_of(stored)),
        }
        sent = sum(last - first + 1 for first, last in answer.parts)
        self.ops.finish(record, "ok", cache=cache, rows=rows, bytes=sent, status=answer.status)
        media = headers.pop("Content-Type", media_type)
        if answer.parts:  # Litestar reads a sync iterator in a thread: file reads stay off the loop
            body = file_body(stored, answer, media_type)
            return Stream(body, status_code=answer.status, media_type=media, headers=headers)
        return Response(b"", status_code=answer.status, media_type=media, headers=headers)

    @staticmethod
    def _key_of(stored: StoredResult) -> str:
        return stored.path.name.split("-", 1)[0]

    @staticmethod
    def _disposition(q: QueryRequest, key: str) -> dict[str, str]:
        """The download name of a result file (one per query); JSON is shown in a browser."""
        if q.fmt == "json":
            return {}
        return {"Content-Disposition": content_disposition(q.name or f"query-{key[:8]}", q.fmt)}

    def _cached(
        self, request: Request, q: QueryRequest, prepared: PreparedQuery, record: QueryRecord, started: float
    ) -> Response | None:
        """A 304 or a cache hit for ``prepared``, or None when the engine must run it."""
        record.tables, record.engine = list(prepared.tables), prepared.engine
        if not prepared.cacheable:  # volatile queries: no cache, no ETag
            return None
        key = self._key(prepared, q)
        etag = etag_for(key) if q.cacheable else None
        if etag is not None and etag in _if_none_match(request):
            self.ops.finish(record, "ok", cache="not_modified", rows=None, bytes=0)
            return Response(b"", status_code=304, headers={"ETag": weak(etag)})
        hit = self.cache.get(key)
        if hit is None:
            return None
        record.engine = hit.engine or record.engine
        self._answered(q, prepared, key, etag, record.engine)
        headers = {
            ELAPSED_HEADER: f"{(time.perf_counter() - started) * 1000:.3f}",
            "X-Colonnade-Cache": "hit",
            ENGINE_HEADER: record.engine,
        }
        if etag is not None:
            headers["ETag"] = weak(etag)
        headers.update(self._disposition(q, key))
        self.ops.finish(record, "ok", cache="hit", rows=None, bytes=len(hit.body))
        return Response(hit.body, media_type=hit.media_type, headers=headers)

    def _answered(self, q: QueryRequest, prepared: PreparedQuery, key: str, etag: str | None, engine: str) -> None:
        """Let the hit path answer this request again while its tables keep their versions.
        Not a query over catalog views: its answer changes when tables come and go. ``engine``
        is the one that answered (engine=auto's fallback included)."""
        if not prepared.query.views:
            versions = tuple((name, snap.fingerprint) for name, snap in prepared.tables.items())
            disposition = self._disposition(q, key).get("Content-Disposition")
            answered = Answered(key, etag, versions, engine, q.fmt, disposition)
            self.answered.remember(q.request_key, answered)

    def _key(self, prepared: PreparedQuery, q: QueryRequest) -> str:
        limits = self.db.settings.limits
        return prepared.key(q.fmt, limits.max_result_rows, limits.max_result_bytes)

    def _abandon(self, stream: _RunningStream, record: QueryRecord) -> None:
        """Idempotent: after a normal end every step here is already done and does nothing."""
        if stream.relayed or stream.released:
            return
        stream.cancel()
        self.ops.finish(record, "cancelled")
        with contextlib.suppress(RuntimeError):  # the pool is gone when the server is stopping
            self.pool.submit(stream.cleanup)

    def _prepare_validated(self, q: QueryRequest) -> PreparedQuery | None:
        return self.db.prepare_validated(q.sql, q.params, engine=q.engine, token=q.token)

    def _prepare(self, q: QueryRequest) -> PreparedQuery:
        return self.db.prepare(q.sql, q.params, engine=q.engine, token=q.token)

    async def _acquire_slot(self, record: QueryRecord) -> None:
        """Wait for a query slot; an operator's cancel takes the query out of the queue."""
        await self.admission.enter(record.cancelled)

    def release_slot(self) -> None:
        self.admission.leave()

    async def _start(
        self, request: Request, prepared: PreparedQuery | None, q: QueryRequest, record: QueryRecord
    ) -> _RunningStream:
        """In the pool, watching for hang-ups: validate new text (under the timeout), then, if
        the cache cannot answer, start the engine and produce the first chunk. From here on the
        slot is released by ``_RunningStream.cleanup``, whatever happens."""
        limits = self.db.settings.limits
        timeout = limits.query_timeout_s if q.timeout_s is None else min(q.timeout_s, limits.query_timeout_s)
        running = _RunningStream(self, prepared, q, timeout, record)
        await self._in_pool(request, running, running.prepare if prepared is None else running.start)
        return running

    async def _first_chunk(self, request: Request, running: _RunningStream) -> None:
        await self._in_pool(request, running, running.start)

    async def _in_pool(self, request: Request, running: _RunningStream, step: Any) -> Any:
        """Run ``step`` of ``running`` in the pool; a client that leaves meanwhile cancels it."""
        started = self.pool.submit(step)
        first = asyncio.wrap_future(started)
        gone = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            done, _ = await asyncio.wait({first, gone}, return_when=asyncio.FIRST_COMPLETED)
            if first not in done:  # the client left while the engine was still working
                raise QueryCancelled("the client disconnected")
            return first.result()  # a validation or engine error becomes its problem response
        except BaseException:
            running.cancel()
            first.add_done_callback(_consume)  # its error was handled, or nobody is left to tell
            started.add_done_callback(lambda _: self.pool.submit(running.cleanup))
            raise
        finally:
            gone.cancel()

    async def _relay(self, running: _RunningStream, key: str | None, record: QueryRecord) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        kept: list[bytes] | None = [] if key is not None else None
        sent = 0
        outcome = "cancelled"  # unless the stream ends or fails below
        record.state = "streaming"
        try:
            chunk = running.first
            while chunk is not None:
                sent += len(chunk)
                if kept is not None:
                    kept.append(chunk)
                    if sent > self.cache.max_entry_bytes:
                        kept = None
                # The engine makes the next chunk while this one is written to the socket: the
                # two overlap instead of taking turns (one chunk ahead, no more).
                running.pending = self.pool.submit(running.next_chunk)
                yield chunk
                chunk = await asyncio.wrap_future(running.pending, loop=loop)
            outcome = "ok"
            if kept is not None and key is not None:
                media, engine = MEDIA_TYPES[running.q.fmt], running.record.engine
                self.cache.put(key, b"".join(kept), media, running.elapsed_ms(), engine)
                etag = etag_for(key) if running.q.cacheable else None
                self._answered(running.q, running.prepared, key, etag, engine)
        except ColonnadeError as exc:  # mid-stream: the status is sent already; the body is cut
            outcome = exc.code
            raise
        finally:
            if outcome != "ok":
                running.cancel()
            self.ops.finish(record, outcome, cache="miss", rows=running.result_rows, bytes=sent)
            running.relayed = True
            self.pool.submit(running.cleanup)


_NOT_STARTED = b"not started"  # sentinel: the engine has not produced its first chunk yet


class _RunningStream:
    """One query in a slot — validation if its text is new, then its engine result and
    encoder — driven from pool threads, under one timeout from the slot on."""

    def __init__(
        self,
        service: QueryService,
        prepared: PreparedQuery | None,
        q: QueryRequest,
        timeout_s: float,
        record: QueryRecord,
    ) -> None:
        self.service = service
        self.record = record
        self._prepared = prepared
        self.q = q
        self.result: Result | None = None
        self.chunks: Iterator[bytes] | None = None
        self.first: bytes | None = _NOT_STARTED
        self.pending: Future | None = None
        self.released = False
        self.relayed = False  # the response body ran (and its finally block cleans up)
        self.control = QueryControl(timeout_s)  # exists before the engine starts: cancel works at once
        record.cancel_engine = self.cancel
        self._final_rows: int | None = None  # the row count, kept once the result is released
        record.rows = lambda: self.result_rows

    @property
    def prepared(self) -> PreparedQuery:
        assert self._prepared is not None
        return self._prepared

    @property
    def key(self) -> str:
        return self.service._key(self.prepared, self.q)

    def prepare(self) -> None:
        """Validate new text: it counts against the query's timeout like the engine's work."""
        self.record.state = "validating"
        self._prepared = self.service._prepare(self.q)
        self.record.tables, self.record.engine = list(self._prepared.tables), self._prepared.engine
        self.control.check()

    def elapsed_ms(self) -> float:
        """The engine's time so far (0 before it started)."""
        return self.result.elapsed_ms if self.result is not None else 0.0

    def start(self) -> None:
        limits = self.service.db.settings.limits
        self.record.state = "running"
        self.result = self.service.db.execute(self.prepared, control=self.control)
        self.record.engine = self.result.engine  # engine=auto's choice, after any fallback
        batches = _prefetched(self.result.reader())
        self.chunks = encode(
            self.q.fmt,
            self.result.schema,
            batches,
            max_rows=limits.max_result_rows,
            max_bytes=limits.max_result_bytes,
            elapsed_ms=self.elapsed_ms,
        )
        self.first = next(self.chunks, None)

    @property
    def result_rows(self) -> int | None:
        return self.result.rows if self.result is not None else self._final_rows

    def store(self) -> StoredResult | None:
        """Every chunk into the result store (a pool thread: file writes stay off the loop)."""
        self.record.state = "streaming"
        first = self.first if self.first is not _NOT_STARTED else None

        def chunks() -> Iterator[bytes]:
            if first is not None:
                yield first
            while (chunk := self.next_chunk()) is not None:
                yield chunk

        return self.service.results.put(self.key, self.q.fmt, chunks())

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
        # The query record and this stream point at each other (cancel, row count): let go of
        # the engine's result and the first chunk now, not when the cyclic GC next runs (a
        # truncated 80 MB JSON answer held that way grew a worker by ~30 MB a query until then).
        self._final_rows = self.result_rows
        self.result, self.chunks, self.first = None, None, None
        self.record.cancel_engine = None
        assert self.service.loop is not None
        self.service.loop.call_soon_threadsafe(self.service.release_slot)


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


def _wants_file(request: Request, q: QueryRequest, prepared: PreparedQuery) -> bool:
    """A request that needs the result's length or a part of it: answered from a file."""
    if q.fmt not in RANGEABLE or not prepared.cacheable:
        return False
    return bool(request.scope.get(HEAD_SCOPE_KEY)) or "range" in request.headers or "if-range" in request.headers
