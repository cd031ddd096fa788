"""Every query a worker serves, from arrival to its last byte, for operators: the query log
line, the running-queries registry behind ``GET``/``DELETE /api/queries``, and the metrics.

Workers are separate processes. Each publishes what it runs to a file in the server's runtime
directory (``COLONNADE_RUNTIME_DIR``, made by ``colonnade serve``), so any worker can list every
worker's queries; a cancel for another worker's query is left there as a file that its owner
picks up within ``WATCH_INTERVAL_S``. Without a runtime directory (one process, tests) the
registry is the process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import msgspec

from api.metrics import Metrics
from api.priority import EnginePriority
from engine.processes import pid_alive

RUNTIME_DIR_ENV = "COLONNADE_RUNTIME_DIR"
_encode = msgspec.json.Encoder().encode  # ~10x json.dumps on a log line
WATCH_INTERVAL_S = 0.1


@dataclass
class QueryRecord:
    """One query of this worker. The token's name is kept, never its secret; nor the SQL."""

    id: str
    token: str | None
    engine: str
    format: str
    tables: list[str] = field(default_factory=list)
    state: str = "queued"  # queued → validating → running → streaming
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    rows: Callable[[], int | None] = lambda: None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_engine: Callable[[], None] | None = None
    done: bool = False

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "engine": self.engine,
            "format": self.format,
            "tables": self.tables,
            "state": self.state,
            "started": round(self.started_at, 3),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "rows": self.rows(),
            "worker": os.getpid(),
        }


class QueryLog:
    """One JSON line per query on stderr, written by a thread of its own: the event loop only
    queues the line (no logging machinery per request, and a full stderr pipe never stalls it).

    Woken by a line, the writer lets the next ones gather for GATHER_S before it writes them
    all: woken per line, it took the GIL from the loop thousands of times a second under load
    (a quarter of a worker's samples on the cached path, bench/NOTES.md §22). Idle, it sleeps."""

    GATHER_S = 0.02

    def __init__(self) -> None:
        self._lines: SimpleQueue[str | None] = SimpleQueue()
        self._writer = threading.Thread(target=self._write_lines, name="colonnade-query-log", daemon=True)
        self._writer.start()

    def write(self, line: dict[str, Any]) -> None:
        self._lines.put(_encode(line).decode())

    def close(self) -> None:
        self._lines.put(None)
        self._writer.join(timeout=5)

    def _write_lines(self) -> None:
        done = False
        while not done:
            batch = [self._lines.get()]
            if batch[0] is not None:
                time.sleep(self.GATHER_S)  # lines put meanwhile wake nobody
            while not self._lines.empty():  # under load, one write for many lines
                batch.append(self._lines.get())
            done = None in batch
            lines = [line for line in batch if line is not None]
            if lines:
                with contextlib.suppress(OSError, ValueError):  # stderr closed: the server is going
                    sys.stderr.write("\n".join(lines) + "\n")
                    sys.stderr.flush()


class Operations:
    def __init__(self, metrics: Metrics, runtime_dir: Path | None = None) -> None:
        self.metrics = metrics
        self.log = QueryLog()
        self.pid = os.getpid()
        self._prefix = f"{self.pid:x}{secrets.token_hex(2)}"
        self._ids = itertools.count(1)
        self._records: dict[str, QueryRecord] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.runtime_dir = runtime_dir
        self.dir = runtime_dir / "queries" if runtime_dir is not None else None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.priority = EnginePriority()  # on the loop's thread: the one it leaves alone
        self.priority.apply()
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._watcher = threading.Thread(target=self._watch, name="colonnade-operations", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        self.log.close()
        if self.dir is not None:
            with contextlib.suppress(OSError):
                self._own_file().unlink()
        self.metrics.worker_exits(self.pid)

    # -- one query -------------------------------------------------------------------------

    def begin(self, token: str | None, engine: str, fmt: str) -> QueryRecord:
        record = QueryRecord(f"{self._prefix}-{next(self._ids)}", token, engine, fmt)
        with self._lock:
            self._records[record.id] = record
        return record

    def finish(self, record: QueryRecord, outcome: str, **fields: Any) -> None:
        """The query's one log line and its metrics; it leaves the registry."""
        with self._lock:
            if record.done:
                return
            record.done = True
            self._records.pop(record.id, None)
        line = {
            "ts": round(time.time(), 3),
            "id": record.id,
            "token": record.token,
            "engine": record.engine,
            "format": record.format,
            "tables": record.tables,
            **fields,
            "outcome": outcome,
            "ms": round(record.elapsed_ms, 3),
        }
        self.log.write(line)
        self.metrics.query_finished(record.engine, record.format, outcome, line)

    # -- every worker's queries ------------------------------------------------------------

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            mine = [r.describe() for r in self._records.values()]
        return sorted(mine + self._others(), key=lambda q: q["started"])

    def cancel(self, query_id: str) -> bool:
        """Cancel ``query_id`` wherever it runs; False when no worker has it."""
        with self._lock:
            record = self._records.get(query_id)
        if record is not None:
            self._cancel(record)
            return True
        owner = next((q for q in self._others() if q["id"] == query_id), None)
        if owner is None or self.dir is None:
            return False
        (self.dir / f"cancel-{owner['worker']}-{query_id}").touch()
        return True

    def _cancel(self, record: QueryRecord) -> None:
        if record.cancel_engine is not None:
            record.cancel_engine()
        if self._loop is not None:  # a queued query wakes and leaves the queue
            self._loop.call_soon_threadsafe(record.cancelled.set)

    def _others(self) -> list[dict[str, Any]]:
        if self.dir is None:
            return []
        found = []
        for path in self.dir.glob("worker-*.json"):
            pid = int(path.stem.split("-", 1)[1])
            if pid == self.pid:
                continue
            if not pid_alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            with contextlib.suppress(OSError, ValueError):
                found.extend(json.loads(path.read_text()))
        return found

    # -- the watcher thread ----------------------------------------------------------------

    def _watch(self) -> None:
        """Publish this worker's queries and RSS, take cancels addressed to it, and keep new
        threads below the loop's priority."""
        published = None
        while not self._stop.wait(WATCH_INTERVAL_S):
            self.priority.apply()
            self.metrics.worker_rss(self.pid)
            self.metrics.flush()
            if self.dir is None:
                continue
            with self._lock:
                mine = [r.describe() for r in self._records.values()]
            text = json.dumps(mine)
            if text != published:  # elapsed and rows change: running queries rewrite it
                tmp = self.dir / f".worker-{self.pid}.tmp"
                tmp.write_text(text)
                os.replace(tmp, self._own_file())
                published = text if not mine else None
            for request in self.dir.glob(f"cancel-{self.pid}-*"):
                query_id = request.name.split("-", 2)[2]
                with contextlib.suppress(OSError):
                    request.unlink()
                with self._lock:
                    record = self._records.get(query_id)
                if record is not None:
                    self._cancel(record)

    def _own_file(self) -> Path:
        assert self.dir is not None
        return self.dir / f"worker-{self.pid}.json"
