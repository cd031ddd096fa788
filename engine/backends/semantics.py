"""DuckDB's semantics, kept on the other engines where they differ (the SQL clients write is
DuckDB's dialect), and one Arrow type vocabulary for every engine's results."""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

_FLOATS = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}


def _divide_as_double(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``/`` always gives DOUBLE; Polars and Spark keep DECIMAL for decimal operands.
    A left operand that is itself a division is DOUBLE already: casting it again would nest one
    CAST per term of ``a / b / c …``, and Polars' parser spins forever on deep CAST nesting."""
    if isinstance(node, exp.Div) and not isinstance(node, exp.IntDiv):
        left = node.this.unnest()
        already_double = isinstance(left, exp.Div) or (isinstance(left, exp.Cast) and left.to.this in _FLOATS)
        if not already_double:
            node.set("this", exp.cast(node.this.copy(), exp.DataType.build("DOUBLE")))
    return node


def _date_parts_as_bigint(node: exp.Expression) -> exp.Expression:
    """DuckDB's EXTRACT/YEAR/... give BIGINT; Polars and Spark give 32-bit ints."""
    if isinstance(node, (exp.Extract, exp.Year, exp.Month, exp.Day)) and not isinstance(node.parent, exp.Cast):
        return exp.cast(node.copy(), exp.DataType.build("BIGINT"))
    return node


def _interval_arithmetic_as_timestamp(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``date ± INTERVAL`` is TIMESTAMP arithmetic; Polars keeps DATE (and drops the
    hours of ``INTERVAL 2 HOUR``). Cast the operand, which changes nothing for a TIMESTAMP."""
    if (
        isinstance(node, (exp.Add, exp.Sub))
        and isinstance(node.expression, exp.Interval)
        and not isinstance(node.this, exp.Interval)
        and not (isinstance(node.this, exp.Cast) and node.this.to.this == exp.DataType.Type.TIMESTAMP)
    ):
        node.set("this", exp.cast(node.this.copy(), exp.DataType.build("TIMESTAMP")))
    return node


def aggregate_argument(node: exp.AggFunc) -> exp.Expression:
    """The value an aggregate reads: ``x`` in ``AGG(x)`` and in ``AGG(DISTINCT x)``."""
    return node.this.expressions[0] if isinstance(node.this, exp.Distinct) else node.this


def set_aggregate_argument(node: exp.AggFunc, value: exp.Expression) -> None:
    if isinstance(node.this, exp.Distinct):
        node.this.set("expressions", [value])
    else:
        node.set("this", value)


def _average_as_double(node: exp.Expression) -> exp.Expression:
    """DuckDB's AVG is DOUBLE; Spark's AVG of a DECIMAL is a DECIMAL rounded to scale + 4."""
    if isinstance(node, exp.Avg):
        arg = aggregate_argument(node)
        if isinstance(arg.type, exp.DataType) and arg.type.is_type(*exp.DataType.TEMPORAL_TYPES):
            return node  # AVG of a TIMESTAMP is a TIMESTAMP, on every engine
        if not (isinstance(arg, exp.Cast) and arg.to.this in _FLOATS):
            set_aggregate_argument(node, exp.cast(arg.copy(), exp.DataType.build("DOUBLE")))
    return node


def duckdb_semantics(ast: exp.Expression) -> exp.Expression:
    """Rewrite ``ast`` (in place) so another engine computes what DuckDB would."""
    for rule in (_divide_as_double, _date_parts_as_bigint, _interval_arithmetic_as_timestamp, _average_as_double):
        ast = ast.transform(rule, copy=False)  # the caller owns ``ast``: copying it costs more than the rules
    return ast


def _regular(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_regular(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _regular(f.type), f.nullable) for f in t])
    return t


def regular_schema(schema: pa.Schema) -> pa.Schema:
    """Polars and Spark hand out large/view string types; DuckDB and clients expect the regular ones."""
    return pa.schema([pa.field(f.name, _regular(f.type), f.nullable) for f in schema])
