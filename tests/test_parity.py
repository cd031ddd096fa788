"""One SQL suite, every engine (ibis style): each case under tests/fixtures/<folder>/*.sql runs
on DuckDB, Polars and Spark (a local Spark Connect server) through ``Database.sql`` and the
Arrow results must agree with DuckDB's.

Cases an engine cannot run are declared in fixtures/parity/expectations.toml and run as strict
xfails, so a fixed engine shows up as a failure to clean the marker, never as a silent skip.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlglot

import engine

FIXTURES = Path(__file__).parent / "fixtures"
ENGINES = ("duckdb", "polars", "spark")
EXPECTATIONS: dict[str, dict[str, Any]] = tomllib.loads((FIXTURES / "parity" / "expectations.toml").read_text())
CASES = sorted(p for p in FIXTURES.rglob("*.sql") if p.parent != FIXTURES)
REL_TOL = 1e-6


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def expected_failure(case: str, engines: tuple[str, ...]) -> str | None:
    reasons = [f"{e}: {EXPECTATIONS.get(case, {})[e]}" for e in engines if e in EXPECTATIONS.get(case, {})]
    return "; ".join(reasons) or None


def params(engines_per_case: Callable[[Path], list[tuple[str, ...]]]) -> list[Any]:
    out = []
    for path in CASES:
        for engines in engines_per_case(path):
            reason = expected_failure(case_id(path), engines)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            out.append(pytest.param(path, *engines, id="-".join((case_id(path), *engines)), marks=marks))
    return out


# -- normalisation --------------------------------------------------------------------------


def kind(t: pa.DataType) -> str:
    """The type a column is compared as: string widths, integer widths and decimal/float merge."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_integer(t) or (pa.types.is_decimal(t) and t.scale == 0):
        return "int64"
    if pa.types.is_decimal(t) or pa.types.is_floating(t):
        return "float64"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.tz or ''}]"
    return str(t)


def same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (float, decimal.Decimal)) or isinstance(b, (float, decimal.Decimal)):
        fa, fb = float(a), float(b)
        return (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=1e-9)
    return a == b


def sort_key(row: tuple) -> tuple:
    def one(v: Any) -> tuple:
        if v is None:
            return (0, "")
        if isinstance(v, (float, decimal.Decimal)):
            return (1, float(f"{float(v):.6g}"))
        if isinstance(v, (int, bool)):
            return (1, v)
        if isinstance(v, (dt.date, dt.datetime)):
            return (2, v.isoformat())
        return (3, str(v))

    return tuple(one(v) for v in row)


def rows(table: pa.Table) -> list[tuple]:
    columns = [c.to_pylist() for c in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


def has_top_level_order(sql: str) -> bool:
    return bool(sqlglot.parse_one(sql, read="duckdb").args.get("order"))


def assert_same_result(sql: str, left: pa.Table, right: pa.Table) -> None:
    assert left.num_columns == right.num_columns, (left.schema, right.schema)
    assert [kind(t) for t in left.schema.types] == [kind(t) for t in right.schema.types]
    assert left.num_rows == right.num_rows
    a, b = rows(left), rows(right)
    if not has_top_level_order(sql):
        a, b = sorted(a, key=sort_key), sorted(b, key=sort_key)
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        assert all(same_value(x, y) for x, y in zip(ra, rb, strict=True)), f"row {i}: {ra} != {rb}"


# -- tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def run(db: engine.Database, request: pytest.FixtureRequest) -> Callable[[Path, str], pa.Table]:
    memo: dict[tuple[Path, str], pa.Table] = {}

    def run_case(path: Path, engine_name: str) -> pa.Table:
        if (path, engine_name) not in memo:
            # The Spark server starts only when a Spark case runs.
            database = request.getfixturevalue("spark_db") if engine_name == "spark" else db
            memo[path, engine_name] = database.sql(path.read_text(), engine=engine_name).arrow()
        return memo[path, engine_name]

    return run_case


def test_enough_cases() -> None:
    assert len([p for p in CASES if p.parent.name == "tpch"]) == 22
    assert len([p for p in CASES if p.parent.name == "parity"]) >= 15


def test_expectations_name_real_cases_and_engines() -> None:
    known = {case_id(p) for p in CASES}
    for case, entry in EXPECTATIONS.items():
        assert case in known, f"expectations.toml names unknown case {case}"
        assert set(entry) <= {*ENGINES, "empty"}, entry


@pytest.mark.parametrize(("path", "engine_name"), params(lambda p: [(e,) for e in ENGINES]))
def test_case_runs(run: Callable[[Path, str], pa.Table], path: Path, engine_name: str) -> None:
    table = run(path, engine_name)
    assert table.num_columns > 0
    if EXPECTATIONS.get(case_id(path), {}).get("empty"):
        assert table.num_rows == 0
    else:
        assert table.num_rows > 0, f"{case_id(path)} returned no rows on {engine_name}"


@pytest.mark.parametrize(("path", "left", "right"), params(lambda p: [("duckdb", other) for other in ENGINES[1:]]))
def test_engines_agree(run: Callable[[Path, str], pa.Table], path: Path, left: str, right: str) -> None:
    assert_same_result(path.read_text(), run(path, left), run(path, right))


# -- the comparison itself must be able to fail ---------------------------------------------


def test_comparison_catches_a_changed_value() -> None:
    left = pa.table({"k": ["a", "b"], "v": [decimal.Decimal("1.00"), decimal.Decimal("2.00")]})
    right = pa.table({"k": pa.array(["a", "b"], pa.large_string()), "v": [1.0, 2.001]})
    with pytest.raises(AssertionError):
        assert_same_result("select 1", left, right)


def test_comparison_normalises_types_and_order() -> None:
    left = pa.table({"k": ["a", "b"], "n": pa.array([1, 2], pa.int32()), "v": [decimal.Decimal("1.5"), None]})
    right = pa.table({"k": pa.array(["b", "a"], pa.large_string()), "n": [2, 1], "v": [None, 1.5000000001]})
    assert_same_result("select 1", left, right)
    with pytest.raises(AssertionError):
        assert_same_result("select 1 order by 1", left, right)
