"""DuckDB's SQL → the SQL Polars runs, with DuckDB's answers (sqlglot-optimizer style).

The validated AST goes through four steps:
1. ``refuse``: constructs Polars cannot express are named in a 4xx ``unsupported_query`` before
   Polars sees them (never a 500, never a wrong answer);
2. ``annotate`` (typed_semantics): columns resolved against the snapshots' schemas, every node typed;
3. ``RULES``: one pure function per DuckDB semantic Polars lacks, chosen by operand type;
4. ``Polars`` (a sqlglot dialect): DuckDB functions under the names Polars knows.

Names and Arrow types are not decided here: ``reference.conform`` casts the result to DuckDB's.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.generators.duckdb import DuckDBGenerator

from engine.backends.reference import Memo
from engine.backends.semantics import duckdb_semantics
from engine.backends.typed_semantics import (
    FLOATS,
    GENERIC_RULES,
    INTEGERS,
    TEMPORAL,
    TIMESTAMPS,
    Rule,
    T,
    annotate,
    cast,
    fn,
    paren,
    refuse,
    rewrite,
    type_of,
)
from engine.errors import UnsupportedQuery
from engine.prepared import PreparedQuery
from engine.sql import bind_literals
from engine.sql.confirm import confirm_relations, serializable

_EPOCH_2000_01_03 = 946857600  # DuckDB's time_bucket origin for intervals of days and less


_MEMO = Memo()


def polars_sql(prepared: PreparedQuery) -> str:
    """The SQL text Polars runs: DuckDB's semantics kept where the engines differ. DuckDB's parser
    confirms it reads exactly the query's relations (Polars' SQL can read files by itself)."""
    key = Memo.key(prepared.sql, prepared.params, prepared.tables)
    return _MEMO.get(key, lambda: _translate(prepared))


def _translate(prepared: PreparedQuery) -> str:
    query = prepared.query
    ast = bind_literals(prepared.ast, prepared.params) if prepared.params else prepared.ast.copy()
    refuse(ast, "Polars", _unsupported)
    ast = annotate(ast, prepared.by_relation)
    refuse(ast, "Polars", _unsupported_typed)
    ast = duckdb_semantics(rewrite(ast, RULES))
    confirm_relations(serializable(ast).sql(dialect="duckdb", identify=True), prepared.relations, query.ctes)
    # Quote every identifier: Polars' parser takes words like TOP as keywords, and it matches
    # names case-sensitively whether quoted or not, so quoting changes nothing else.
    body = ast.sql(dialect=Polars, identify=True)
    return f"{query.prefix} {body}" if query.prefix else body


# -- 1. what Polars cannot express ---------------------------------------------------------

_JOIN_KINDS = {"ASOF": "ASOF joins", "POSITIONAL": "POSITIONAL joins"}  # sqlglot's Join "method"


_UNSUPPORTED: dict[type[exp.Expression], str] = {
    exp.Lateral: "LATERAL",
    exp.TableSample: "SAMPLE / TABLESAMPLE",
    exp.Pivot: "PIVOT / UNPIVOT",
    exp.Lambda: "lambda functions (x -> ...)",
    exp.JSONExtract: "JSON operators and functions (->, ->>, json_extract)",
    exp.JSONExtractScalar: "JSON operators and functions (->, ->>, json_extract)",
    exp.Slice: "slices ([a:b])",
    exp.Struct: "STRUCT values ({'k': v}, struct_pack)",
    exp.ToMap: "MAP values",
    exp.VarMap: "MAP values",
    exp.Map: "MAP values",
}


def _unsupported(node: exp.Expression) -> str | None:
    """The name of the construct ``node`` is, when Polars cannot run it."""
    if isinstance(node, exp.Join):
        if isinstance(node.this, exp.Unnest):
            return "UNNEST in FROM (a lateral join)"
        return _JOIN_KINDS.get((node.args.get("method") or "").upper())
    name = next((name for kind, name in _UNSUPPORTED.items() if isinstance(node, kind)), None)
    if name:
        return name
    if isinstance(node, exp.Columns):
        return "COLUMNS(...)"
    if isinstance(node, exp.Func) and node.key.startswith("json"):
        return "JSON operators and functions (->, ->>, json_extract)"
    if isinstance(node, exp.Anonymous) and str(node.name).lower().startswith("json"):
        return "JSON operators and functions (->, ->>, json_extract)"
    return None


# -- 2. what Polars cannot express, by type ---------------------------------------------------


def _unsupported_typed(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Bracket) and type_of(node.this) == T.MAP:
        return "MAP access (m[key])"
    return None


# -- 3. DuckDB's semantics, by operand type --------------------------------------------------


def _round_half_away_from_zero(node: exp.Expression) -> exp.Expression:
    """DuckDB rounds a DOUBLE half away from zero; Polars rounds half to even."""
    if not isinstance(node, exp.Round) or type_of(node.this) not in FLOATS:
        return node
    digits = node.args.get("decimals")
    scale = fn("POWER", exp.Literal.number(10), digits.copy()) if digits else exp.Literal.number(1)
    x = node.this.copy()
    shifted = exp.Add(this=paren(exp.Mul(this=exp.Abs(this=x), expression=scale)), expression=exp.Literal.number(0.5))
    signed = exp.Mul(this=exp.Sign(this=x.copy()), expression=exp.Floor(this=shifted))
    return paren(exp.Div(this=paren(signed), expression=scale.copy()) if digits else signed)


def days(node: exp.Expression) -> exp.Expression:
    """Days since 1970-01-01 of a DATE (or of a TIMESTAMP's date), as Polars computes it."""
    if type_of(node) != T.DATE:
        node = cast(node, "DATE")
    return cast(node, "INTEGER")


def _months(node: exp.Expression) -> exp.Expression:
    year = exp.Extract(this=exp.var("YEAR"), expression=node.copy())
    month = exp.Extract(this=exp.var("MONTH"), expression=node.copy())
    return paren(exp.Add(this=exp.Mul(this=year, expression=exp.Literal.number(12)), expression=month))


def _epoch_floor(node: exp.Expression, seconds: int) -> exp.Expression:
    epoch = exp.Extract(this=exp.var("EPOCH"), expression=node.copy())
    return exp.Floor(this=exp.Div(this=epoch, expression=exp.Literal.number(seconds)))


_DIFF_SECONDS = {"HOUR": 3600, "MINUTE": 60, "SECOND": 1}


def _date_diff(node: exp.Expression) -> exp.Expression:
    """date_diff(unit, a, b): the number of unit boundaries between a and b, as DuckDB counts."""
    if not isinstance(node, exp.DateDiff):
        return node
    unit = node.text("unit").upper().rstrip("S") or "DAY"
    start, end = node.expression, node.this
    if unit == "DAY":
        return exp.Paren(this=exp.Sub(this=days(end), expression=days(start)))
    if unit == "MONTH":
        return exp.Paren(this=exp.Sub(this=_months(end), expression=_months(start)))
    if unit == "YEAR":
        years = [exp.Extract(this=exp.var("YEAR"), expression=x.copy()) for x in (end, start)]
        return exp.Paren(this=exp.Sub(this=years[0], expression=years[1]))
    if unit in _DIFF_SECONDS and type_of(start) in TEMPORAL and type_of(end) in TEMPORAL:
        seconds = _DIFF_SECONDS[unit]
        diff = exp.Sub(this=_epoch_floor(end, seconds), expression=_epoch_floor(start, seconds))
        return cast(exp.Paren(this=diff), "BIGINT")
    return node


def _timestamp_as_text(node: exp.Expression) -> exp.Expression:
    """DuckDB prints a TIMESTAMP without trailing fractional zeros; Polars always prints six."""
    if isinstance(node, exp.Cast) and node.to.this in exp.DataType.TEXT_TYPES and type_of(node.this) in TEMPORAL:
        if type_of(node.this) == T.DATE:
            return node
        text = exp.Anonymous(
            this="STRFTIME", expressions=[node.this.copy(), exp.Literal.string("%Y-%m-%d %H:%M:%S.%6f")]
        )
        no_zeros = exp.Anonymous(this="RTRIM", expressions=[text, exp.Literal.string("0")])
        return exp.Anonymous(this="RTRIM", expressions=[no_zeros, exp.Literal.string(".")])
    return node


def _time_bucket(node: exp.Expression) -> exp.Expression:
    """time_bucket(INTERVAL n unit, ts) for a fixed-length interval, from DuckDB's origin."""
    if not isinstance(node, exp.DateBin) or type_of(node.expression) not in TIMESTAMPS:
        return node
    interval, origin = node.this, node.args.get("origin") or node.args.get("zone")
    seconds = _interval_seconds(interval)
    if seconds is None or origin is not None:
        return node
    epoch = exp.Extract(this=exp.var("EPOCH"), expression=node.expression.copy())
    offset = paren(exp.Sub(this=epoch, expression=exp.Literal.number(_EPOCH_2000_01_03)))
    buckets = exp.Floor(this=exp.Div(this=offset, expression=exp.Literal.number(seconds)))
    start = exp.Add(
        this=exp.Mul(this=buckets, expression=exp.Literal.number(seconds)),
        expression=exp.Literal.number(_EPOCH_2000_01_03),
    )
    micros = cast(exp.Mul(this=exp.Paren(this=start), expression=exp.Literal.number(1_000_000)), "BIGINT")
    return cast(micros, "TIMESTAMP")


_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}


