"""Polars backend: a fresh SQLContext per query over lazy scans of the tables it reads.

Polars' SQL can read any file by itself (``read_csv('/x')``) and has no switch to stop it, so
only validated ASTs reach it, and only the tables a query names are registered.
Polars has no parameter binding: parameters become typed literal nodes in the AST.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import polars as pl
import pyarrow as pa

from engine.backends.base import Backend, QueryControl, Started
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

_POLL_S = 0.002


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
    name = "polars"

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        reference = shape(prepared)
        # Only this query's tables, under their generated names: nothing else is visible.
        ctx = pl.SQLContext({snap.relation: scan(snap) for snap in prepared.tables.values()})
        frame = ctx.execute(polars_sql(prepared))
        schema = frame.collect_schema()  # resolves tables and columns: errors surface here
        arrow_schema = reference or regular_schema(pl.DataFrame(schema=schema).to_arrow().schema)
        return Started(arrow_schema, self._run(frame, control, batch_rows, reference))

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    @staticmethod
    def _run(
        frame: pl.LazyFrame, control: QueryControl, batch_rows: int, reference: pa.Schema | None
    ) -> Iterator[pa.RecordBatch]:
        # collect_batches cannot be stopped, so collect in the background and poll: a timeout
        # or hang-up then cancels the query. The result is held whole, then streamed.
        running = frame.collect(background=True)
        control.on_cancel(running.cancel)
        try:
            while (df := running.fetch()) is None:
                control.check()
                time.sleep(_POLL_S)
        except pl.exceptions.PanicException as exc:  # not an Exception: translate it here
            raise translate_error(exc) from None
        control.check()
        table = df.to_arrow()
        table = conform(table, reference) if reference else table.cast(regular_schema(table.schema))
        yield from table.to_batches(max_chunksize=batch_rows)


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
