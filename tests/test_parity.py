"""One SQL suite, every engine (ibis style): each case under tests/fixtures/<folder>/*.sql runs
on DuckDB, Polars and Spark (a local Spark Connect server) through ``Database.sql``, and the
results must equal DuckDB's: the same column names, the same Arrow types, the same values.

Folders: ``tpch`` (22) and ``parity`` over TPC-H, ``tpcds`` (TPC-DS's 99 queries at a tiny
scale) and ``corpus`` (analyst SQL over tables with lists, structs, maps and JSON text).

A case an engine cannot run is declared in fixtures/parity/expectations.toml with the error it
must raise (``raises``: a 4xx code, never a 500) and the construct the message must name
(``names``); it runs as a strict xfail pinned to that error class, so a fixed engine shows up as
a failure to clean the marker, and a different error fails the test.

Spark takes ~1-2 s a query on this 2-core machine, so it runs the ``tpch``, ``parity`` and
``corpus`` folders and every tenth TPC-DS query; ``COLONNADE_SPARK_BREADTH=all`` runs them all.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot

import engine
from engine.errors import ERRORS_BY_CODE, ColonnadeError

FIXTURES = Path(__file__).parent / "fixtures"
ENGINES = ("duckdb", "polars", "spark")
EXPECTATIONS: dict[str, dict[str, Any]] = tomllib.loads((FIXTURES / "parity" / "expectations.toml").read_text())
CASES = sorted(p for p in FIXTURES.rglob("*.sql") if p.parent != FIXTURES)
DATA_DIRS = {"tpch": "tpch_dir", "parity": "tpch_dir", "tpcds": "tpcds_dir", "corpus": "corpus_dir"}
REL_TOL = 1e-6
SPARK_EVERY_NTH_TPCDS = 1 if os.environ.get("COLONNADE_SPARK_BREADTH") == "all" else 10


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def expected_error(case: str, engine_name: str) -> dict[str, str] | None:
    return EXPECTATIONS.get(case, {}).get(engine_name)


def runs_on(path: Path, engine_name: str) -> bool:
    if engine_name == "spark" and path.parent.name == "tpcds":
        return int(path.stem[1:]) % SPARK_EVERY_NTH_TPCDS == 1 % SPARK_EVERY_NTH_TPCDS
    return True


def case_params() -> list[Any]:
    out = []
    for path in CASES:
        for name in ENGINES:
            if not runs_on(path, name):
                continue
            expected = expected_error(case_id(path), name)
            marks = []
            if expected:
                error = ERRORS_BY_CODE[expected["raises"]]
                marks.append(pytest.mark.xfail(raises=error, strict=True, reason=f"{name}: {expected['names']}"))
            out.append(pytest.param(path, name, id=f"{case_id(path)}-{name}", marks=marks))
    return out


def pair_params() -> list[Any]:
    """(case, duckdb, other) for every case both engines run: refusals are checked above."""
    return [
        pytest.param(path, "duckdb", other, id=f"{case_id(path)}-duckdb-{other}")
        for path in CASES
        for other in ENGINES[1:]
        if runs_on(path, other)
        and not (expected_error(case_id(path), "duckdb") or expected_error(case_id(path), other))
    ]


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


def assert_same_result(sql: str, left: pa.Table, right: pa.Table, *, exact_schema: bool = True) -> None:
    assert left.num_columns == right.num_columns, (left.schema, right.schema)
    if exact_schema:  # what a client sees: names and Arrow types
        assert left.schema.names == right.schema.names
        assert [str(t) for t in left.schema.types] == [str(t) for t in right.schema.types]
    assert [kind(t) for t in left.schema.types] == [kind(t) for t in right.schema.types]
    assert left.num_rows == right.num_rows
    a, b = rows(left), rows(right)
    if not has_top_level_order(sql):
        a, b = sorted(a, key=sort_key), sorted(b, key=sort_key)
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        assert all(same_value(x, y) for x, y in zip(ra, rb, strict=True)), f"row {i}: {ra} != {rb}"


# -- tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest) -> Callable[[Path, str], pa.Table]:
    """Run a case on an engine once per session (the Spark server starts only when needed)."""
    memo: dict[tuple[Path, str], pa.Table | ColonnadeError] = {}
    databases: dict[tuple[str, str], engine.Database] = {}

    def database(folder: str, engine_name: str) -> engine.Database:
        key = (DATA_DIRS[folder], "spark" if engine_name == "spark" else "local")
        if key not in databases:
            data_dir = request.getfixturevalue(key[0])
            if key[1] == "spark":  # closed before the Spark server stops (spark_databases needs it)
                databases[key] = request.getfixturevalue("spark_databases")(data_dir)
            else:
                databases[key] = engine.Database(data_dir)
                request.addfinalizer(databases[key].close)
        return databases[key]

    def run_case(path: Path, engine_name: str) -> pa.Table:
        if (path, engine_name) not in memo:
            try:
                db = database(path.parent.name, engine_name)
                memo[path, engine_name] = db.sql(path.read_text(), engine=engine_name).arrow()
            except ColonnadeError as exc:
                memo[path, engine_name] = exc
        result = memo[path, engine_name]
        if isinstance(result, ColonnadeError):
            raise result
        return result

    return run_case


def test_enough_cases() -> None:
    count = {folder: len([p for p in CASES if p.parent.name == folder]) for folder in DATA_DIRS}
    assert count["tpch"] == 22
    assert count["tpcds"] == 99
    assert count["parity"] >= 15
    assert count["corpus"] >= 100


def test_expectations_name_real_cases_engines_and_client_errors() -> None:
    known = {case_id(p) for p in CASES}
    for case, entry in EXPECTATIONS.items():
        assert case in known, f"expectations.toml names unknown case {case}"
        assert set(entry) <= {*ENGINES, "empty"}, entry
        for name in set(entry) & set(ENGINES):
            assert set(entry[name]) == {"raises", "names"}, (case, name)
            error = ERRORS_BY_CODE[entry[name]["raises"]]
            assert error.client_error, f"{case} on {name}: a server error is never an expected outcome"


@pytest.mark.parametrize(("path", "engine_name"), case_params())
def test_case_runs(run: Callable[[Path, str], pa.Table], path: Path, engine_name: str) -> None:
    expected = expected_error(case_id(path), engine_name)
    try:
        table = run(path, engine_name)
    except ColonnadeError as exc:
        if not expected:
            raise
        # The pinned class is not enough: the code and the named construct must match.
        assert exc.code == expected["raises"], repr(exc)
        assert expected["names"].lower() in exc.detail.lower(), exc.detail
        refused = True
    else:
        refused = False
    if refused:
        # Outside the except block: pytest renders an xfail's traceback, and the engine error's
        # (through sqlglot and the engine, source parsed per frame) cost ~0.2 s of CPU per case.
        pytest.xfail(f"{engine_name}: {expected['names']} ({expected['raises']})")
    assert table.num_columns > 0
    if EXPECTATIONS.get(case_id(path), {}).get("empty"):
        assert table.num_rows == 0
    else:
        assert table.num_rows > 0, f"{case_id(path)} returned no rows on {engine_name}"


@pytest.mark.parametrize(("path", "left", "right"), pair_params())
def test_engines_agree(run: Callable[[Path, str], pa.Table], path: Path, left: str, right: str) -> None:
    assert_same_result(path.read_text(), run(path, left), run(path, right))


# -- the comparison itself must be able to fail ---------------------------------------------


def test_comparison_catches_a_changed_value() -> None:
    left = pa.table({"k": ["a", "b"], "v": [decimal.Decimal("1.00"), decimal.Decimal("2.00")]})
    right = pa.table({"k": pa.array(["a", "b"], pa.large_string()), "v": [1.0, 2.001]})
    with pytest.raises(AssertionError):
        assert_same_result("select 1", left, right, exact_schema=False)


def test_comparison_normalises_order_and_float_noise() -> None:
    left = pa.table({"k": ["a", "b"], "n": pa.array([1, 2], pa.int32()), "v": [1.5, None]})
    right = pa.table({"k": ["b", "a"], "n": pa.array([2, 1], pa.int32()), "v": [None, 1.5000000001]})
    assert_same_result("select 1", left, right)
    with pytest.raises(AssertionError):
        assert_same_result("select 1 order by 1", left, right)


def test_comparison_catches_a_changed_name_or_type() -> None:
    left = pa.table({"count_star()": pa.array([1], pa.int64())})
    with pytest.raises(AssertionError):
        assert_same_result("select 1", left, pa.table({"len": pa.array([1], pa.int64())}))
    with pytest.raises(AssertionError):
        assert_same_result("select 1", left, pa.table({"count_star()": pa.array([1], pa.int32())}))
    assert_same_result("select 1", left, pa.table({"len": pa.array([1], pa.int32())}), exact_schema=False)


# -- the DuckDB engine is DuckDB: TPC-DS through Colonnade equals raw DuckDB over the Parquet ---


@pytest.fixture(scope="session")
def raw_tpcds(tpcds_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for path in sorted((tpcds_dir.parent / "parquet").glob("*.parquet")):
        con.execute(f"CREATE VIEW {path.stem} AS SELECT * FROM read_parquet('{path}')")
    yield con
    con.close()


@pytest.mark.parametrize("path", [p for p in CASES if p.parent.name == "tpcds"], ids=case_id)
def test_duckdb_engine_equals_raw_duckdb(
    run: Callable[[Path, str], pa.Table], raw_tpcds: duckdb.DuckDBPyConnection, path: Path
) -> None:
    sql = path.read_text()
    assert_same_result(sql, raw_tpcds.sql(sql).to_arrow_table(), run(path, "duckdb"))
