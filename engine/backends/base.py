"""What every engine backend provides: run a validated query, stream Arrow, stop on request."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from engine.config import check_timeout
from engine.errors import ColonnadeError, QueryCancelled, QueryTimeout

if TYPE_CHECKING:
    from engine.prepared import PreparedQuery

DEFAULT_BATCH_ROWS = 64 * 1024
INTERRUPT_EVERY_S = 0.25
INTERRUPT_FOR_S = 120


class QueryControl:
    """Cancellation for one query: a timeout, a client hang-up or an explicit cancel.

    The backend registers how to interrupt its engine; the first ``cancel`` wins and records
    why, so the error raised in the query thread says timeout or cancel, not engine noise.

    An engine drops an interrupt that reaches it before its query runs: DuckDB clears it as a
    query begins, Spark's interruptTag stops only operations already on the server. The first
    cancel is also the only one (a timeout after it does nothing). So a cancelled query is
    interrupted again every INTERRUPT_EVERY_S until it ends (``finish``): one cancel that landed
    while DuckDB was still binding once left a query running for two minutes past its timeout.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        if timeout_s is not None and timeout_s != 0:  # None (and 0, the old spelling): no timeout
            timeout_s = check_timeout(timeout_s)
        self.timeout_s = timeout_s
        self.reason: str | None = None
        self._interrupt: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self.generation = 0  # which start of the query a deadline belongs to
        self.restart()

    def restart(self) -> None:
        """(Re)start the timeout: on creation, and for a second engine after a refusal (auto)."""
        self._finished.clear()  # the second engine's query is not finished
        self.generation += 1  # the previous deadline, if any, no longer applies
        if self.timeout_s is not None and self.timeout_s > 0:
            _TIMEOUTS.add(self, self.timeout_s)

    def on_cancel(self, interrupt: Callable[[], None]) -> None:
        with self._lock:
            self._interrupt = interrupt
            fire = self.reason is not None
        if fire:
            interrupt()

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
        self._interrupt_once()
        _REINTERRUPTER.add(self)

    def _interrupt_once(self) -> None:
        with self._lock:
            interrupt = self._interrupt
        if interrupt is not None:
            with contextlib.suppress(Exception):  # the engine may have finished or closed already
                interrupt()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def finish(self) -> None:
        self._finished.set()  # its deadline, when it comes, finds it finished

    def check(self) -> None:
        """Raise the cancellation error if the query was stopped."""
        if self.reason == "timeout":
            raise QueryTimeout(f"the query ran past its {self.timeout_s:g} s timeout and was stopped")
        if self.reason is not None:
            raise QueryCancelled("the query was cancelled")


class _Reinterrupter:
    """One daemon thread for every cancelled query that has not ended: it interrupts each again
    every INTERRUPT_EVERY_S, for at most INTERRUPT_FOR_S (a result dropped unread is never
    finished, and its interrupt holds its handle). The thread ends when no query is left, and a
    cancel starts it again; a burst of cancels costs no thread each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[QueryControl, float] = {}
        self._thread: threading.Thread | None = None

    def add(self, control: QueryControl) -> None:
        with self._lock:
            self._deadlines[control] = time.monotonic() + INTERRUPT_FOR_S
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="colonnade-reinterrupt")
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(INTERRUPT_EVERY_S)
            with self._lock:
                now = time.monotonic()
                self._deadlines = {c: t for c, t in self._deadlines.items() if not c.finished and t > now}
                if not self._deadlines:
                    self._thread = None  # under the lock: an add() from now on starts a new one
                    return
                due = list(self._deadlines)
            for control in due:
                control._interrupt_once()


_REINTERRUPTER = _Reinterrupter()


class _Timeouts:
    """One daemon thread times out every query, sleeping towards the earliest deadline of a heap.

    A thread per query (``threading.Timer``) cost each query a thread start and a wake-up at
    its end: ~9 % of a worker's CPU on small queries (bench/NOTES.md §24). Here a query adds its
    deadline and wakes the thread only when that deadline is the new earliest (with one timeout
    for all queries: only when none was pending); a finished query costs nothing more. Entries
    hold their query weakly (its interrupt holds the engine's cursor) and a query that finished
    or restarted is skipped when its deadline comes; the heap is compacted when it doubles."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, weakref.ref[QueryControl], int]] = []
        self._order = itertools.count()  # ties: first added, first due (and controls never compared)
        self._compact_at = 1024
        self._thread: threading.Thread | None = None

    def add(self, control: QueryControl, seconds: float) -> None:
        entry = (time.monotonic() + seconds, next(self._order), weakref.ref(control), control.generation)
        with self._cond:
            earliest = not self._heap or entry[0] < self._heap[0][0]
            heapq.heappush(self._heap, entry)
            if len(self._heap) >= self._compact_at:
                self._heap = [e for e in self._heap if _pending(e) is not None]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="colonnade-timeouts")
                self._thread.start()
            elif earliest:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap))
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for entry in due:  # outside the lock: an interrupt may take a while
                control = _pending(entry)
                if control is not None:
                    control.cancel("timeout")


