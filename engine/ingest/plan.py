"""Schema policy: map the input's columns onto the table's, in types Delta can store.

An existing table's types win; an input column may only widen into them (no rounding, no
overflow), unless it is text that DuckDB parses into them. ``add-columns`` lets new columns in
and fills missing ones with NULL; ``strict`` refuses both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from engine.errors import IngestError, SchemaMismatch
from engine.ingest.scan import Scan
from engine.ingest.sources import Source
from engine.ingest.types import (
    TIMESTAMP_KINDS,
    Stored,
    check_names,
    delta_name,
    delta_schema,
    duck_types,
    parse_timestamp,
    store,
)
from engine.sqltext import quote_ident
from engine.storage import TableState

__all__ = ["Plan", "duck_types", "plan_columns", "widens"]


@dataclass(frozen=True)
class Plan:
    select: str  # the SELECT DuckDB copies: the input cast to the table's columns
    schema: pa.Schema  # the Delta schema after this commit
    changes_schema: bool  # new columns are added to an existing table


_SIGNED = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT"]
_INT_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19}
_ZONED = "TIMESTAMP WITH TIME ZONE"


def plan_columns(con: Any, scan: Scan, src: Source, target: TableState, evolution: str, table: str) -> Plan:
    """Map the input's columns onto the table's, in the types Delta stores (``types``), applying
    the schema-evolution policy."""
    if not scan.columns:
        raise IngestError("the input has no columns")
    check_names(scan.columns)
    # Delta matches names case-insensitively: an input column takes the table's spelling.
    spelling = {delta_name(f.name): f.name for f in target.schema} if target.schema is not None else {}
    incoming = {}
    for name, typ in scan.columns.items():
        spelled = spelling.get(delta_name(name), name)
        incoming[spelled] = replace(_stored(name, typ, scan), name=spelled)
    if not target.exists:
        select = ", ".join(s.expr for s in incoming.values())
        return Plan(f"SELECT {select} FROM {scan.sql}", _arrow_schema(con, incoming), False)
    assert target.schema is not None
    table_types = duck_types(target.schema)
    exprs, problems = _cast_to_table(incoming, table_types, src, evolution)
    extra = [n for n in incoming if n not in table_types]
    if extra and evolution == "strict":
        problems += [f"column {n!r} ({incoming[n].type}) is not in the table" for n in extra]
    if problems:
        hint = " (use --schema-evolution add-columns)" if extra or any("missing" in p for p in problems) else ""
        raise SchemaMismatch(f"table {table!r}: " + "; ".join(problems) + hint)
    exprs += [incoming[n].expr for n in extra]
    select = f"SELECT {', '.join(exprs)} FROM {scan.sql}"
    if not extra:
        return Plan(select, target.schema, False)
    added = _arrow_schema(con, {n: incoming[n] for n in extra})
    return Plan(select, pa.schema([*target.schema, *added]), True)


def _stored(name: str, typ: str, scan: Scan) -> Stored:
    kind = scan.text_timestamps.get(name)
    return parse_timestamp(name, kind) if kind else store(name, typ)


def _cast_to_table(
    incoming: dict[str, Stored], table_types: dict[str, str], src: Source, evolution: str
) -> tuple[list[str], list[str]]:
    """One SELECT expression per table column, and what stops the input from fitting."""
    exprs, problems = [], []
    for name, want in table_types.items():
        have = incoming.get(name)
        if have is None:
            if evolution == "strict":
                problems.append(f"column {name!r} ({want}) is missing from the input")
            exprs.append(f"CAST(NULL AS {want}) AS {quote_ident(name)}")
        elif have.type == want:
            exprs.append(have.expr)
        elif {have.type, want} == set(TIMESTAMP_KINDS):
            problems.append(_zone_clash(name, want))
        elif widens(have.type, want) or (not src.typed and not have.checked):  # text parses into the table's types
            exprs.append(f"CAST({have.value} AS {want}) AS {quote_ident(name)}")
        else:
            problems.append(
                f"column {name!r} is {want} in the table but {have.type} in the input (not a safe widening)"
            )
    return exprs, problems


def _zone_clash(name: str, want: str) -> str:
    if want == _ZONED:
        return f"column {name!r} is a timestamp with a time zone (UTC) in the table but has none in the input"
    return f"column {name!r} is a timestamp without a time zone (timestamp_ntz) in the table but has one in the input"


def widens(have: str, want: str) -> bool:
    """True when every ``have`` value converts to ``want`` exactly (no rounding, no overflow)."""
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
    if have == "DATE":
        return want == "TIMESTAMP"
    return False


def _decimal(t: str) -> tuple[int, int]:
    p, s = t[len("DECIMAL(") : -1].split(",")
    return int(p), int(s)


def _arrow_schema(con: Any, columns: dict[str, Stored]) -> pa.Schema:
    """The Delta schema of the stored columns, from their types alone: binding the scan again
    would sniff the files again (~0.08 s a bind for a CSV)."""
    empty = ", ".join(f"CAST(NULL AS {s.type}) AS {quote_ident(n)}" for n, s in columns.items())
    return delta_schema(con.sql(f"SELECT {empty} WHERE false").to_arrow_table().schema)
