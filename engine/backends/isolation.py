"""Engine work in child processes that can be stopped: a small pool of pre-started workers.

Some engines cannot be stopped in-process: Polars plans a query before any cancel hook runs,
a cancelled collect runs on, and nothing bounds its memory. A child process can be killed at
once, and the kernel then takes back everything it held; ``RLIMIT_AS`` makes the kernel refuse
its allocations past its share. So such an engine runs here:

- Workers are fresh interpreters (``subprocess``, fork + exec at once), never forked copies of
  a process that has loaded an engine (a forked Polars hangs, see FACTS.md).
- One request at a time per worker. Parent → child: a length-prefixed pickle (the parent is
  the trusted side). Child → parent: frames of (kind, length, payload): ``READY`` once, then per
  request ``SCHEMA``, ``BATCH``…, and ``END`` or ``ERROR`` (JSON ``{"code", "detail"}``). Arrow
  data travels as IPC messages; the parent never unpickles anything a child sends.
- A worker is killed (SIGKILL) on timeout, cancel or hang-up, or when its stream is abandoned,
  and another one is started in its place; a worker that ends its stream goes back to the pool.
- Each worker lives under ``RLIMIT_AS = memory_bytes`` and exits when its parent does.

The child side is ``python -m engine.backends.isolation --run MOD:FN --translate MOD:FN``:
``run(request) -> (schema, batches)`` does the work, ``translate(exc) -> ColonnadeError``
names its errors.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.config import MAX_ROW_BYTES, row_too_wide
from engine.errors import (
    ERRORS_BY_CODE,
    ColonnadeError,
    EngineError,
    QueryTooComplex,
    ResourceExhausted,
    UnsupportedQuery,
)

if TYPE_CHECKING:
    from engine.backends.base import QueryControl

_FRAME = struct.Struct("!BQ")
READY, SCHEMA, BATCH, END, ERROR = b"RSBEX"
MAX_FRAME_BYTES = 16 * 1024**2  # a batch is cut into IPC messages of about this size (one wide row may be more)
_PIPE_BYTES = 1024**2  # Linux's default pipe-max-size: one write moves up to this much
_F_SETPIPE_SZ = 1031
_STDERR_TAIL = 8192
_OUT_OF_MEMORY = (
    "memory allocation of",  # Rust's alloc error handler, then abort()
    "MemoryError",
    "Cannot allocate memory",
    "out of memory",
    "failed to spawn thread",
    "thread creation failed",
)


class WorkerDied(Exception):
    """The worker's pipe closed before the answer was complete."""


# -- frames -------------------------------------------------------------------------------------


