"""Arrow types ↔ SQL types, using DuckDB's own mapping so the two never disagree."""

from __future__ import annotations

import functools

import duckdb
import pyarrow as pa
from sqlglot import exp

_con = duckdb.connect(config={"threads": 1})


@functools.lru_cache(maxsize=1024)
def duckdb_type_name(arrow_type: pa.DataType) -> str:
    cursor = _con.cursor()
    try:
        return str(cursor.from_arrow(pa.schema([("x", arrow_type)]).empty_table()).types[0])
    finally:
        cursor.close()


def sql_type(arrow_type: pa.DataType) -> exp.DataType:
    return exp.DataType.build(duckdb_type_name(arrow_type), dialect="duckdb")
