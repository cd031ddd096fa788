"""Polars backend: each query runs in a worker process (``engine.backends.isolation``), where a
timeout, a cancel or a hang-up can kill it, under an OS-enforced memory cap.

Polars' SQL can read any file by itself (``read_csv('/x')``) and has no switch to stop it, so
only validated ASTs reach it (rewritten to generated relation names, confirmed by DuckDB's
parser: ``polars_sql``), and only the tables a query names are registered, under those names.
Polars has no parameter binding: parameters become typed literal nodes in the AST. Results take
DuckDB's names and Arrow types (``reference``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl
import pyarrow as pa

from engine.backends.base import DEFAULT_BATCH_ROWS, Backend, QueryControl, Started
from engine.backends.isolation import WorkerConfig, WorkerPool
from engine.backends.polars_sql import polars_sql
from engine.backends.reference import conform, shape
from engine.backends.semantics import regular_schema
from engine.catalog import TableSnapshot
from engine.errors import (
    ColonnadeError,
    ColumnNotFound,
    EngineError,
    QueryError,
    TableNotFound,
    UnsupportedQuery,
)
from engine.prepared import PreparedQuery


def _empty(snap: TableSnapshot) -> pl.DataFrame:
    return pl.DataFrame(snap.schema.empty_table())


def scan(snap: TableSnapshot) -> pl.LazyFrame:
    files = list(snap.files)
    if snap.format == "delta" and not files:
        return _empty(snap).lazy()
    if snap.format == "delta" and snap.root == snap.uri:  # the table's own directory
        return pl.scan_delta(snap.uri, version=snap.version)
    hive = bool(snap.partitions)
    # Polars infers hive columns as Int64/String; keep the types the catalog reports.
    types = _empty(snap).schema
    hive_schema = {p: types[p] for p in snap.partitions if p in types} or None
    if snap.format == "delta":  # local copies of an object-store version's files (engine.filecache)
        frame = pl.scan_parquet(files, hive_partitioning=hive, hive_schema=hive_schema, missing_columns="insert")
        return frame.select(snap.schema.names)  # Delta's column order, partition columns included
    if snap.format == "parquet":
        return pl.scan_parquet(files, hive_partitioning=hive, hive_schema=hive_schema, missing_columns="insert")
    if snap.format == "arrow":
        return pl.scan_ipc(files, hive_partitioning=hive, hive_schema=hive_schema)
    if snap.format == "csv":
        return pl.scan_csv(files, **snap.options)
    if snap.format == "ndjson":
        return pl.scan_ndjson(files)
    raise EngineError(f"table {snap.name}: unsupported format {snap.format!r}")


class PolarsBackend(Backend):
    """Polars in worker processes: planning and execution run where they can be killed."""

    name = "polars"

    def __init__(self, *, threads: int = 2, memory_bytes: int = 2 * 1024**3, max_workers: int = 4) -> None:
        self.workers, self.worker_memory_bytes = worker_budget(memory_bytes, max_workers)
        self.pool = WorkerPool(
            WorkerConfig(
                run="engine.backends.polars:run_request",
                translate="engine.backends.polars:translate_error",
                memory_bytes=self.worker_memory_bytes,
                size=self.workers,
                recycle_bytes=self.worker_memory_bytes // 2,
                env=worker_env(threads),
                what="the Polars worker",
            )
        )

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        # The worker translates and plans the query itself: sqlglot takes seconds on a huge
        # query, and there it holds no lock of the server's and is stopped like the rest of it.
        request = {"prepared": prepared, "batch_rows": batch_rows}
        lease = self.pool.lease(control)
        control.on_cancel(lease.kill)
        try:
            schema = lease.start(request)
        except ColonnadeError:
            lease.release()
            raise
        except BaseException as exc:
            try:
                control.check()  # killed by a timeout or a cancel: say so
                raise lease.translate(exc) from None  # before release: a dead worker's stderr says why
            finally:
                lease.release()
        # A result dropped unread (a notebook) must not keep its worker busy: close on drop.
        return Started(schema, lease.batches(), lease.release, translate=lease.translate, close_on_drop=True)

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    def close(self) -> None:
        self.pool.close()


# A worker's own address space before any data (libraries, thread stacks, allocator arenas) is
# about 1 GB after a few queries, so below 2 GiB too little is left for the data (measured: TPC-H
# SF1 Q1 peaks at 1.2 GB of address space for 0.56 GB resident).
MIN_WORKER_BYTES = 2 * 1024**3


def worker_budget(memory_bytes: int, max_workers: int) -> tuple[int, int]:
    """(workers, RLIMIT_AS of each): together they stay inside ``memory_bytes`` and each gets at
    least MIN_WORKER_BYTES; a budget below that still gets one worker, of MIN_WORKER_BYTES."""
    workers = max(1, min(max_workers, memory_bytes // MIN_WORKER_BYTES))
    return workers, max(MIN_WORKER_BYTES, memory_bytes // workers)


def worker_env(threads: int) -> dict[str, str]:
    return {
        "POLARS_MAX_THREADS": str(max(1, threads)),  # read once, at import, in the worker
        # glibc reserves 64 MB of address space per thread arena; under RLIMIT_AS that is room
        # the query cannot use. Two arenas are plenty for the Python side of a worker.
        "MALLOC_ARENA_MAX": "2",
        # pyarrow's default mimalloc pool reserves 1 GiB of address space up front.
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }


def run_request(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """In the worker: translate and plan the query (tables and columns resolve here), then
    stream its batches under DuckDB's names and types."""
    prepared: PreparedQuery = request["prepared"]
    reference = shape(prepared)
    schema, batches = run_polars(
        polars_sql(prepared), prepared.by_relation, request.get("batch_rows", DEFAULT_BATCH_ROWS)
    )
    if reference is None:
        return schema, batches
    return reference, (conform(pa.Table.from_batches([b]), reference).to_batches()[0] for b in batches if b.num_rows)


