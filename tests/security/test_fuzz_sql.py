"""Hypothesis over SQL fragments: generated expressions and predicates over TPC-H columns run
on DuckDB and Polars (in-process, through engine.Database). The engines agree, or the query
is refused with a clean 4xx error; never a 5xx, never a crash.

``COLONNADE_FUZZ_EXAMPLES`` raises the example count for a long run.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import ColonnadeError

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

INT_COLS = ["s_suppkey", "s_nationkey"]
DEC_COLS = ["s_acctbal"]
STR_COLS = ["s_name", "s_phone", "s_comment", "s_address"]

ints = st.one_of(st.sampled_from(INT_COLS), st.integers(-50, 1000).map(str))
decs = st.one_of(
    st.sampled_from(DEC_COLS),
    st.decimals(Decimal("-999"), Decimal("9999"), places=2, allow_nan=False, allow_infinity=False).map(str),
)
strings = st.one_of(
    st.sampled_from(STR_COLS),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6).map(
        lambda s: "'" + s.replace("'", "''") + "'"
    ),
)


def numeric(depth: int = 3) -> st.SearchStrategy[str]:
    leaf = st.one_of(ints, decs)
    if depth == 0:
        return leaf
    sub = numeric(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(["+", "-", "*"]), sub),
        st.builds(lambda a: f"abs({a})", sub),
        st.builds(lambda a, b: f"coalesce({a}, {b})", sub, sub),
        st.builds(lambda a, b: f"greatest({a}, {b})", sub, sub),
        st.builds(lambda s: f"length({s})", text(depth - 1)),
        st.builds(lambda p, a, b: f"CASE WHEN {p} THEN {a} ELSE {b} END", predicate(depth - 1), sub, sub),
    )


def text(depth: int = 2) -> st.SearchStrategy[str]:
    if depth <= 0:
        return strings
    sub = text(depth - 1)
    return st.one_of(
        strings,
        st.builds(lambda s: f"upper({s})", sub),
        st.builds(lambda s: f"lower({s})", sub),
        st.builds(lambda a, b: f"({a} || {b})", sub, sub),
        st.builds(lambda s, n: f"substr({s}, 1, {n})", sub, st.integers(0, 12)),
        st.builds(lambda s: f"trim({s})", sub),
        # replace(s, '', x): DuckDB returns s, Polars puts x between every character (known gap)
        st.builds(lambda s, a, b: f"replace({s}, {a}, {b})", sub, strings.filter(lambda a: a != "''"), strings),
    )


def predicate(depth: int = 2) -> st.SearchStrategy[str]:
    inner = min(depth, 1)  # operands one level deep at most (and leaves at the bottom)
    num, txt = numeric(inner), text(inner)
    atoms = st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", num, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), num),
        st.builds(lambda s, b: f"{s} = {b}", txt, strings),
        st.builds(lambda s, p: f"{s} LIKE '{p}'", txt, st.sampled_from(["%a%", "Supplier#%", "%1", "_%", "%"])),
        st.builds(lambda a, lo, hi: f"{a} BETWEEN {lo} AND {hi}", num, ints, ints),
        st.builds(
            lambda a, xs: f"{a} IN ({', '.join(xs)})", st.sampled_from(INT_COLS), st.lists(ints, min_size=1, max_size=4)
        ),
        st.builds(lambda a: f"{a} IS NULL", st.sampled_from(INT_COLS + STR_COLS)),
        st.sampled_from(["true", "false"]),
    )
    if depth <= 0:
        return atoms
    sub = predicate(depth - 1)
    return st.one_of(
        atoms,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(["AND", "OR"]), sub),
        st.builds(lambda a: f"NOT ({a})", sub),
    )


def normal(value: Any) -> Any:
    """Values compared across engines: numbers as floats (types differ), the rest as is."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def run(db: engine.Database, sql: str, engine_name: str) -> list[tuple] | ColonnadeError:
    try:
        table = db.sql(sql, engine=engine_name).arrow()
    except ColonnadeError as exc:
        assert exc.client_error, f"{engine_name}: {type(exc).__name__}: {exc}\n{sql}"
        return exc
    return [tuple(normal(v) for v in row.values()) for row in table.to_pylist()]


def check_agree(db: engine.Database, sql: str) -> None:
    duck, polars = run(db, sql, "duckdb"), run(db, sql, "polars")
    if isinstance(duck, ColonnadeError) or isinstance(polars, ColonnadeError):
        return  # a clean 4xx on either side (checked in run)
    assert len(duck) == len(polars), sql
    for d, p in zip(duck, polars, strict=True):
        assert all(same(x, y) for x, y in zip(d, p, strict=True)), f"{sql}\nduckdb {d}\npolars {p}"


@given(expr=numeric(), where=predicate())
@FUZZ
def test_numeric_expressions_agree(db: engine.Database, expr: str, where: str) -> None:
    check_agree(db, f"SELECT s_suppkey, {expr} AS e FROM supplier WHERE {where} ORDER BY s_suppkey LIMIT 25")


@given(expr=text(), where=predicate())
@FUZZ
def test_text_expressions_agree(db: engine.Database, expr: str, where: str) -> None:
    check_agree(db, f"SELECT s_suppkey, {expr} AS e FROM supplier WHERE {where} ORDER BY s_suppkey LIMIT 25")


@given(where=predicate(3))
@FUZZ
def test_predicates_agree(db: engine.Database, where: str) -> None:
    check_agree(db, f"SELECT count(*) AS n, sum(s_acctbal) AS total FROM supplier WHERE {where}")
