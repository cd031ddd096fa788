"""Schema policy: map the input's columns onto the table's, in types Delta can store.

An existing table's types win; an input column may only widen into them (no rounding, no
overflow), unless it is text that DuckDB parses into them. ``add-columns`` lets new columns in
and fills missing ones with NULL; ``strict`` refuses both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from engine.errors import IngestError, SchemaMismatch
from engine.ingest.duck import engine_error, ident
from engine.ingest.sources import Source
from engine.storage import TableState


@dataclass(frozen=True)
class Plan:
    select: str  # the SELECT DuckDB copies: the input cast to the table's columns
    schema: pa.Schema  # the Delta schema after this commit
    changes_schema: bool  # new columns are added to an existing table


_SIGNED = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT"]
_UNSIGNED = {"UTINYINT": "SMALLINT", "USMALLINT": "INTEGER", "UINTEGER": "BIGINT"}  # Delta has no unsigned
_INT_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19}
_TIMESTAMPS = ("TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")  # Delta stores microseconds


def plan_columns(con: Any, scan: str, src: Source, target: TableState, evolution: str, table: str) -> Plan:
    """Map the input's columns onto the table's, applying the schema-evolution policy."""
    incoming = _incoming(con, scan, src)
    if not target.exists:
        select = ", ".join(_normalise(name, typ) for name, typ in incoming.items())
        return Plan(f"SELECT {select} FROM {scan}", _arrow_schema(con, select, incoming, scan), False)
    assert target.schema is not None
    table_types = duck_types(con, target.schema)
    exprs, problems = _cast_to_table(incoming, table_types, src, evolution)
    extra = [n for n in incoming if n not in table_types]
    if extra and evolution == "strict":
        problems += [f"column {n!r} ({incoming[n]}) is not in the table" for n in extra]
    if problems:
        hint = " (use --schema-evolution add-columns)" if extra or any("missing" in p for p in problems) else ""
        raise SchemaMismatch(f"table {table!r}: " + "; ".join(problems) + hint)
    exprs += [_normalise(n, incoming[n]) for n in extra]
    select = f"SELECT {', '.join(exprs)} FROM {scan}"
    if not extra:
        return Plan(select, target.schema, False)
    added = _arrow_schema(con, ", ".join(_normalise(n, incoming[n]) for n in extra), incoming, scan)
    schema = pa.schema([*target.schema, *(f.with_nullable(True) for f in added)])
    return Plan(select, schema, True)


def _incoming(con: Any, scan: str, src: Source) -> dict[str, str]:
    """The input's columns and their DuckDB types, as DuckDB reads them."""
    try:
        rel = con.sql(f"SELECT * FROM {scan}")
        incoming = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    except Exception as exc:
        raise engine_error(exc, src) from None
    if not incoming:
        raise IngestError("the input has no columns")
    return incoming


def _cast_to_table(
    incoming: dict[str, str], table_types: dict[str, str], src: Source, evolution: str
) -> tuple[list[str], list[str]]:
    """One SELECT expression per table column, and what stops the input from fitting."""
    exprs, problems = [], []
    for name, want in table_types.items():
        have = incoming.get(name)
        if have is None:
            if evolution == "strict":
                problems.append(f"column {name!r} ({want}) is missing from the input")
            exprs.append(f"CAST(NULL AS {want}) AS {ident(name)}")
        elif have == want:
            exprs.append(ident(name))
        elif not src.typed or widens(have, want):  # text inputs parse into the table's types
            exprs.append(f"CAST({ident(name)} AS {want}) AS {ident(name)}")
        else:
            problems.append(f"column {name!r} is {want} in the table but {have} in the input (not a safe widening)")
    return exprs, problems


def widens(have: str, want: str) -> bool:
    """True when every ``have`` value converts to ``want`` exactly (no rounding, no overflow)."""
    if have in _UNSIGNED:
        have = _UNSIGNED[have]
    if have in _SIGNED:
        if want in _SIGNED:
            return _SIGNED.index(have) <= _SIGNED.index(want)
        if want == "DOUBLE":
            return have != "BIGINT"  # doubles hold 53-bit integers exactly
        if want == "FLOAT":
            return have in ("TINYINT", "SMALLINT")
        if want.startswith("DECIMAL("):
            p, s = _decimal(want)
            return p - s >= _INT_DIGITS[have]
        return False
    if have == "FLOAT":
        return want == "DOUBLE"
    if have.startswith("DECIMAL(") and want.startswith("DECIMAL("):
        (p1, s1), (p2, s2) = _decimal(have), _decimal(want)
        return s2 >= s1 and p2 - s2 >= p1 - s1
    if have in _TIMESTAMPS[:2]:
        return want == "TIMESTAMP"
    if have == "DATE":
        return want == "TIMESTAMP"
    return have in ("VARCHAR", "BLOB") and want == have


def _decimal(t: str) -> tuple[int, int]:
    p, s = t[len("DECIMAL(") : -1].split(",")
    return int(p), int(s)


def _normalise(name: str, typ: str) -> str:
    """Columns of a new table, in types Delta can store."""
    if typ in _UNSIGNED:
        return f"CAST({ident(name)} AS {_UNSIGNED[typ]}) AS {ident(name)}"
    if typ in _TIMESTAMPS:
        return f"CAST({ident(name)} AS TIMESTAMP) AS {ident(name)}"
    return ident(name)


def duck_types(con: Any, schema: pa.Schema) -> dict[str, str]:
    """The table's Arrow schema in DuckDB's type names (DuckDB does the mapping itself)."""
    empty = schema.empty_table()
    rel = con.from_arrow(empty)
    return dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))


def _arrow_schema(con: Any, select: str, incoming: dict[str, str], scan: str) -> pa.Schema:
    """The Arrow schema of ``SELECT select`` over the input, from its column types alone: binding
    the scan again would sniff the files again (~0.08 s a bind for a CSV)."""
    empty = "(SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {ident(n)}" for n, t in incoming.items()) + " WHERE false)"
    try:
        schema = con.sql(f"SELECT {select} FROM {empty}").to_arrow_table().schema
    except Exception:  # a type whose name does not parse back: ask the input itself
        schema = con.sql(f"SELECT {select} FROM {scan} LIMIT 0").to_arrow_table().schema
    fields = [pa.field(f.name, _plain(f.type), True) for f in schema]
    return pa.schema(fields)


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t
