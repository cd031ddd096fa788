"""DuckDB backend: one sandboxed in-process database, one cursor per query.

Each catalog table is a view over its files, re-created when the table's version changes. The
database is locked down before any query runs: external access off except the data and
external-table directories, replacement scans and extension autoloading off, configuration
locked so no query can loosen it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.backends.base import DEFAULT_BATCH_ROWS, Backend, Execution, QueryControl
from engine.catalog import TableSnapshot
from engine.errors import (
    ColonnadeError,
    ColumnNotFound,
    EngineError,
    QueryError,
    ResourceExhausted,
    SqlSyntaxError,
    StatementNotAllowed,
    TableNotFound,
)
from engine.sql import ValidatedQuery

KEEP_VIEW_VERSIONS = 8
VECTOR_ROWS = 2048  # DuckDB's STANDARD_VECTOR_SIZE


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_literal(value: Any) -> str:
    """A trusted configuration value (not client input) as a DuckDB literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote_str(str(k))}: {sql_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    return quote_str(str(value))


class DuckDBBackend(Backend):
    name = "duckdb"

    def __init__(
        self,
        allowed_dirs: Sequence[str],
        *,
        threads: int = 2,
        memory_limit: str = "2GB",
        temp_dir: str | Path | None = None,
        max_spill_bytes: int | None = None,
    ) -> None:
        config: dict[str, Any] = {"threads": threads, "memory_limit": memory_limit}
        self._con = duckdb.connect(config=config)
        dirs = list(allowed_dirs)
        if temp_dir is not None:
            try:
                Path(temp_dir).mkdir(parents=True, exist_ok=True)
            except OSError:  # a read-only data dir: keep DuckDB's default spill location
                temp_dir = None
        if temp_dir is not None:
            self._con.execute(f"SET temp_directory = {quote_str(str(temp_dir))}")
            dirs.append(str(temp_dir))
        if max_spill_bytes is not None:
            self._con.execute(f"SET max_temp_directory_size = '{max_spill_bytes // 1024**2}MiB'")
        for statement in (
            f"SET allowed_directories = {sql_literal(dirs)}",
            "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET allow_community_extensions = false",
            "SET python_enable_replacements = false",
            "SET lock_configuration = true",
        ):
            self._con.execute(statement)
        self._views: dict[str, list[str]] = {}  # table name -> its live per-version views, oldest first
        self._lock = threading.Lock()

    def execute(
        self,
        query: ValidatedQuery,
        params: Sequence[Any],
        tables: Mapping[str, TableSnapshot],
        control: QueryControl,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> Execution:
        views = self._views_for(tables.values())
        cursor = self._con.cursor()
        control.on_cancel(cursor.interrupt)
        try:
            relation = cursor.sql(query.sql("duckdb", physical=views), params=list(params) or None)
            if relation is None:  # not a query (cannot happen after validation)
                raise QueryError("the statement returned no result")
            # One DuckDB vector per batch: a batch of 64K wide rows would hold 64K x the row
            # width in memory at once; consumers regroup vectors without copying.
            reader = relation.to_arrow_reader(min(batch_rows, VECTOR_ROWS))
        except ColonnadeError:
            cursor.close()
            control.finish()
            raise
        except Exception as exc:
            cursor.close()
            control.finish()
            control.check()
            raise translate_error(exc) from None
        return Execution(reader.schema, iter(reader), control, translate_error, close=cursor.close)

    def close(self) -> None:
        self._con.close()

    # -- views -----------------------------------------------------------------------------

    def _views_for(self, snapshots: Iterable[TableSnapshot]) -> dict[str, str]:
        """A view per (table, version), created once: each query reads exactly the version it
        was validated against, and a name no query was validated for resolves to nothing."""
        names = {}
        with self._lock:
            for snap in snapshots:
                view = f"{snap.name}@{snap.fingerprint}"
                known = self._views.setdefault(snap.name, [])
                if view not in known:
                    self._con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {self._view_sql(snap)}")
                    known.append(view)
                    # Old versions stay a while for queries already bound to them.
                    for stale in known[:-KEEP_VIEW_VERSIONS]:
                        self._con.execute(f"DROP VIEW IF EXISTS {quote_ident(stale)}")
                    del known[:-KEEP_VIEW_VERSIONS]
                names[snap.name] = view
        return names

    def _view_sql(self, snap: TableSnapshot) -> str:
        types = self._duckdb_types(snap.schema)
        if not snap.files:  # an empty table: right columns, no rows
            cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(n)}" for n, t in types.items())
            return f"SELECT {cols} WHERE false"
        files = sql_literal(list(snap.files))
        if snap.format == "arrow":
            import pyarrow.dataset as ds

            hidden = f"__ipc_{snap.name}@{snap.fingerprint}"
            self._con.register(hidden, ds.dataset(list(snap.files), format="ipc"))
            return f"SELECT * FROM {quote_ident(hidden)}"
        if snap.format in ("delta", "parquet"):
            args = [files, "union_by_name = true"]
            if snap.partitions:
                hive = {p: types[p] for p in snap.partitions if p in types}
                args += ["hive_partitioning = true", f"hive_types = {sql_literal(hive)}"]
            else:
                args.append("hive_partitioning = false")
            source = f"read_parquet({', '.join(args)})"
        elif snap.format == "csv":
            options = {"hive_partitioning": bool(snap.partitions), **snap.options}
            source = f"read_csv({files}{''.join(f', {k} = {sql_literal(v)}' for k, v in options.items())})"
        elif snap.format == "ndjson":
            source = f"read_json({files}, format = 'newline_delimited')"
        else:
            raise EngineError(f"table {snap.name}: unsupported format {snap.format!r}")
        # Delta keeps the logical column order; hive columns would otherwise come last.
        if snap.format == "delta":
            return f"SELECT {', '.join(quote_ident(n) for n in types)} FROM {source}"
        return f"SELECT * FROM {source}"

    def _duckdb_types(self, schema: pa.Schema) -> dict[str, str]:
        cursor = self._con.cursor()
        try:
            relation = cursor.from_arrow(schema.empty_table())
            return {name: str(t) for name, t in zip(schema.names, relation.types, strict=True)}
        finally:
            cursor.close()


def translate_error(exc: BaseException) -> ColonnadeError:
    """Map a DuckDB exception to the Colonnade error a client should see."""
    # DuckDB appends the offending line and tuning advice for its own operators: keep the cause.
    message = str(exc).split("\n\n", 1)[0].strip()
    for prefix in (
        "Binder Error: ",
        "Catalog Error: ",
        "Parser Error: ",
        "Conversion Error: ",
        "Invalid Input Error: ",
        "Out of Range Error: ",
        "Permission Error: ",
    ):
        message = message.replace(prefix, "")
    if isinstance(exc, duckdb.PermissionException):
        return StatementNotAllowed(f"refused by the engine sandbox: {message}")
    if isinstance(exc, duckdb.ParserException):
        return SqlSyntaxError(message)
    if isinstance(exc, duckdb.BinderException) and "column" in message.lower() and "not found" in message.lower():
        return ColumnNotFound(message)
    if isinstance(exc, duckdb.CatalogException) and "Table with name" in message:
        return TableNotFound(message)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return ResourceExhausted(f"the query needs more memory than this server allows: {message}")
    if isinstance(
        exc,
        (
            duckdb.BinderException,
            duckdb.CatalogException,
            duckdb.ConversionException,
            duckdb.InvalidInputException,
            duckdb.OutOfRangeException,
            duckdb.NotImplementedException,
            duckdb.TypeMismatchException,
            duckdb.ConstraintException,
        ),
    ):
        return QueryError(message)
    return EngineError(f"DuckDB failed: {message}")
