"""Arrow ⇄ Delta: how each input column type is stored in a Delta table — the one table.

Every input reaches the table through DuckDB (files through its readers, in-memory data as
Arrow), so the rules are applied twice, always from here: ``check_arrow`` refuses, before
anything is read, the Arrow types Delta cannot hold (and widens the two DuckDB cannot scan), and
``store`` maps each column's DuckDB type onto the Delta type it is stored as, with the SQL that
converts it. A conversion that could lose a value (an unsigned 64-bit integer past the signed
range, a nanosecond timestamp) carries a check that refuses the ingest at the first such value,
so nothing is stored rounded or wrapped. ``TYPE_TABLE`` is the documented table (README
"Types"); ``tests/test_types.py`` round-trips every row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from engine.errors import SchemaMismatch, UnsupportedType
from engine.sqltext import duckdb_type_name, quote_ident, quote_str


@dataclass(frozen=True)
class TypeRule:
    """One row of the table: an input type, the Delta type it is stored as, and how."""

    arrow: str
    delta: str  # the Delta type, or "refused"
    how: str


TYPE_TABLE: tuple[TypeRule, ...] = (
    TypeRule("bool", "boolean", "kept"),
    TypeRule("int8, int16, int32, int64", "byte, short, integer, long", "kept"),
    TypeRule("uint8, uint16, uint32", "short, integer, long", "widened to the next signed width (lossless)"),
    TypeRule("uint64", "long", "kept when every value fits a long; a value above 2^63-1 refuses the ingest"),
    TypeRule("float16", "float", "widened (lossless)"),
    TypeRule("float32, float64", "float, double", "kept (NaN and ±inf too)"),
    TypeRule("decimal32/64/128/256(p ≤ 38, s)", "decimal(p, s)", "kept"),
    TypeRule("decimal256(p > 38, s)", "refused", "Delta decimals hold at most 38 digits"),
    TypeRule("date32, date64", "date", "kept"),
    TypeRule("time32, time64", "string", "ISO 8601 text, e.g. 10:30:00.5 (Delta has no time type)"),
    TypeRule("timestamp(s, ms, us) without zone", "timestamp_ntz", "kept, as microseconds"),
    TypeRule("timestamp(ns) without zone", "timestamp_ntz", "kept when whole microseconds; finer values refused"),
    TypeRule("timestamp(s, ms, us) with any zone", "timestamp", "the same instant, in UTC"),
    TypeRule("timestamp(ns) with any zone", "timestamp", "the same instant in UTC; sub-microsecond values refused"),
    TypeRule("string, large_string, string_view", "string", "kept"),
    TypeRule("binary, large_binary, binary_view, fixed_size_binary", "binary", "kept"),
    TypeRule("list, large_list, list_view, fixed_size_list of T", "array of T", "elements by these rules"),
    TypeRule("struct", "struct", "fields by these rules"),
    TypeRule("map<K, V>", "map<K, V>", "keys and values by these rules"),
    TypeRule("dictionary<V>", "V", "decoded"),
    TypeRule("null (an all-null column)", "string", "all null"),
    TypeRule("uuid (extension)", "string", "canonical text"),
    TypeRule("duration, interval", "refused", "Delta has no interval type: convert to a number first"),
    TypeRule("union", "refused", "Delta has no union type"),
    TypeRule(
        "CSV, NDJSON text",
        "as DuckDB infers it",
        "then these rules; a JSON field mixing types is a string of plain values",
    ),
)

_MAX_DECIMAL_DIGITS = 38

# DuckDB type id → the DuckDB type it is stored as (Delta reads it back as the type in the table).
_KEPT = {
    "boolean": "BOOLEAN",
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "date": "DATE",
    "varchar": "VARCHAR",
    "blob": "BLOB",
    "timestamp": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}
_CONVERTED = {
    "utinyint": "SMALLINT",
    "usmallint": "INTEGER",
    "uinteger": "BIGINT",
    "timestamp_s": "TIMESTAMP",
    "timestamp_ms": "TIMESTAMP",
    "time": "VARCHAR",
    "time_ns": "VARCHAR",
    "time with time zone": "VARCHAR",
    "uuid": "VARCHAR",
    "enum": "VARCHAR",
    "null": "VARCHAR",
}
# Conversions that can lose a value: checked row by row, and refused at the first loss.
_CHECKED = {
    "ubigint": ("BIGINT", "a Delta long holds at most 9223372036854775807 (Delta has no unsigned types)"),
    "timestamp_ns": ("TIMESTAMP", "Delta timestamps hold microseconds; round the column first"),
    "timestamptz_ns": ("TIMESTAMP WITH TIME ZONE", "Delta timestamps hold microseconds; round the column first"),
    "hugeint": ("DECIMAL(38,0)", "a Delta decimal holds at most 38 digits"),
    "uhugeint": ("DECIMAL(38,0)", "a Delta decimal holds at most 38 digits"),
}
_REFUSED = {
    "interval": "Delta has no interval type: convert it to a number (e.g. microseconds) first",
    "union": "Delta has no union type",
    "bit": "Delta has no bit-string type",
    "bignum": "Delta decimals hold at most 38 digits",
}


@dataclass(frozen=True)
class Stored:
    """How one input column is stored: the Delta-storable DuckDB type and the SQL value."""

    name: str
    type: str  # DuckDB's canonical name of the stored type
    value: str  # the SQL expression of the stored value
    checked: bool = False  # the expression refuses values that would not convert exactly

    @property
    def expr(self) -> str:
        """The value as a SELECT item named after its column."""
        return f"{self.value} AS {quote_ident(self.name)}"


def stored_type(duck_type: Any) -> tuple[str, str | None]:
    """(the DuckDB type ``duck_type`` is stored as, the reason a value may not convert or None).
    Raises ``UnsupportedType`` (without a column name; ``store`` adds it) for a type Delta
    cannot hold. ``duck_type`` is a DuckDB type object or its SQL name."""
    import duckdb

    t = duckdb.sqltype(duck_type) if isinstance(duck_type, str) else duck_type
    kind = t.id
    if kind == "varchar" and str(t) == "JSON":
        return "VARCHAR", None  # a JSON value stored as its text; NDJSON never reaches here with one
    if kind in _KEPT:
        return _KEPT[kind], None
    if kind in _CONVERTED:
        return _CONVERTED[kind], None
    if kind in _CHECKED:
        return _CHECKED[kind]
    if kind == "decimal":
        return str(t), None
    if kind in ("list", "array"):
        child, why = stored_type(t.children[0][1])
        return f"{child}[]", why
    if kind == "struct":
        fields = [(name, *stored_type(child)) for name, child in t.children]
        why = next((w for _, _, w in fields if w), None)
        return "STRUCT(" + ", ".join(f"{quote_ident(n)} {typ}" for n, typ, _ in fields) + ")", why
    if kind == "map":
        (key, key_why), (value, value_why) = (stored_type(c) for _, c in t.children)
        return f"MAP({key}, {value})", key_why or value_why
    raise UnsupportedType(_REFUSED.get(kind, f"Delta has no {t!s} type"))


def store(name: str, duck_type: Any) -> Stored:
    """The column ``name`` of DuckDB type ``duck_type`` as it is stored in a Delta table."""
    try:
        target, why = stored_type(duck_type)
    except UnsupportedType as exc:
        raise UnsupportedType(f"column {name!r} is {duck_type}: {exc.detail}; nothing was written") from None
    col = quote_ident(name)
    if target == str(duck_type):
        return Stored(name, target, col)
    if why is None:
        return Stored(name, target, f"CAST({col} AS {target})")
    # Convert there and back: anything that does not come back equal would be stored changed.
    # TRY_CAST makes an out-of-range value NULL (so: different) instead of DuckDB's own error.
    message = f"column {name!r} ({duck_type}): value "
    check = f"TRY_CAST(TRY_CAST({col} AS {target}) AS {duck_type}) IS DISTINCT FROM {col}"
    fail = f"error({quote_str(message)} || CAST({col} AS VARCHAR) || {quote_str(' cannot be stored: ' + why)})"
    return Stored(name, target, f"CASE WHEN {check} THEN {fail} ELSE CAST({col} AS {target}) END", True)


# -- timestamps written as text (CSV, NDJSON) ----------------------------------------------

TIMESTAMP_KINDS = {"TIMESTAMP": "timestamp_ntz", "TIMESTAMP WITH TIME ZONE": "timestamp"}
# Text that names a zone after its time: 10:00Z, 10:00:00+02:00, 10:00:00.5 -0700, 10:00 UTC,
# 10:00 Europe/Paris. DuckDB's naive TIMESTAMP parse silently drops all of these.
_ZONED_TEXT = "'[0-9]:[0-9][0-9]([.,][0-9]*)?[ ]*[A-Za-z+-]'"


def zone_mismatch(value: str, kind: str) -> str:
    """SQL: true when the text ``value`` does not match the column's kind — a zone on a value
    for a naive column, or none on a value for a zoned one (NULLs match either)."""
    zoned = f"regexp_matches({value}, {_ZONED_TEXT})"
    return zoned if kind == "TIMESTAMP" else f"NOT {zoned}"


def zone_reason(name: str, kind: str) -> str:
    """Why a value was refused by ``zone_mismatch``: the text that follows the value."""
    if kind == "TIMESTAMP":
        return (
            f"has a time zone, but the timestamps of column {name!r} have none (timestamp_ntz): "
            "a column cannot mix zone-aware and naive timestamps"
        )
    return (
        f"has no time zone, but the timestamps of column {name!r} have one (stored in UTC): "
        "a column cannot mix zone-aware and naive timestamps (add the offset, e.g. Z)"
    )


def parse_timestamp(name: str, kind: str) -> Stored:
    """Text column ``name`` parsed into ``kind`` (TIMESTAMP or TIMESTAMP WITH TIME ZONE), refusing
    the first value whose zone (or lack of one) does not match the column."""
    col = quote_ident(name)
    target = "TIMESTAMPTZ" if kind != "TIMESTAMP" else "TIMESTAMP"
    fail = f"error({quote_str('timestamp ')} || {col} || {quote_str(' ' + zone_reason(name, kind))})"
    return Stored(
        name, kind, f"CASE WHEN {zone_mismatch(col, kind)} THEN {fail} ELSE CAST({col} AS {target}) END", True
    )


def duck_types(schema: pa.Schema) -> dict[str, str]:
    """An Arrow schema in DuckDB's type names (DuckDB does the mapping itself)."""
    return {field.name: duckdb_type_name(field.type) for field in schema}