def _interval_seconds(interval: exp.Expression) -> int | None:
    if not isinstance(interval, exp.Interval) or not isinstance(interval.this, exp.Literal):
        return None
    unit = interval.text("unit").upper().rstrip("S")
    try:
        amount = int(str(interval.this.this).split()[0])
    except ValueError:
        return None
    return amount * _UNIT_SECONDS[unit] if unit in _UNIT_SECONDS and amount > 0 else None


def _unnest_skips_empty_lists(node: exp.Expression) -> exp.Expression:
    """DuckDB's UNNEST of an empty or NULL list gives no row; Polars gives a NULL row."""
    if not isinstance(node, exp.Select):
        return node
    unnests = [u for e in node.expressions for u in e.find_all(exp.Unnest, exp.Explode)]
    lists = [u.this if isinstance(u, exp.Explode) else u.expressions[0] for u in unnests]
    lists = [x for x in lists if x is not None and not isinstance(x, exp.Array)]
    if not lists:
        return node
    if len(unnests) > 1 or node.args.get("group") or any(e.find(exp.AggFunc, exp.Window) for e in node.expressions):
        raise UnsupportedQuery(
            "the Polars engine cannot run UNNEST of a list column beside other UNNESTs or aggregates: run this query on DuckDB"
        )
    return node.where(exp.GT(this=exp.ArraySize(this=lists[0].copy()), expression=exp.Literal.number(0)), copy=False)


