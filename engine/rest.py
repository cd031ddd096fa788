"""PostgREST-style table queries compiled to a SQL AST.

``select=a,b``, ``col=op.value`` filters (eq, neq, gt, gte, lt, lte, like, ilike, in.(…),
is.null/true/false, a ``not.`` prefix), ``or=(…)``/``and=(…)`` groups, ``order=a.desc,b.asc``,
``limit``, ``offset``. The result is SQL text plus parameters: every value is a ``?``
parameter cast to its column's type, never spliced in. The text then goes through the same
validation as any client SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from engine.errors import ColumnNotFound, InvalidParameters, InvalidRequest
from engine.sqltext import sql_type

RESERVED = frozenset({"select", "order", "limit", "offset", "or", "and", "format", "engine"})
_COMPARISONS: dict[str, type[exp.Expression]] = {
    "eq": exp.EQ,
    "neq": exp.NEQ,
    "gt": exp.GT,
    "gte": exp.GTE,
    "lt": exp.LT,
    "lte": exp.LTE,
    "like": exp.Like,
    "ilike": exp.ILike,
}
OPERATORS = (*_COMPARISONS, "in", "is")


@dataclass
class RestQuery:
    sql: str
    params: list[Any] = field(default_factory=list)


def compile_rest(table: str, schema: pa.Schema, query: Iterable[tuple[str, str]]) -> RestQuery:
    """Compile ``/rows`` query parameters for ``table`` (whose schema is known)."""
    compiler = _Compiler(schema)
    select: list[exp.Expression] = [exp.Star()]
    conditions: list[exp.Expression] = []
    order: list[exp.Ordered] = []
    limit = offset = None
    for key, value in query:
        if key == "select":
            select = [compiler.column(c.strip()) for c in value.split(",") if c.strip()] or [exp.Star()]
            if any(c.strip() == "*" for c in value.split(",")):
                select = [exp.Star()]
        elif key == "order":
            order = [compiler.ordering(term) for term in _split_top(value)]
        elif key in ("limit", "offset"):
            number = _non_negative_int(key, value)
            limit, offset = (number, offset) if key == "limit" else (limit, number)
        elif key in ("or", "and"):
            conditions.append(compiler.group(key, value))
        elif key in ("format", "engine"):
            continue
        else:
            conditions.append(compiler.filter(key, value))
    tree = exp.select(*select).from_(exp.to_table(table, quoted=True))
    if conditions:
        tree = tree.where(exp.and_(*conditions))
    if order:
        tree = tree.order_by(*order)
    if limit is not None:
        tree = tree.limit(limit)
    if offset is not None:
        tree = tree.offset(offset)
    return RestQuery(tree.sql(dialect="duckdb"), compiler.params)


class _Compiler:
    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.params: list[Any] = []

    def column(self, name: str) -> exp.Column:
        if name == "*":
            return exp.Star()  # type: ignore[return-value]
        if name not in self.schema.names:
            raise ColumnNotFound(f"column {name!r} does not exist (columns: {', '.join(self.schema.names)})")
        return exp.column(name, quoted=True)

    def ordering(self, term: str) -> exp.Ordered:
        name, *mods = term.strip().split(".")
        unknown = set(mods) - {"asc", "desc", "nullsfirst", "nullslast"}
        if unknown:
            raise InvalidRequest(
                f"order: unknown modifier {'.'.join(sorted(unknown))!r} (asc, desc, nullsfirst, nullslast)"
            )
        desc = "desc" in mods
        nulls_first = "nullsfirst" in mods or (desc and "nullslast" not in mods)
        return exp.Ordered(this=self.column(name), desc=desc, nulls_first=nulls_first)

    def filter(self, column: str, expression: str) -> exp.Expression:
        col = self.column(column)
        negate = expression.startswith("not.")
        if negate:
            expression = expression[4:]
        op, dot, value = expression.partition(".")
        if not dot or op not in OPERATORS:
            raise InvalidRequest(
                f"filter {column}={expression!r}: expected operator.value with operator one of {', '.join(OPERATORS)}"
            )
        condition = self._condition(column, col, op, value)
        return exp.Not(this=exp.Paren(this=condition)) if negate else condition

    def _condition(self, name: str, col: exp.Column, op: str, value: str) -> exp.Expression:
        if op == "is":
            targets = {"null": exp.Null(), "true": exp.true(), "false": exp.false()}
            if value.lower() not in targets:
                raise InvalidRequest(f"filter {name}=is.{value}: is takes null, true or false")
            return exp.Is(this=col, expression=targets[value.lower()])
        if op == "in":
            if not (value.startswith("(") and value.endswith(")")):
                raise InvalidRequest(f"filter {name}=in.{value}: write in.(v1,v2,...)")
            items = [_unquote(v.strip()) for v in _split_top(value[1:-1])]  # in.(1, 2): spaces separate
            return exp.In(this=col, expressions=[self.value(name, v) for v in items])
        if op in ("like", "ilike"):
            return _COMPARISONS[op](this=col, expression=self.param(value.replace("*", "%")))
        return _COMPARISONS[op](this=col, expression=self.value(name, _unquote(value)))

    def group(self, kind: str, body: str) -> exp.Expression:
        if not (body.startswith("(") and body.endswith(")")):
            raise InvalidRequest(f"{kind}={body!r}: write {kind}=(col.op.value,...)")
        parts = []
        for term in _split_top(body[1:-1]):
            term = term.strip()
            negate = term.startswith("not.")
            inner = term[4:] if negate else term
            if inner.startswith(("or(", "and(")):
                sub_kind, _, rest = inner.partition("(")
                part = self.group(sub_kind, "(" + rest)
            else:
                column, dot, expression = inner.partition(".")
                if not dot:
                    raise InvalidRequest(f"{kind}: {term!r} is not column.operator.value")
                part = self.filter(column, expression)
            parts.append(exp.Not(this=exp.Paren(this=part)) if negate else part)
        if not parts:
            raise InvalidRequest(f"{kind}=() is empty")
        joined = exp.or_(*parts) if kind == "or" else exp.and_(*parts)
        return exp.Paren(this=joined)

    def value(self, column: str, text: str) -> exp.Expression:
        """A parameter cast to the column's type; the value is checked now for a clear error."""
        arrow_type = self.schema.field(column).type
        if not (
            pa.types.is_string(arrow_type)
            or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type)
        ):
            try:
                pc.cast(pa.array([text]), arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidRequest(f"filter on {column}: {text!r} is not a valid {arrow_type}") from None
        return exp.cast(self.param(text), sql_type(arrow_type))

    def param(self, value: str) -> exp.Placeholder:
        self.params.append(value)
        return exp.Placeholder()


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted or depth != 0:
        raise InvalidRequest(f"unbalanced quotes or parentheses in {text!r}")
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _unquote(value: str) -> str:
    """A value as PostgREST reads it: spaces are data; "double quotes" protect , ( and )."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


MAX_ROWS_PARAM = 2**63 - 1  # DuckDB's LIMIT and OFFSET are BIGINT


def _non_negative_int(key: str, value: str) -> int:
    """Plain ASCII digits only: Python's int() would also take ' 5', '1_000' and '٣'."""
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_ROWS_PARAM:
        raise InvalidParameters(f"{key} must be an integer from 0 to {MAX_ROWS_PARAM}, got {value!r}")
    return int(value)
