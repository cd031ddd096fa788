"""DuckDB backend: one sandboxed in-process database, one cursor per query.

Each table version is a view over its files, named by the snapshot's generated relation name.
The database is locked down before any query runs: it may read the tables' directories and
nothing else, replacement scans and extension autoloading are off, and the configuration is
locked so no query can loosen it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb

from engine.backends.base import Backend, QueryControl, Started
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
from engine.prepared import PreparedQuery
from engine.sqltext import DUCKDB_LOCKDOWN, duckdb_types, quote_ident, quote_str, sql_literal

KEEP_VIEW_VERSIONS = 8
VECTOR_ROWS = 2048  # DuckDB's STANDARD_VECTOR_SIZE


class _Sandbox:
    """One locked-down in-process DuckDB database that may read exactly ``dirs``.

    External access is off except ``dirs`` (the directories of the tables' files; never the
    data directory itself, whose ``.colonnade`` holds the token store and other state),
    replacement scans and extension autoloading are off, and the configuration is locked so no
    query can loosen it. Views over table versions are created here as queries need them.
    """

    def __init__(self, dirs: frozenset[str], config: dict[str, Any], temp_dir: Path | None, max_spill: int | None):
        self.dirs = dirs
        self.con = duckdb.connect(config=config)
        statements = []
        if temp_dir is not None:  # DuckDB may always use its own temp directory; queries never name it
            statements.append(f"SET temp_directory = {quote_str(str(temp_dir))}")
        if max_spill is not None:
            statements.append(f"SET max_temp_directory_size = '{max_spill // 1024**2}MiB'")
        statements += [f"SET allowed_directories = {sql_literal(sorted(dirs))}", *DUCKDB_LOCKDOWN]
        for statement in statements:
            self.con.execute(statement)
        self.views: dict[str, list[str]] = {}  # table name -> its live per-version views, oldest first


class DuckDBBackend(Backend):
    name = "duckdb"

    def __init__(
        self,
        table_dirs: Callable[[], Iterable[str]] = list,
        *,
        threads: int = 2,
        memory_limit: str = "2GB",
        temp_dir: str | Path | None = None,
        max_spill_bytes: int | None = None,
    ) -> None:
        self._config: dict[str, Any] = {"threads": threads, "memory_limit": memory_limit}
        self._temp_dir: Path | None = None
        if temp_dir is not None:
            try:
                Path(temp_dir).mkdir(parents=True, exist_ok=True)
                self._temp_dir = Path(temp_dir)
            except OSError:  # a read-only data dir: keep DuckDB's default spill location
                pass
        self._max_spill = max_spill_bytes
        self._table_dirs = table_dirs
        self._lock = threading.Lock()
        self._sandbox = self._new_sandbox(set())

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        con = self._views_for(prepared.tables.values())
        cursor = con.cursor()
        control.on_cancel(cursor.interrupt)
        try:
            relation = cursor.sql(prepared.sql, params=prepared.params or None)
            if relation is None:  # not a query (cannot happen after validation)
                raise QueryError("the statement returned no result")
            # One DuckDB vector per batch: a batch of 64K wide rows would hold 64K x the row
            # width in memory at once; consumers regroup vectors without copying.
            reader = relation.to_arrow_reader(min(batch_rows, VECTOR_ROWS))
        except BaseException:
            cursor.close()
            raise
        return Started(reader.schema, iter(reader), cursor.close)

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    def close(self) -> None:
        self._sandbox.con.close()

    # -- views -----------------------------------------------------------------------------

    def _views_for(self, snapshots: Iterable[TableSnapshot]) -> duckdb.DuckDBPyConnection:
        """The sandbox holding a view per (table, version) of ``snapshots``, each created once
        under the snapshot's generated relation name: each query reads exactly the version it
        was prepared against. A table whose directory the sandbox may not read yet (a table
        created since) gets a new sandbox that may; queries running on the old one finish there."""
        with self._lock:
            snapshots = list(snapshots)
            needed = {snap.root for snap in snapshots if snap.files}
            if not needed <= self._sandbox.dirs:
                self._sandbox = self._new_sandbox(needed)
            sandbox = self._sandbox
            for snap in snapshots:
                known = sandbox.views.setdefault(snap.name, [])
                if snap.relation not in known:
                    sandbox.con.execute(
                        f"CREATE OR REPLACE VIEW {quote_ident(snap.relation)} AS {self._view_sql(sandbox, snap)}"
                    )
                    known.append(snap.relation)
                    # Old versions stay a while for queries already bound to them.
                    for stale in known[:-KEEP_VIEW_VERSIONS]:
                        sandbox.con.execute(f"DROP VIEW IF EXISTS {quote_ident(stale)}")
                    del known[:-KEEP_VIEW_VERSIONS]
            return sandbox.con

    def _new_sandbox(self, needed: set[str]) -> _Sandbox:
        """A sandbox for every table directory that exists now (so the next new table, not the
        next query, is what makes another one), plus ``needed``."""
        dirs = frozenset({*self._table_dirs(), *needed})
        return _Sandbox(dirs, self._config, self._temp_dir, self._max_spill)

    def _view_sql(self, sandbox: _Sandbox, snap: TableSnapshot) -> str:
        types = duckdb_types(snap.schema)
        if not snap.files:  # an empty table: right columns, no rows
            cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(n)}" for n, t in types.items())
            return f"SELECT {cols} WHERE false"
        files = sql_literal(list(snap.files))
        if snap.format == "arrow":
            import pyarrow.dataset as ds

            hidden = f"ipc_{snap.relation}"
            sandbox.con.register(hidden, ds.dataset(list(snap.files), format="ipc"))
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