# -- Arrow inputs --------------------------------------------------------------------------


def delta_name(name: str) -> str:
    """A column name as Delta matches it: case-insensitively (and DuckDB: ASCII case)."""
    return name.lower()


def check_names(names: Iterable[str], where: str = "the input") -> None:
    """Refuse columns whose names differ only in case: one name to Delta and to DuckDB, which
    would otherwise rename one (``a_1``) or refuse the commit after the files were written."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.get(delta_name(name))
        if other == name:
            raise SchemaMismatch(f"{where} has two columns named {name!r}; rename one. Nothing was written")
        if other is not None:
            raise SchemaMismatch(
                f"{where} has columns {other!r} and {name!r}, which differ only in case: Delta matches "
                "column names case-insensitively; rename one. Nothing was written"
            )
        seen[delta_name(name)] = name


def check_arrow(schema: pa.Schema) -> pa.Schema | None:
    """Refuse the Arrow types no Delta column can hold, naming the column; return the schema to
    cast the input to first when DuckDB cannot scan a type Delta can hold (float16, a
    decimal256 of at most 38 digits), else None."""
    check_names(schema.names)
    fields = []
    for f in schema:
        try:
            fields.append(f.with_type(_arrow_storable(f.type)))
        except UnsupportedType as exc:
            raise UnsupportedType(f"column {f.name!r} is {f.type}: {exc.detail}; nothing was written") from None
    target = pa.schema(fields, metadata=schema.metadata)
    return None if target.equals(schema) else target


def _arrow_storable(t: pa.DataType) -> pa.DataType:
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_decimal(t):
        if t.precision > _MAX_DECIMAL_DIGITS:
            raise UnsupportedType(f"Delta decimals hold at most {_MAX_DECIMAL_DIGITS} digits")
        return pa.decimal128(t.precision, t.scale) if t.bit_width == 256 else t
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        raise UnsupportedType(_REFUSED["interval"])
    if pa.types.is_union(t):
        raise UnsupportedType(_REFUSED["union"])
    if pa.types.is_dictionary(t):
        value = _arrow_storable(t.value_type)
        return t if value == t.value_type else value
    if isinstance(t, pa.ExtensionType):
        return t if t.extension_name == "arrow.uuid" else _arrow_storable(t.storage_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        item = _arrow_storable(t.value_type)
        return t if item == t.value_type else pa.list_(t.value_field.with_type(item))
    if pa.types.is_fixed_size_list(t):
        item = _arrow_storable(t.value_type)
        return t if item == t.value_type else pa.list_(t.value_field.with_type(item), t.list_size)
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return pa.struct([f.with_type(_arrow_storable(f.type)) for f in fields])
    if pa.types.is_map(t):
        key, item = _arrow_storable(t.key_type), _arrow_storable(t.item_type)
        return pa.map_(t.key_field.with_type(key), t.item_field.with_type(item))
    return t


def arrow_reader(data: Any) -> pa.RecordBatchReader | pa.Table:
    """In-memory input as Arrow, checked and cast so that DuckDB can scan it (batch by batch)."""
    table = _as_arrow(data)
    target = check_arrow(table.schema)
    if target is None:
        return table
    reader = table.to_reader() if isinstance(table, pa.Table) else table
    return pa.RecordBatchReader.from_batches(target, (batch.cast(target) for batch in reader))


def _as_arrow(data: Any) -> pa.RecordBatchReader | pa.Table:
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise UnsupportedType(f"the pandas frame cannot be converted to Arrow: {_one_line(exc)}") from None
    if module == "polars":
        try:
            return data.to_arrow()
        except (pa.ArrowException, ValueError, TypeError) as exc:  # e.g. Int128, which Arrow lacks
            raise UnsupportedType(f"the Polars frame cannot be converted to Arrow: {_one_line(exc)}") from None
    return pa.table(data)


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema DuckDB reports for the stored columns, in the spelling Delta accepts: a
    zoned timestamp is microseconds in ``UTC`` (whatever zone name DuckDB gave), strings and
    binaries plain, lists variable-sized."""
    return pa.schema([pa.field(f.name, _delta_arrow(f.type), True) for f in schema])


def _delta_arrow(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", "UTC" if t.tz else None)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_delta_arrow(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_delta_arrow(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(_delta_arrow(t.key_type), t.item_field.with_type(_delta_arrow(t.item_type)))
    return t


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