def _struct_field_unqualified(node: exp.Expression) -> exp.Expression:
    """Polars reads ``col.field`` but not ``table.col.field``: drop the table of a struct access."""
    if isinstance(node, exp.Column) and node.args.get("db"):
        node.set("db", None)
    if isinstance(node, exp.Dot) and isinstance(node.this, exp.Column) and node.this.table:
        node.set("this", exp.column(node.this.this.copy()))
    return node


_NARROW_INTEGERS: dict[exp.DType | None, str] = {
    T.TINYINT: "TINYINT",
    T.SMALLINT: "SMALLINT",
    T.INT: "INTEGER",
    T.BIGINT: "BIGINT",
}


def _checked_integer_arithmetic(node: exp.Expression) -> exp.Expression:
    """DuckDB raises on integer overflow (INT32 * INT32 past 2^31); Polars wraps around silently.
    Compute in a wider type and cast back: Polars' CAST is checked, so an overflow is an error."""
    narrow = _NARROW_INTEGERS.get(type_of(node)) if isinstance(node, (exp.Add, exp.Sub, exp.Mul)) else None
    if narrow is None or not all(type_of(x) in INTEGERS for x in (node.this, node.expression)):
        return node
    wide = "DECIMAL(38, 0)" if type_of(node) == T.BIGINT else "BIGINT"
    widened = type(node)(this=cast(node.this, wide), expression=cast(node.expression, wide))
    return cast(paren(widened), narrow)


