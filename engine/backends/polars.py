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
from engine.prepared import PreparedQuery
from engine.sql import bind_literals
from engine.sql.confirm import confirm_relations, serializable

_POLL_S = 0.002


def polars_sql(prepared: PreparedQuery) -> str:
    """The SQL text Polars runs: DuckDB semantics kept where the two engines differ. DuckDB's
    parser confirms it reads exactly the query's relations (Polars' SQL can read files itself)."""
    query = prepared.query
    ast = bind_literals(prepared.ast, prepared.params) if prepared.params else prepared.ast.copy()
    ast = duckdb_semantics(ast)
    confirm_relations(serializable(ast).sql(dialect="duckdb", identify=True), prepared.relations, query.ctes)
    # Quote every identifier: Polars' parser takes words like TOP as keywords, and it matches
    # names case-sensitively whether quoted or not, so quoting changes nothing else.
    body = ast.sql(dialect="duckdb", identify=True)
    return f"{query.prefix} {body}" if query.prefix else body


def scan(snap: TableSnapshot) -> pl.LazyFrame:
    files = list(snap.files)
    if snap.format == "delta" and not files:
        return pl.from_arrow(snap.schema.empty_table()).lazy()
    if snap.format == "delta" and snap.root == snap.uri:  # the table's own directory
        return pl.scan_delta(snap.uri, version=snap.version)
    hive = bool(snap.partitions)
    # Polars infers hive columns as Int64/String; keep the types the catalog reports.
    types = pl.from_arrow(snap.schema.empty_table()).schema
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
    name = "polars"

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        # Only this query's tables, under their generated names: nothing else is visible.
        ctx = pl.SQLContext({snap.relation: scan(snap) for snap in prepared.tables.values()})
        frame = ctx.execute(polars_sql(prepared))
        schema = frame.collect_schema()  # resolves tables and columns: errors surface here
        arrow_schema = regular_schema(pl.DataFrame(schema=schema).to_arrow().schema)
        return Started(arrow_schema, self._run(frame, control, batch_rows))

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    @staticmethod
    def _run(frame: pl.LazyFrame, control: QueryControl, batch_rows: int) -> Iterator[pa.RecordBatch]:
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
        yield from table.cast(regular_schema(table.schema)).to_batches(max_chunksize=batch_rows)


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