def _read_exact(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise WorkerDied("the worker closed its pipe")
        got += n
    return buffer


def read_frame(fd: int) -> tuple[int, bytearray]:
    kind, size = _FRAME.unpack(_read_exact(fd, _FRAME.size))
    return kind, _read_exact(fd, size) if size else bytearray()


def write_frame(fd: int, kind: int, payload: Any = b"") -> None:
    data = memoryview(payload).cast("B")
    _write_all(fd, memoryview(_FRAME.pack(kind, len(data))), data)


def _write_all(fd: int, *parts: memoryview) -> None:
    """writev until every byte is out: a blocking pipe write can still return short."""
    views = [p for p in parts if len(p)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def _grow_pipe(fd: int) -> None:
    with contextlib.suppress(OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)


# -- the parent side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    run: str  # "module:function" the child calls per request
    translate: str  # "module:function" turning the child's exceptions into ColonnadeErrors
    memory_bytes: int  # RLIMIT_AS of each worker: virtual memory, so RSS can never pass it
    size: int  # at most this many workers at once
    # Idle workers kept started, so a query rarely waits for an interpreter: one from the start,
    # and a replacement for each worker killed or recycled. Not topped up as a query takes one:
    # a spare importing its engine beside that query takes its CPU (~1.3 s on 2 cores), and
    # sequential queries reuse the worker they give back.
    spares: int = 1
    recycle_bytes: int | None = None  # a worker holding more RSS than this after a query is replaced
    env: dict[str, str] = field(default_factory=dict)
    what: str = "worker"  # how errors name it, e.g. "the Polars worker"


class Worker:
    """One child process and its pipes."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        env = {**os.environ, **config.env}
        cmd = [sys.executable, "-m", __name__, "--run", config.run, "--translate", config.translate]
        cmd += ["--memory-bytes", str(config.memory_bytes)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, bufsize=0
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        _grow_pipe(self._out)
        self.ready = False
        self._lock = threading.Lock()
        self.killed = False
        self._stderr_mark = 0  # what the worker wrote before the current request is not its story

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        if not self.ready:
            kind, _ = read_frame(self._out)
            if kind != READY:
                raise WorkerDied(f"the worker said {kind!r} instead of READY")
            self.ready = True

    def send(self, request: dict[str, Any]) -> None:
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        with contextlib.suppress(OSError, ValueError):
            self._stderr_mark = os.fstat(self._stderr.fileno()).st_size
        try:
            _write_all(self._in, memoryview(struct.pack("!Q", len(data))), memoryview(data))
        except OSError as exc:  # BrokenPipeError: it died
            raise WorkerDied(str(exc)) from None

    def read(self) -> tuple[int, bytearray]:
        try:
            return read_frame(self._out)
        except OSError as exc:
            raise WorkerDied(str(exc)) from None

    def alive(self) -> bool:
        with self._lock:
            return self.proc.poll() is None

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> None:
        """SIGKILL, from any thread. The lock keeps a reaped pid from being signalled (reuse)."""
        with self._lock:
            self.killed = True
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Reap the child (it must be dying: killed, or its stdin closed) and close the pipes."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]
        return code

    def stderr_tail(self) -> str:
        """The end of what the worker wrote to stderr since the current request was sent."""
        with contextlib.suppress(OSError, ValueError):
            size = os.fstat(self._stderr.fileno()).st_size
            start = max(self._stderr_mark, size - _STDERR_TAIL)
            return os.pread(self._stderr.fileno(), size - start, start).decode(errors="replace")
        return ""

    def close(self) -> None:
        self._stderr.close()

    def diagnose(self) -> ColonnadeError:
        """Why a worker that we did not kill died, as the error the client should see."""
        code = self.wait()
        tail = self.stderr_tail()
        what = self.config.what
        mb = self.config.memory_bytes // 1024**2
        if any(marker in tail for marker in _OUT_OF_MEMORY) or code == -signal.SIGKILL:
            return ResourceExhausted(f"the query needs more memory than {what} may use ({mb} MB)")
        if "overflowed its stack" in tail:
            return QueryTooComplex(f"{what} ran out of stack: the query is nested too deeply")
        last = next((line for line in reversed(tail.strip().splitlines()) if line.strip()), "")
        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
        return UnsupportedQuery(f"{what} crashed on this query ({reason}){': ' + last[:300] if last else ''}")


class WorkerPool:
    """At most ``size`` workers; idle ones are reused, killed ones replaced."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._cond = threading.Condition()
        self._closed = False
        with self._cond:
            self._top_up()

    def _top_up(self) -> None:
        """Start spares (called with the lock held). Popen returns at once; the child imports
        its engine in the background and says READY when it can take a request."""
        while (
            not self._closed
            and len(self._idle) < self.config.spares
            and len(self._idle) + len(self._busy) < self.config.size
        ):
            self._idle.append(Worker(self.config))

    def lease(self, control: QueryControl) -> Lease:
        """A worker for one query; waits while all ``size`` are busy, unless the query is stopped."""
        with self._cond:
            while True:
                if self._closed:
                    raise EngineError(f"{self.config.what} pool is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        break
                    self._discard(worker)
                else:
                    worker = None
                if worker is None and len(self._busy) < self.config.size:
                    worker = Worker(self.config)
                if worker is not None:
                    self._busy.add(worker)
                    return Lease(self, worker)
                control.check()
                self._cond.wait(0.05)

    def _give_back(self, worker: Worker, *, reusable: bool) -> None:
        recycle = self.config.recycle_bytes
        reusable = reusable and worker.alive()
        if reusable and recycle is not None and worker.rss_bytes() > recycle:
            reusable = False  # allocators keep what a big query took: start afresh instead
        if not reusable:
            worker.kill()
            self._reap(worker)
        with self._cond:
            self._busy.discard(worker)
            if reusable and not self._closed:
                self._idle.append(worker)
            self._top_up()
            self._cond.notify()

    def _discard(self, worker: Worker) -> None:
        worker.kill()
        self._reap(worker)

    @staticmethod
    def _reap(worker: Worker) -> None:
        worker.wait()
        worker.close()

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in (*self._idle, *self._busy)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._idle = [*self._idle, *self._busy], []
            self._busy.clear()
            self._cond.notify_all()
        for worker in workers:
            self._discard(worker)


class Lease:
    """One query on one worker: send the request, read the schema and the batches, and
    hand the worker back (or kill it) exactly once."""

    def __init__(self, pool: WorkerPool, worker: Worker) -> None:
        self.pool = pool
        self.worker = worker
        self.schema: pa.Schema | None = None
        self._complete = True  # no request outstanding (none sent yet, or END/ERROR read): reusable
        self._released = False
        self._lock = threading.Lock()

    def start(self, request: dict[str, Any]) -> pa.Schema:
        """Send ``request`` and wait for the schema: planning happens in the worker, so this
        can take long, and ``kill`` from another thread ends the wait."""
        self._complete = False
        self.worker.wait_ready()
        self.worker.send(request)
        kind, payload = self.worker.read()
        if kind == SCHEMA:
            self.schema = pa.ipc.read_schema(pa.py_buffer(payload))
            return self.schema
        return self._unexpected(kind, payload)

    def batches(self) -> Iterator[pa.RecordBatch]:
        assert self.schema is not None
        while True:
            kind, payload = self.worker.read()
            if kind == BATCH:
                yield pa.ipc.read_record_batch(pa.py_buffer(payload), self.schema)
            elif kind == END:
                self._complete = True
                return
            else:
                self._unexpected(kind, payload)

    def _unexpected(self, kind: int, payload: bytearray) -> Any:
        if kind == ERROR:
            self._complete = True
            problem = json.loads(payload)
            raise ERRORS_BY_CODE.get(problem.get("code"), EngineError)(str(problem.get("detail", "")))
        raise WorkerDied(f"unexpected frame {kind!r}")

    def translate(self, exc: BaseException) -> ColonnadeError:
        """The error for a failure that was not a stop: a dead worker says why it died."""
        if isinstance(exc, WorkerDied) and not self.worker.killed:
            return self.worker.diagnose()
        return EngineError(f"{self.pool.config.what} failed: {exc}")

    def kill(self) -> None:
        """Stop the query now (timeout, cancel, hang-up); safe from any thread, any time."""
        with self._lock:
            if not self._released:
                self.worker.kill()

    def release(self) -> None:
        """The query is over: a worker that finished its answer is reused, any other killed."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self.pool._give_back(self.worker, reusable=self._complete and not self.worker.killed)


# -- the child side -----------------------------------------------------------------------------


def _load(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _watch_parent() -> None:
    """Exit when the parent is gone (kill -9 included): an orphan must not run on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _pieces(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Slices of at most about MAX_FRAME_BYTES, so neither side holds a huge message; a single
    row past MAX_ROW_BYTES is refused here, before the parent holds any of it."""
    rows = batch.num_rows
    if rows == 0:
        yield batch
        return
    if batch.nbytes > MAX_FRAME_BYTES and rows > 1:
        rows = max(1, batch.num_rows * MAX_FRAME_BYTES // batch.nbytes)
    for start in range(0, batch.num_rows, rows):
        piece = batch.slice(start, rows) if rows < batch.num_rows else batch
        if piece.num_rows == 1 and piece.nbytes > MAX_ROW_BYTES:
            raise row_too_wide(piece.nbytes)
        yield piece


def _without_dictionaries(schema: pa.Schema) -> pa.Schema:
    """Dictionary columns decoded: a lone IPC batch message cannot carry its dictionaries."""
    if not any(pa.types.is_dictionary(f.type) for f in schema):
        return schema
    return pa.schema(
        [pa.field(f.name, f.type.value_type, f.nullable) if pa.types.is_dictionary(f.type) else f for f in schema]
    )


def _serve(
    run: Callable[[Any], Any], translate: Callable[[BaseException], ColonnadeError], fd_in: int, fd_out: int
) -> None:
    while True:
        try:
            (size,) = struct.unpack("!Q", _read_exact(fd_in, 8))
            request = pickle.loads(_read_exact(fd_in, size))
        except WorkerDied:
            return  # the parent closed our stdin: done
        try:
            schema, batches = run(request)
            plain = _without_dictionaries(schema)
            write_frame(fd_out, SCHEMA, plain.serialize())
            for batch in batches:
                if plain is not schema:
                    batch = batch.cast(plain)
                for piece in _pieces(batch):
                    write_frame(fd_out, BATCH, piece.serialize())
            write_frame(fd_out, END)
        except (BrokenPipeError, SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # a Polars panic is a BaseException
            write_frame(fd_out, ERROR, json.dumps(_problem(exc, translate)).encode())


def _problem(exc: BaseException, translate: Callable[[BaseException], ColonnadeError]) -> dict[str, str]:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ArrowMemoryError":
        error: ColonnadeError = ResourceExhausted("the query needs more memory than the worker may use")
    elif isinstance(exc, ColonnadeError):
        error = exc
    else:
        error = translate(exc)
    return {"code": error.code, "detail": error.detail}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="an engine worker; started by engine.backends.isolation")
    parser.add_argument("--run", required=True)
    parser.add_argument("--translate", required=True)
    parser.add_argument("--memory-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (args.memory_bytes, args.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort on out-of-memory dumps nothing
    # The protocol owns the original stdin/stdout; anything the engine prints goes to stderr.
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C on the terminal is the parent's to handle
    _watch_parent()
    run, translate = _load(args.run), _load(args.translate)
    write_frame(fd_out, READY)
    with contextlib.suppress(BrokenPipeError):
        _serve(run, translate, fd_in, fd_out)


if __name__ == "__main__":
    main()
