"""What every engine backend provides: run a validated query, stream Arrow, stop on request."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from engine.catalog import TableSnapshot
from engine.config import check_timeout
from engine.errors import ColonnadeError, QueryCancelled, QueryTimeout
from engine.sql import ValidatedQuery

DEFAULT_BATCH_ROWS = 64 * 1024


class QueryControl:
    """Cancellation for one query: a timeout, a client hang-up or an explicit cancel.

    The backend registers how to interrupt its engine; the first ``cancel`` wins and records
    why, so the error raised in the query thread says timeout or cancel, not engine noise.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        if timeout_s is not None and timeout_s != 0:  # None (and 0, the old spelling): no timeout
            timeout_s = check_timeout(timeout_s)
        self.timeout_s = timeout_s
        self.reason: str | None = None
        self._interrupt: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if timeout_s is not None and timeout_s > 0:
            self._timer = threading.Timer(timeout_s, self.cancel, args=("timeout",))
            self._timer.daemon = True
            self._timer.start()

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
            interrupt = self._interrupt
        if interrupt is not None:
            with contextlib.suppress(Exception):  # the engine may have finished or closed already
                interrupt()

    def finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def check(self) -> None:
        """Raise the cancellation error if the query was stopped."""
        if self.reason == "timeout":
            raise QueryTimeout(f"the query ran past its {self.timeout_s:g} s timeout and was stopped")
        if self.reason is not None:
            raise QueryCancelled("the query was cancelled")


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
        except Exception as exc:
            self.control.check()
            raise self._translate(exc) from None
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.control.finish()
            self._close()

    def cancel(self, reason: str = "cancelled") -> None:
        self.control.cancel(reason)


class Backend(ABC):
    """One engine. Implementations are thread-safe: each query gets its own engine handle."""

    name: str

    @abstractmethod
    def execute(
        self,
        query: ValidatedQuery,
        params: Sequence[Any],
        tables: Mapping[str, TableSnapshot],
        control: QueryControl,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> Execution:
        """Start ``query``; errors binding or planning it are raised as ColonnadeError.
        Batches hold at most ``batch_rows`` rows (an engine may send fewer at a time)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
