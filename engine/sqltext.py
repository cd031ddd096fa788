"""SQL text Colonnade writes itself, from trusted values (table and column names, paths,
settings; never client input, which only ever reaches an engine through a parsed AST or as a
bound parameter): quoted identifiers and strings, literals, and DuckDB's name for an Arrow type
and back (DuckDB's own mappings, so the two never disagree)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from sqlglot import exp

_con = duckdb.connect(config={"threads": 1})

# The last statements of every DuckDB connection Colonnade opens: no files (the engine's sandbox
# allows its table directories first), no extensions, no Python replacement scans, no SET after.
DUCKDB_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """A name as DuckDB matches it (and sqlglot's DuckDB dialect): ASCII letters lowered only."""
    return name.translate(_ASCII_LOWER)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_literal(value: Any) -> str:
    """A trusted value (a setting, a path list) as a DuckDB literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote_str(str(k))}: {sql_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    return quote_str(str(value))


@functools.lru_cache(maxsize=1024)
def duckdb_type_name(arrow_type: pa.DataType) -> str:
    cursor = _con.cursor()
    try:
        # A reader, not an empty table: DuckDB imports pandas (0.3 s) to rule out a DataFrame
        # when handed a pyarrow Table, in every process that names a type.
        empty = pa.RecordBatchReader.from_batches(pa.schema([("x", arrow_type)]), [])
        return str(cursor.from_arrow(empty).types[0])
    finally:
        cursor.close()


@functools.lru_cache(maxsize=1024)
def arrow_type_of(duckdb_type: str) -> pa.DataType:
    """The Arrow type DuckDB hands out for one of its types (HUGEINT → decimal128(38, 0) …);
    ``duckdb_type`` is a name from DuckDB's own binder, never client text."""
    cursor = _con.cursor()  # a connection per call cost ~15 ms: a new in-memory database each
    try:
        return cursor.sql(f"SELECT CAST(NULL AS {duckdb_type}) AS v").to_arrow_table().schema.field(0).type
    finally:
        cursor.close()


def duckdb_types(schema: pa.Schema) -> dict[str, str]:
    """Column → DuckDB type name, as DuckDB reads a table of ``schema``."""
    return {field.name: duckdb_type_name(field.type) for field in schema}


def sql_type(arrow_type: pa.DataType) -> exp.DataType:
    from sqlglot import exp  # here: `colonnade ingest` never parses SQL and need not load the parser

    return exp.DataType.build(duckdb_type_name(arrow_type), dialect="duckdb")
