"""Polars backend: a fresh SQLContext per query over lazy scans of the tables it reads.

Polars' SQL can read any file by itself (``read_csv('/x')``) and has no switch to stop it, so
only validated ASTs reach it, and only the tables a query names are registered.
Polars has no parameter binding: parameters become typed literal nodes in the AST.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from engine.backends.base import DEFAULT_BATCH_ROWS, Backend, Execution, QueryControl
from engine.backends.isolation import WorkerConfig, WorkerPool
from engine.backends.semantics import duckdb_semantics, regular_schema
from engine.catalog import TableSnapshot
from engine.errors import (
    ColonnadeError,
    ColumnNotFound,
    EngineError,
    QueryError,
    SqlSyntaxError,
    TableNotFound,
    UnsupportedQuery,
)
from engine.sql import ValidatedQuery, bind_literals


def polars_sql(query: ValidatedQuery, params: Sequence[Any]) -> str:
    """The SQL text Polars runs: DuckDB semantics kept where the two engines differ."""
    ast = duckdb_semantics(bind_literals(query.ast, params) if params else query.ast.copy())
    # Quote every identifier: Polars' parser takes words like TOP as keywords, and it matches
    # names case-sensitively whether quoted or not, so quoting changes nothing else.
    body = ast.sql(dialect="duckdb", identify=True)
    return f"{query.explain} {body}" if query.explain else body


def scan(snap: TableSnapshot) -> pl.LazyFrame:
    files = list(snap.files)
    if snap.format == "delta":
        if not files:
            return pl.from_arrow(snap.schema.empty_table()).lazy()
        return pl.scan_delta(snap.uri, version=snap.version)
    hive = bool(snap.partitions)
    # Polars infers hive columns as Int64/String; keep the types the catalog reports.
    types = pl.from_arrow(snap.schema.empty_table()).schema
    hive_schema = {p: types[p] for p in snap.partitions if p in types} or None
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
    """Polars in worker processes (``engine.backends.isolation``): planning and execution run
    where a timeout, a cancel or a hang-up can kill them, under an OS-enforced memory cap."""

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

    def execute(
        self,
        query: ValidatedQuery,
        params: Sequence[Any],
        tables: Mapping[str, TableSnapshot],
        control: QueryControl,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> Execution:
        try:
            # The worker translates the AST itself: sqlglot takes seconds on a huge query, and
            # there it holds no lock of the server's and is stopped like the rest of the query.
            request = {"query": query, "params": list(params), "tables": dict(tables), "batch_rows": batch_rows}
            lease = self.pool.lease(control)
        except BaseException:
            control.finish()
            raise
        control.on_cancel(lease.kill)
        try:
            schema = lease.start(request)
        except ColonnadeError:
            lease.release()
            control.finish()
            raise
        except BaseException as exc:
            try:
                control.check()  # killed by a timeout or a cancel: say so
                raise lease.translate(exc) from None  # before release: a dead worker's stderr says why
            finally:
                lease.release()
                control.finish()
        execution = Execution(schema, lease.batches(), control, lease.translate, close=lease.release)
        # A result dropped unread (a notebook) must not keep its worker busy for good.
        weakref.finalize(execution, lease.release)
        return execution

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
    stream its batches."""
    sql = polars_sql(request["query"], request["params"])
    return run_polars(sql, request["tables"], request.get("batch_rows", DEFAULT_BATCH_ROWS))


def run_polars(
    sql: str, tables: Mapping[str, TableSnapshot], batch_rows: int = DEFAULT_BATCH_ROWS
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Polars itself, in this process: nothing here can be stopped from outside."""
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
        return SqlSyntaxError(message)
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
    if isinstance(exc, pl.exceptions.PanicException):
        # Polars panics on some SQL it does not implement; the query, not the server, is at fault.
        return UnsupportedQuery(f"Polars cannot run this query: {message.splitlines()[0] if message else 'panic'}")
    return EngineError(f"Polars failed: {message}")