def _pending(entry: tuple[float, int, weakref.ref[QueryControl], int]) -> QueryControl | None:
    """The query of a deadline, unless it is gone, finished or started again since."""
    control = entry[2]()
    if control is None or control.finished or control.generation != entry[3]:
        return None
    return control


_TIMEOUTS = _Timeouts()


class Execution:
    """A started query: its schema and its stream of Arrow record batches."""

    def __init__(
        self,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        control: QueryControl,
        translate: Callable[[BaseException], ColonnadeError],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self.schema = schema
        self.control = control
        self._batches = batches
        self._translate = translate
        self._close = close
        self._closed = False
        self.rows = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._batches:
                self.control.check()
                self.rows += batch.num_rows
                yield batch
        except ColonnadeError:
            raise
        except _NOT_ENGINE_ERRORS:
            raise
        except BaseException as exc:  # Polars' PanicException is not an Exception
            self.control.check()
            raise self._translate(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.control.finish()
            self._close()

    def on_close(self, fn: Callable[[], None]) -> None:
        """Also run ``fn`` when the query ends (e.g. release the local copies it read)."""
        first = self._close

        def both() -> None:
            try:
                first()
            finally:
                fn()

        self._close = both

    def cancel(self, reason: str = "cancelled") -> None:
        self.control.cancel(reason)


class _Once:
    """A close that runs once, whoever calls it first (the stream's end, or its garbage collection)."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close: Callable[[], None] | None = close
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            close, self._close = self._close, None
        if close is not None:
            close()


# Exceptions that are not the engine's to translate: they pass through as they are.
_NOT_ENGINE_ERRORS = (KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclass
class Started:
    """What an engine hands back when a query has started: its schema, its batches, and how to
    release its handle."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    close: Callable[[], None] = lambda: None
    # An engine whose handles outlive their stream (a worker process) translates its own errors
    # and must be closed even when the result is dropped unread.
    translate: Callable[[BaseException], ColonnadeError] | None = None
    close_on_drop: bool = False


def _redacted(batches: Iterator[pa.RecordBatch], prepared: PreparedQuery) -> Iterator[pa.RecordBatch]:
    """A plan's text with generated names and file paths turned back into table names (plans
    are a few rows of text: per-row Python is fine here)."""
    for batch in batches:
        columns = [
            pa.array([None if v is None else prepared.redact_plan(v) for v in column.to_pylist()], column.type)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            else column
            for column in batch.columns
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=batch.schema)


class Backend(ABC):
    """One engine. Implementations are thread-safe: each query gets its own engine handle.

    ``execute`` is the one protocol every engine shares (start, translate errors, redact
    generated names and paths, stream); an engine implements ``start`` and ``translate``.
    """

    name: str

    def execute(
        self, prepared: PreparedQuery, control: QueryControl, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Execution:
        """Start ``prepared``; errors binding or planning it are raised as ColonnadeError."""

        def translate(exc: BaseException) -> ColonnadeError:
            return prepared.redact_error(self.translate(exc))

        try:
            started = self.start(prepared, control, batch_rows)
        except ColonnadeError as exc:
            control.finish()
            raise prepared.redact_error(exc) from None
        except _NOT_ENGINE_ERRORS:
            control.finish()
            raise
        except BaseException as exc:
            control.finish()
            control.check()
            raise translate(exc) from exc
        if started.translate is not None:
            own = started.translate

            def translate(exc: BaseException) -> ColonnadeError:
                return prepared.redact_error(exc if isinstance(exc, ColonnadeError) else own(exc))

        batches = _redacted(started.batches, prepared) if prepared.query.explain else started.batches
        close = _Once(started.close)
        execution = Execution(started.schema, batches, control, translate, close)
        if started.close_on_drop:
            weakref.finalize(execution, close)
        return execution

    @abstractmethod
    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        """Start the query in the engine and register how to interrupt it (``control.on_cancel``)."""

    @abstractmethod
    def translate(self, exc: BaseException) -> ColonnadeError:
        """The Colonnade error a client should see for an engine exception."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
