"""DuckDB's semantics that depend on operand types, for the engines that run DuckDB's SQL in
their own dialect (Polars, Spark): sqlglot-optimizer style, one pure function per rule.

``annotate`` resolves columns against the snapshots' schemas (sqlglot's ``qualify``: select
aliases expanded, ``USING`` columns coalesced, derived tables named) and types every node
(``annotate_types``); ``rewrite`` applies rules bottom-up in one pass, so a rule sees typed,
already rewritten operands. The rules here hold for every engine; each backend adds its own.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping, Sequence

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from engine.backends.semantics import aggregate_argument, set_aggregate_argument
from engine.catalog import TableSnapshot
from engine.errors import UnsupportedQuery
from engine.sqltext import duckdb_types, fold

Rule = Callable[[exp.Expression], exp.Expression]
T = exp.DataType.Type
INTEGERS = exp.DataType.INTEGER_TYPES | {T.BOOLEAN}
FLOATS = {T.DOUBLE, T.FLOAT}
TIMESTAMPS = {T.TIMESTAMP, T.DATETIME, T.TIMESTAMPNTZ, T.TIMESTAMP_S, T.TIMESTAMP_MS, T.TIMESTAMP_NS}
TEMPORAL = {T.DATE, *TIMESTAMPS}
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def annotate(ast: exp.Expression, tables: Mapping[str, TableSnapshot]) -> exp.Expression:
    """``ast`` (owned by the caller) qualified against the snapshots' schemas, typed."""
    schema = {name: duckdb_types(snap.schema) for name, snap in tables.items()}
    keyed = _sqlglot_schema(schema)
    try:
        ast = qualify(
            ast,
            schema=keyed,
            dialect="duckdb",
            quote_identifiers=False,
            identify=False,
            validate_qualify_columns=False,
        )
        ast = annotate_types(ast, schema=keyed, dialect="duckdb")
    except (OptimizeError, SqlglotError, KeyError, ValueError) as exc:
        raise UnsupportedQuery(
            f"this engine cannot resolve the columns of this query ({exc}): run it on DuckDB"
        ) from None
    return _spell_base_columns(ast, schema)


def _sqlglot_schema(schema: Mapping[str, Mapping[str, str]]) -> MappingSchema:
    """The schema keyed as sqlglot keys the query's names: folded as DuckDB folds (ASCII only).

    Built by hand: sqlglot would parse each key as SQL (a name ``\\tx`` becomes ``x``). Two
    columns that only ASCII case tells apart are one name to DuckDB: refused, never guessed at."""
    keyed: dict[str, dict[str, str]] = {}
    for relation, columns in schema.items():
        folded = {fold(name): dtype for name, dtype in columns.items()}
        if len(folded) < len(columns):
            clash = sorted(name for name in columns if sum(fold(n) == fold(name) for n in columns) > 1)
            raise UnsupportedQuery(
                f"this engine cannot tell apart columns that differ only in case ({', '.join(map(repr, clash))}): "
                "run it on DuckDB"
            )
        keyed[fold(relation)] = folded
    return MappingSchema(dict(keyed), dialect="duckdb", normalize=False)


def _spell_base_columns(ast: exp.Expression, schema: Mapping[str, Mapping[str, str]]) -> exp.Expression:
    """DuckDB folds identifiers' case and the other engines do not: ``qualify`` wrote every
    name folded, so a column of a catalog table gets its schema's spelling back, quoted (names
    the query itself makes, CTE and select aliases, stay folded: consistently so)."""
    spelled = {fold(relation): {fold(c): c for c in columns} for relation, columns in schema.items()}
    sources = {
        fold(table.alias_or_name): spelled[fold(table.name)]
        for table in ast.find_all(exp.Table)
        if isinstance(table.this, exp.Identifier) and fold(table.name) in spelled
    }
    for column in ast.find_all(exp.Column):
        names = sources.get(fold(column.table)) if column.table else None
        actual = names.get(fold(column.name)) if names else None
        if actual is not None and actual != column.name:
            column.set("this", exp.to_identifier(actual, quoted=True))
    # ``quote_identifiers=False`` left names such as ``tstz_+05:45`` bare: quote every name that
    # is not a plain identifier, or the target dialect reads it as an expression.
    for identifier in ast.find_all(exp.Identifier):
        if not identifier.quoted and not _PLAIN_NAME.fullmatch(identifier.name):
            identifier.set("quoted", True)
    return ast


def refuse(ast: exp.Expression, engine: str, unsupported: Callable[[exp.Expression], str | None]) -> None:
    """Raise a 4xx naming the first construct ``unsupported`` finds in ``ast``."""
    for node in ast.walk():
        name = unsupported(typing.cast(exp.Expression, node))
        if name:
            raise UnsupportedQuery(f"the {engine} engine cannot run {name}: run this query on DuckDB")