def run_polars(
    sql: str, tables: Mapping[str, TableSnapshot], batch_rows: int = DEFAULT_BATCH_ROWS
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Polars itself, in this process (nothing here can be stopped from outside): ``tables``
    by the names the SQL reads them under."""
    ctx = pl.SQLContext({name: scan(snap) for name, snap in tables.items()})
    frame = ctx.execute(sql)
    schema = regular_schema(pl.DataFrame(schema=frame.collect_schema()).to_arrow().schema)

    def batches() -> Iterator[pa.RecordBatch]:
        # Streamed as the engine produces it (same total time as collect() on TPC-H SF1): a big
        # result never sits whole in the worker, and its first rows leave at once.
        for df in frame.collect_batches(chunk_size=batch_rows):
            table = df.to_arrow()
            yield from table.cast(regular_schema(table.schema)).to_batches(max_chunksize=batch_rows)

    return schema, batches()


def translate_error(exc: BaseException) -> ColonnadeError:
    message = str(exc).strip().split("\n\nResolved plan", 1)[0]
    if isinstance(exc, pl.exceptions.ColumnNotFoundError):
        return ColumnNotFound(message)
    if isinstance(exc, pl.exceptions.SQLSyntaxError):
        # The query parsed as DuckDB SQL before it got here: Polars' parser lacks the construct.
        return UnsupportedQuery(f"Polars cannot run this query: {message}")
    if isinstance(exc, pl.exceptions.SQLInterfaceError):
        if "not found" in message and "relation" in message:
            return TableNotFound(message)
        return UnsupportedQuery(f"Polars cannot run this query: {message}")
    if isinstance(
        exc,
        (
            pl.exceptions.InvalidOperationError,
            pl.exceptions.SchemaError,
            pl.exceptions.ComputeError,
            pl.exceptions.DuplicateError,
        ),
    ):
        return QueryError(message)
    if isinstance(exc, (pl.exceptions.StructFieldNotFoundError, pl.exceptions.SchemaFieldNotFoundError)):
        # DuckDB's binder accepted the query: Polars reads a name differently (e.g. JSON paths).
        return UnsupportedQuery(f"Polars cannot run this query: it finds no field {message}")
    if isinstance(exc, pl.exceptions.PolarsError):  # deterministic for this query: not the server's fault
        return QueryError(f"Polars cannot run this query: {message}")
    if isinstance(exc, pl.exceptions.PanicException):
        # Polars panics on some SQL it does not implement; the query, not the server, is at fault.
        return UnsupportedQuery(f"Polars cannot run this query: {message.splitlines()[0] if message else 'panic'}")
    return EngineError(f"Polars failed: {message}")
