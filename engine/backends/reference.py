"""The shape DuckDB gives a query's result — column names and Arrow types — so every engine
hands clients the same schema.

DuckDB's binder names unaliased expressions (``count_star()``, ``sum(n_nationkey)``) and types
them (an integer sum is HUGEINT, which reaches Arrow as DECIMAL(38, 0)); other engines name and
type them their own way. The reference schema comes from binding the query in an in-memory
DuckDB holding empty tables with each snapshot's schema: nothing runs and no file is read, so
it costs a couple of milliseconds. ``conform`` then renames and casts another engine's result to
it; a value that does not fit is an error, never a silently different answer.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from engine.catalog import TableSnapshot
from engine.errors import UnsupportedQuery
from engine.prepared import PreparedQuery
from engine.sqltext import DUCKDB_LOCKDOWN, arrow_type_of


def _key(snap: TableSnapshot) -> str:
    """One table version: its location and fingerprint (names repeat across data directories)."""
    return hashlib.sha1(f"{snap.uri}\0{snap.fingerprint}".encode()).hexdigest()[:16]


class Memo:
    """The last ``size`` translations, keyed by query text, parameters and table versions: a
    dashboard repeats its queries, and qualifying and typing one costs 10-100 ms."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str, params: Sequence[Any], tables: Mapping[str, TableSnapshot], *extra: Any) -> tuple:
        versions = tuple(sorted((name, snap.uri, snap.fingerprint) for name, snap in tables.items()))
        return (text, tuple((type(p).__name__, p) for p in params), versions, *extra)

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # errors are not remembered: they are cheap to reach again
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_MEMO = Memo()
KEEP_VERSIONS = 16


class _Binder:
    """One locked-down in-memory DuckDB whose tables are empty copies of the snapshots' schemas."""

    def __init__(self) -> None:
        self._con = duckdb.connect(config={"threads": 1})
        for statement in DUCKDB_LOCKDOWN:
            self._con.execute(statement)
        self._tables: dict[str, list[str]] = {}  # catalog name -> its empty tables, oldest first
        self._lock = threading.Lock()

    def table(self, snap: TableSnapshot) -> str:
        """An empty table named like the snapshot's relation (its name, location and version)."""
        name = snap.relation
        with self._lock:
            versions = self._tables.setdefault(snap.name, [])
            if name not in versions:
                self._con.register("__schema", snap.schema.empty_table())
                self._con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM __schema')
                self._con.unregister("__schema")
                versions.append(name)
                for stale in versions[:-KEEP_VERSIONS]:  # every ingest makes a version: keep a few
                    self._con.execute(f'DROP TABLE IF EXISTS "{stale}"')
                del versions[:-KEEP_VERSIONS]
        return name

    def bind(self, text: str, params: Sequence[Any]) -> tuple[list[str], list[str]]:
        cursor = self._con.cursor()
        try:
            relation = cursor.sql(text, params=list(params) or None)
            return list(relation.columns), [str(t) for t in relation.types]
        finally:
            cursor.close()


@functools.cache
def _binder() -> _Binder:
    return _Binder()


def reference_schema(prepared: PreparedQuery) -> pa.Schema | None:
    """The schema the DuckDB engine gives the query: names and Arrow types (None for EXPLAIN,
    whose plan is each engine's own). A query DuckDB rejects raises DuckDB's error."""
    if prepared.query.explain:
        return None
    return _MEMO.get(Memo.key(prepared.sql, prepared.params, prepared.tables), lambda: _bind(prepared))


def _bind(prepared: PreparedQuery) -> pa.Schema:
    binder = _binder()
    for snap in prepared.tables.values():
        binder.table(snap)
    names, types = binder.bind(prepared.sql, prepared.params)
    return pa.schema([pa.field(n, arrow_type_of(t)) for n, t in zip(names, types, strict=True)])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s names and types (an error if a value does not fit)."""
    if table.num_columns != schema.__len__():
        raise UnsupportedQuery(
            f"this engine's result has {table.num_columns} columns where DuckDB's has {len(schema)}: "
            "run the query on DuckDB"
        )
    columns = []
    for column, field in zip(table.columns, schema, strict=True):
        if column.type == field.type:
            columns.append(column)
            continue
        if pa.types.is_null(field.type) and column.null_count == len(column):
            columns.append(pa.nulls(len(column)))
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UnsupportedQuery(
                f"column {field.name!r}: this engine computes {column.type} where DuckDB gives {field.type} "
                f"({str(exc).splitlines()[0]}): run the query on DuckDB"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def shape(prepared: PreparedQuery) -> pa.Schema | None:
    """``reference_schema``, with a query DuckDB rejects failing as it does on the DuckDB engine."""
    from engine.backends.duckdb import translate_error

    try:
        return reference_schema(prepared)
    except duckdb.Error as exc:
        raise translate_error(exc) from None