def rewrite(ast: exp.Expression, rules: Sequence[Rule]) -> exp.Expression:
    """Apply ``rules`` to every node, children before parents, in one pass and in place: a rule
    sees its operands already rewritten (and the next rule sees its result), and the tree is
    never copied whole (a TPC-DS query's tree has tens of thousands of nodes)."""
    for node in reversed(list(ast.dfs())):
        parent, key, index = node.parent, node.arg_key, node.index
        new = typing.cast(exp.Expression, node)
        for rule in rules:
            new = rule(new)
        if new is node:
            continue
        if node is ast:
            ast = new
        elif parent is not None and key:
            parent.set(key, new, index)
    return ast


# -- building blocks -------------------------------------------------------------------------


def type_of(node: exp.Expression) -> exp.DType | None:
    t = node.type
    return t.this if isinstance(t, exp.DataType) else None


def cast(node: exp.Expression, to: str) -> exp.Cast:
    built = exp.cast(node.copy(), exp.DataType.build(to, dialect="duckdb"))
    built.type = built.to  # later rules read the operand types of the nodes they rewrite
    return built


def paren(node: exp.Expression) -> exp.Paren:
    """Brackets: sqlglot prints a built tree as is, so operator precedence must be explicit."""
    return exp.Paren(this=node)


def fn(name: str, *args: exp.Expression) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


# -- rules for every engine ------------------------------------------------------------------


def _wide_integer_sums(node: exp.Expression) -> exp.Expression:
    """DuckDB sums integers into a HUGEINT; Polars keeps the column's width and wraps around."""
    if isinstance(node, exp.Sum) and type_of(aggregate_argument(node)) in INTEGERS:
        set_aggregate_argument(node, cast(aggregate_argument(node), "DECIMAL(38, 0)"))
    return node


def _decimal_quantile(node: exp.Expression) -> exp.Expression:
    """DuckDB interpolates a DECIMAL median/quantile_cont as ``lo + (hi - lo) * d`` and truncates
    it to the column's scale (49.695 → 49.69); the others interpolate in floats and round."""
    if not isinstance(node, (exp.Median, exp.PercentileCont)) or type_of(node.this) != T.DECIMAL:
        return node
    params = node.this.type.expressions
    scale = int(params[1].this.this) if len(params) > 1 else 0
    floated = node.copy()
    floated.set("this", cast(node.this, "DOUBLE"))
    factor = exp.Literal.number(10**scale)
    # A nudge of 1e-6 units keeps an exact result that floats put a hair below it (4969.9999…).
    nudge = exp.Mul(this=exp.Sign(this=floated.copy()), expression=exp.Literal.number("0.000001"))
    units = cast(exp.Add(this=exp.Mul(this=floated, expression=factor), expression=nudge), "BIGINT")  # truncates
    return paren(exp.Div(this=units, expression=factor.copy()))


def _date_minus_date(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``date - date`` is a BIGINT count of days; Polars gives a duration, Spark an interval."""
    if isinstance(node, exp.Sub) and type_of(node.this) == T.DATE and type_of(node.expression) == T.DATE:
        diff = exp.DateDiff(this=node.this, expression=node.expression, unit=exp.var("DAY"))
        diff.type = exp.DataType.build("BIGINT")
        return diff
    return node


def _date_compared_to_timestamp(node: exp.Expression) -> exp.Expression:
    """DuckDB compares a DATE with a TIMESTAMP as timestamps; Polars refuses the pair."""
    if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        left, right = type_of(node.this), type_of(node.expression)
        if left == T.DATE and right in TIMESTAMPS:
            node.set("this", cast(node.this, "TIMESTAMP"))
        elif right == T.DATE and left in TIMESTAMPS:
            node.set("expression", cast(node.expression, "TIMESTAMP"))
    return node


def _list_length(node: exp.Expression) -> exp.Expression:
    """DuckDB's len() takes lists as well as strings; the others' LENGTH only strings."""
    if isinstance(node, exp.Length) and type_of(node.this) in (T.ARRAY, T.LIST):
        return exp.ArraySize(this=node.this.copy())
    return node


def _replace_empty_search(node: exp.Expression) -> exp.Expression:
    """DuckDB's replace(s, '', x) leaves s as it is; Polars puts x between every character."""
    if not isinstance(node, exp.Replace):
        return node
    text, search = node.this, node.expression
    if isinstance(search, exp.Literal):
        return text.copy() if search.this == "" else node
    empty = exp.EQ(this=search.copy(), expression=exp.Literal.string(""))
    return exp.Case(ifs=[exp.If(this=empty, true=text.copy())], default=node.copy())


GENERIC_RULES: tuple[Rule, ...] = (
    _wide_integer_sums,
    _decimal_quantile,
    _date_minus_date,
    _date_compared_to_timestamp,
    _list_length,
    _replace_empty_search,
)
