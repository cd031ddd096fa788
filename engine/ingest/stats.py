"""DuckDB's per-file column statistics (``COPY … RETURN_STATS``) as Delta file statistics, so
Delta readers (delta-rs, Spark, DuckDB's delta extension) can skip files from the log alone.

Only what converts exactly is kept: null counts of flat columns, and min/max of integers,
finite floats without NaN, dates and short strings, when DuckDB says they are exact. Timestamps
(Delta keeps them at millisecond precision, so a truncated max could skip a file that matches),
decimals (JSON numbers would round), booleans, binary and nested columns get no min/max.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

_MAX_STRING = 32  # Delta writers truncate longer string bounds; we leave them out instead


def delta_stats(rows: int, column_stats: dict[str, dict[str, str]] | None, schema: pa.Schema) -> dict[str, Any]:
    """``{"numRecords", "nullCount", "minValues", "maxValues"}`` for one written file."""
    out: dict[str, Any] = {"numRecords": rows}
    nulls, mins, maxs = {}, {}, {}
    for key, stats in (column_stats or {}).items():
        name = _top_level_name(key)
        if name is None or name not in schema.names:
            continue  # a nested field, or a partition column (not stored in the file)
        typ = schema.field(name).type
        if pa.types.is_nested(typ):
            continue
        if "null_count" in stats:
            nulls[name] = int(stats["null_count"])
        low, high = _bound(typ, stats, "min"), _bound(typ, stats, "max")
        if low is not None and high is not None:
            mins[name], maxs[name] = low, high
    for field, values in (("nullCount", nulls), ("minValues", mins), ("maxValues", maxs)):
        if values:
            out[field] = values
    return out


def _top_level_name(key: str) -> str | None:
    """DuckDB keys columns by their quoted path: ``"a"`` is a column, ``"a"."b"`` a nested field."""
    if len(key) < 2 or key[0] != '"' or key[-1] != '"':
        return None
    inner = key[1:-1]
    if '"' in inner.replace('""', ""):
        return None
    return inner.replace('""', '"')


def _bound(typ: pa.DataType, stats: dict[str, str], which: str) -> Any:
    value = stats.get(which)
    if value is None or stats.get(f"{which}_is_exact") != "true":
        return None
    if pa.types.is_integer(typ):
        return int(value)
    if pa.types.is_floating(typ):
        number = float(value)
        return number if stats.get("has_nan") == "false" and math.isfinite(number) else None
    if pa.types.is_date32(typ):
        return value
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return value if len(value) <= _MAX_STRING else None
    return None