def _division_by_zero_fails(divisor: exp.Expression, dividend: exp.Expression) -> exp.Expression:
    """NULL, or — where ``divisor`` is 0 and the dividend is not NULL — a checked CAST that
    fails, as DuckDB fails: Polars has no way to raise, and evaluates every CASE branch."""
    zero = exp.and_(
        exp.EQ(this=divisor.copy(), expression=exp.Literal.number(0)),
        exp.Not(this=exp.Is(this=dividend.copy(), expression=exp.Null())),
    )
    marker = exp.Case(ifs=[exp.If(this=zero, true=exp.Literal.string("division by zero"))])
    return exp.cast(marker, exp.DataType.build("BIGINT"))


def _integer_division(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``//`` truncates integers and fails on a zero divisor; for other numbers it is
    plain division (7 // 2.5 = 2.8). ``%`` of integers and DECIMALs fails on zero too; Polars
    floors non-integers and gives NULL for a zero divisor."""
    if isinstance(node, exp.IntDiv) and not all(type_of(x) in INTEGERS for x in (node.this, node.expression)):
        node = exp.Div(this=node.this, expression=node.expression)
        node.meta["checked"] = True
    checked = (
        isinstance(node, exp.IntDiv)
        or node.meta.get("checked")
        or (
            isinstance(node, exp.Mod)
            and all(type_of(x) in INTEGERS | {T.DECIMAL} for x in (node.this, node.expression))
        )
    )
    if not checked or (isinstance(node.expression, exp.Literal) and node.expression.this not in ("0", "0.0")):
        return node
    return exp.Coalesce(this=_division_by_zero_fails(node.expression, node.this), expressions=[node])


def _unique_output_names(node: exp.Expression) -> exp.Expression:
    """DuckDB allows ``SELECT k, k``; Polars refuses duplicate names. The client sees DuckDB's
    names anyway (``reference.conform``), so a repeated alias gets a private one."""
    if not isinstance(node, exp.Select):
        return node
    seen: set[str] = set()
    for i, projection in enumerate(node.expressions):
        name = projection.alias_or_name
        if name in seen:
            node.expressions[i].replace(exp.alias_(projection.unalias().copy(), f"__colonnade_{i}"))
        seen.add(name)
    return node


def _statistics_of_decimals_as_double(node: exp.Expression) -> exp.Expression:
    """corr/covar_pop/covar_samp of DECIMALs: DuckDB computes them in DOUBLE, and Polars'
    streaming engine refuses DECIMAL operands ("operation not supported for dtype decimal")."""
    if not isinstance(node, (exp.Corr, exp.CovarPop, exp.CovarSamp)):
        return node
    for key in ("this", "expression"):
        operand = node.args.get(key)
        if operand is not None and type_of(operand) == T.DECIMAL:
            node.set(key, cast(operand, "DOUBLE"))
    return node


# After the generic rules: ``date - date`` arrives here as a DateDiff, which Polars lacks.
RULES: tuple[Rule, ...] = (
    _statistics_of_decimals_as_double,
    _checked_integer_arithmetic,
    _integer_division,
    *GENERIC_RULES,
    _round_half_away_from_zero,
    _date_diff,
    _timestamp_as_text,
    _time_bucket,
    _unnest_skips_empty_lists,
    _struct_field_unqualified,
    _unique_output_names,
)


# -- 4. DuckDB functions under Polars' names -------------------------------------------------


def _var_pop(self: DuckDBGenerator, node: exp.Expression) -> str:
    x, n = node.this, exp.Count(this=node.this.copy())
    scaled = exp.Div(
        this=exp.Mul(
            this=fn("VAR_SAMP", x.copy()), expression=paren(exp.Sub(this=n, expression=exp.Literal.number(1)))
        ),
        expression=n.copy(),
    )
    one = exp.EQ(this=n.copy(), expression=exp.Literal.number(1))
    value = exp.Case(ifs=[exp.If(this=one, true=exp.Literal.number(0.0))], default=scaled)
    return self.sql(fn("SQRT", value) if isinstance(node, exp.StddevPop) else value)


def _arg_max(self: DuckDBGenerator, node: exp.ArgMax | exp.ArgMin) -> str:
    descending = isinstance(node, exp.ArgMax)
    order = exp.Order(expressions=[exp.Ordered(this=node.expression.copy(), desc=descending, nulls_first=False)])
    first = fn(
        "ARRAY_GET",
        fn("ARRAY_AGG", exp.Order(this=node.this.copy(), expressions=order.expressions)),
        exp.Literal.number(1),
    )
    none = exp.Is(this=fn("MAX", node.expression.copy()), expression=exp.Null())
    return self.sql(exp.Case(ifs=[exp.If(this=none, true=exp.Null())], default=first))


def _full_match(self: DuckDBGenerator, node: exp.Func) -> str:
    pattern = node.expression
    if not isinstance(pattern, exp.Literal):
        return self.function_fallback_sql(node)
    anchored = exp.Literal.string(f"^(?:{pattern.this})$")
    return self.sql(fn("REGEXP_LIKE", node.this, anchored))


def _regexp_like(self: DuckDBGenerator, node: exp.RegexpLike) -> str:
    flags = node.args.get("flag")
    return self.sql(fn("REGEXP_LIKE", node.this, node.expression, *([flags] if flags else [])))


def _first_last(self: DuckDBGenerator, node: exp.First | exp.Last) -> str:
    """first(x ORDER BY k) / last(x ORDER BY k): the ends of an ordered ARRAY_AGG."""
    if not isinstance(node.this, exp.Order):
        return self.func("FIRST" if isinstance(node, exp.First) else "LAST", node.this)
    index = exp.Literal.number(1 if isinstance(node, exp.First) else -1)
    return self.sql(fn("ARRAY_GET", fn("ARRAY_AGG", node.this), index))


def _ordered(self: DuckDBGenerator, node: exp.Ordered) -> str:
    # Polars puts NULLs first when descending; DuckDB puts them last either way unless told.
    nulls = " NULLS FIRST" if node.args.get("nulls_first") else " NULLS LAST"
    return f"{self.sql(node, 'this')}{' DESC' if node.args.get('desc') else ''}{nulls}"


def _trim(self: DuckDBGenerator, node: exp.Trim) -> str:
    chars = node.expression
    if chars is None:
        return self.trim_sql(node)
    position = (node.text("position") or "BOTH").upper()
    return f"TRIM({position} {self.sql(chars)} FROM {self.sql(node, 'this')})"


def _cte(self: DuckDBGenerator, node: exp.CTE) -> str:
    # MATERIALIZED only hints DuckDB's planner; Polars' parser does not know the word.
    node = node.copy()
    node.set("materialized", None)
    return DuckDBGenerator.cte_sql(self, node)


def _null_safe(op: str) -> Callable[[DuckDBGenerator, exp.Expression], str]:
    # Polars' parser binds IS [NOT] DISTINCT FROM looser than AND: keep it in brackets.
    return lambda self, node: f"({self.sql(node, 'this')} {op} {self.sql(node, 'expression')})"


def _string(self: DuckDBGenerator, node: exp.ByteString) -> str:
    # DuckDB's E'…' escape string, already unescaped: Polars takes E'…' as an unsupported literal.
    if node.args.get("is_bytes"):
        return DuckDBGenerator.bytestring_sql(self, node)
    return "'" + str(node.this).replace("'", "''") + "'"


# DuckDB functions sqlglot keeps as anonymous calls, and their Polars spelling.
_RENAMED = {
    "STRLEN": "OCTET_LENGTH",
    "PREFIX": "STARTS_WITH",
    "SUFFIX": "ENDS_WITH",
    "LIST_SUM": "ARRAY_SUM",
    "LIST_AVG": "ARRAY_MEAN",
    "ARRAY_AVG": "ARRAY_MEAN",
    "LIST_HAS": "ARRAY_CONTAINS",
    "LIST_REVERSE": "ARRAY_REVERSE",
    "ARRAY_REVERSE": "ARRAY_REVERSE",
    "INSTR": "STRPOS",
}


def _anonymous(self: DuckDBGenerator, node: exp.Anonymous) -> str:
    name = str(node.name).upper()
    if name == "FDIV" and len(node.expressions) == 2:
        a, b = node.expressions
        return self.sql(exp.Floor(this=exp.Div(this=cast(a, "DOUBLE"), expression=b.copy())))
    return self.func(_RENAMED.get(name, str(node.name)), *node.expressions)


class PolarsGenerator(DuckDBGenerator):
    TRANSFORMS = {  # noqa: RUF012 - sqlglot's own class-level table
        **DuckDBGenerator.TRANSFORMS,
        exp.RegexpLike: _regexp_like,
        exp.RegexpFullMatch: _full_match,
        exp.SimilarTo: _full_match,
        exp.Split: lambda self, e: self.func("STRING_TO_ARRAY", e.this, e.expression),
        exp.StrPosition: lambda self, e: self.func("STRPOS", e.this, e.args.get("substr")),
        exp.ArrayContains: lambda self, e: self.func("ARRAY_CONTAINS", e.this, e.expression),
        exp.ArraySize: lambda self, e: self.func("ARRAY_LENGTH", e.this),
        exp.ArrayDistinct: lambda self, e: self.func("ARRAY_UNIQUE", e.this),
        exp.CountIf: lambda self, e: self.sql(
            exp.Count(this=exp.Case(ifs=[exp.If(this=e.this, true=exp.Literal.number(1))]))
        ),
        exp.LogicalAnd: lambda self, e: self.func("MIN", e.this),
        exp.LogicalOr: lambda self, e: self.func("MAX", e.this),
        exp.VariancePop: _var_pop,
        exp.StddevPop: _var_pop,
        exp.ApproxDistinct: lambda self, e: self.sql(exp.Count(this=exp.Distinct(expressions=[e.this]))),
        exp.ArgMax: _arg_max,
        exp.ArgMin: _arg_max,
        exp.Dayname: lambda self, e: self.func("STRFTIME", e.this, exp.Literal.string("%A")),
        exp.Monthname: lambda self, e: self.func("STRFTIME", e.this, exp.Literal.string("%B")),
        exp.TimeToUnix: lambda self, e: f"EXTRACT(EPOCH FROM {self.sql(e, 'this')})",
        exp.LastDay: lambda self, e: self.sql(
            exp.cast(
                exp.Sub(
                    this=exp.Add(
                        this=fn("DATE_TRUNC", exp.Literal.string("month"), e.this),
                        expression=exp.Interval(this=exp.Literal.string("1"), unit=exp.var("MONTH")),
                    ),
                    expression=exp.Interval(this=exp.Literal.string("1"), unit=exp.var("DAY")),
                ),
                exp.DataType.build("DATE"),
            )
        ),
        exp.Contains: lambda self, e: f"(STRPOS({self.sql(e, 'this')}, {self.sql(e, 'expression')}) > 0)",
        exp.Trim: _trim,
        exp.CTE: _cte,
        exp.NullSafeEQ: _null_safe("IS NOT DISTINCT FROM"),
        exp.NullSafeNEQ: _null_safe("IS DISTINCT FROM"),
        exp.Ordered: _ordered,
        exp.First: _first_last,
        exp.Last: _first_last,
        exp.ByteString: _string,
        exp.Anonymous: _anonymous,
    }


class Polars(DuckDB):
    Generator = PolarsGenerator
