"""Polars gives DuckDB's answer: a differential fuzzer over the semantics where the two engines
differ by nature (integer widths and overflow, rounding, division, dates, NULL order, names).

Hypothesis writes queries from a small grammar over a table of edge values; each runs on both
engines through ``Database.sql``. Where DuckDB answers, Polars must give the same names, Arrow
types and values; where DuckDB refuses (an overflow), Polars must refuse too — with a 4xx,
never a 500 and never a number. Derandomised; ``COLONNADE_FUZZ_EXAMPLES`` runs more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.backends.reference import conform
from engine.config import load_settings
from engine.errors import ColonnadeError, ConfigError, UnsupportedQuery
from tests.test_parity import assert_same_result

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "60"))

EDGES = """
SELECT * FROM (VALUES
    (1, 2147483000::INTEGER, 32000::SMALLINT, 9000000000000000000::BIGINT, 2.45::DECIMAL(10, 2), 2.5::DOUBLE,
     DATE '2024-02-29', TIMESTAMP '2024-02-29 23:59:59', 'Ünï 🚀'),
    (1, -2147483000::INTEGER, -32000::SMALLINT, -9000000000000000000::BIGINT, -2.45::DECIMAL(10, 2), -2.5::DOUBLE,
     DATE '1970-01-01', TIMESTAMP '1970-01-01 00:00:00.5', ''),
    (2, 7, 3::SMALLINT, 5, 0.05::DECIMAL(10, 2), 0.125::DOUBLE, DATE '2000-01-31', TIMESTAMP '2000-01-31 12:00:00', 'abc'),
    (2, -7, -3::SMALLINT, -5, -1.25::DECIMAL(10, 2), -0.5::DOUBLE, DATE '1999-12-31', TIMESTAMP '1999-12-31 23:00:00', 'a'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, 0, 0::SMALLINT, 0, 0.00::DECIMAL(10, 2), 1e300::DOUBLE, DATE '2024-01-01', TIMESTAMP '2024-01-01 00:00:00', 'x y')
) t(k, i, s, b, d, f, dt, ts, t)
"""

INTS = st.sampled_from(["i", "s", "b", "k"])
NUMBERS = st.sampled_from(["i", "s", "b", "d", "f", "k", "1000000", "3", "2.5"])
SCALARS = st.one_of(
    NUMBERS,
    st.builds("({} {} {})".format, NUMBERS, st.sampled_from(["+", "-", "*", "/", "//", "%"]), NUMBERS),
    st.builds("round({}, {})".format, st.sampled_from(["d", "f", "f * 3", "d / 3"]), st.sampled_from(["0", "1", "2"])),
    st.builds("round({})".format, st.sampled_from(["f", "d", "-f"])),
    st.builds("abs({})".format, NUMBERS),
    st.sampled_from(
        [
            "dt - DATE '2000-01-01'",
            "date_diff('day', dt, DATE '2024-06-30')",
            "date_diff('month', dt, DATE '2024-06-30')",
            "date_diff('hour', ts, TIMESTAMP '2024-06-30 10:00:00')",
            "dt + INTERVAL 1 MONTH",
            "dt - INTERVAL 2 HOUR",
            "ts::VARCHAR",
            "replace(t, '', '-')",
            "replace(t, 'a', '')",
            "length(t)",
        ]
    ),
)
AGGREGATES = st.builds(
    "{}({})".format, st.sampled_from(["sum", "avg", "min", "max", "count"]), st.one_of(INTS, SCALARS)
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(["rows", "grouped", "global"]))
    if shape == "rows":
        expr = draw(SCALARS)
        direction = draw(st.sampled_from(["", " DESC", " NULLS FIRST", " DESC NULLS FIRST"]))
        return f"SELECT k, {expr} FROM edges ORDER BY 2{direction}, k, i NULLS FIRST"
    aggregate = draw(AGGREGATES)
    if shape == "grouped":
        return f"SELECT k, {aggregate} FROM edges GROUP BY k ORDER BY k"
    return f"SELECT {aggregate}, count(*) FROM edges"


@pytest.fixture(scope="module")
def edges_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Database]:
    path: Path = tmp_path_factory.mktemp("edges") / "data"
    with duckdb.connect() as con:
        table = con.sql(EDGES).to_arrow_table()
    with engine.Database(path, create=True) as db:
        db.ingest(table, table="edges")
        yield db


def outcome(db: engine.Database, sql: str, engine_name: str) -> pa.Table | ColonnadeError:
    try:
        return db.sql(sql, engine=engine_name).arrow()
    except ColonnadeError as exc:
        return exc


@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=queries())
def test_polars_gives_duckdbs_answer(edges_db: engine.Database, sql: str) -> None:
    expected, got = outcome(edges_db, sql, "duckdb"), outcome(edges_db, sql, "polars")
    if isinstance(expected, ColonnadeError):  # e.g. an INT32 overflow: Polars must refuse too
        assert expected.client_error, repr(expected)
        assert isinstance(got, ColonnadeError), f"DuckDB refused ({expected.detail}) but Polars answered"
        assert got.client_error, repr(got)
        return
    assert not isinstance(got, ColonnadeError), f"{sql}: {got!r}"
    assert_same_result(sql, expected, got)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sum(i) FROM edges",  # 32-bit values summed past 2^31
        "SELECT sum(i * 1) FROM edges WHERE k = 1",
        "SELECT round(f), round(-f), round(d, 1) FROM edges",  # halves: away from zero
        "SELECT count(*), sum(k) FROM edges",  # DuckDB's names: count_star(), sum(k)
        "SELECT k, dt - DATE '2000-01-01' FROM edges ORDER BY 2 DESC, 1",  # days; NULLs last
        "SELECT replace(t, '', '-') FROM edges",
    ],
)
def test_known_differences_are_gone(edges_db: engine.Database, sql: str) -> None:
    assert_same_result(sql, edges_db.sql(sql).arrow(), edges_db.sql(sql, engine="polars").arrow())


# -- conforming a result to DuckDB's shape ------------------------------------------------------


def test_conform_renames_and_casts_to_the_reference() -> None:
    got = pa.table({"len": pa.array([3], pa.int32()), "s": pa.array(["x"], pa.large_string())})
    reference = pa.schema([("count_star()", pa.int64()), ("s", pa.string())])
    assert conform(got, reference).schema == reference


def test_conform_refuses_what_does_not_fit() -> None:
    reference = pa.schema([("v", pa.int32())])
    with pytest.raises(UnsupportedQuery, match="'v'"):
        conform(pa.table({"v": pa.array([2**40], pa.int64())}), reference)  # never a wrapped number
    with pytest.raises(UnsupportedQuery, match="2 columns"):
        conform(pa.table({"v": [1], "w": [2]}), reference)


# -- engine="auto" ------------------------------------------------------------------------------


def test_auto_prefers_polars_and_falls_back_to_duckdb(tpch_dir: Path) -> None:
    settings = load_settings(environ={"COLONNADE_SERVER_AUTO_PREFER": "polars"})
    refused = "SELECT count(*) AS n FROM (FROM nation USING SAMPLE 5 ROWS)"
    with engine.Database(tpch_dir, settings=settings) as db:
        assert db.sql("SELECT count(*) AS n FROM nation", engine="auto").engine == "polars"
        with pytest.raises(UnsupportedQuery, match="SAMPLE"):
            db.sql(refused, engine="polars")
        result = db.sql(refused, engine="auto")
        assert result.engine == "duckdb"
        assert result.fetchall() == [(5,)]
    with engine.Database(tpch_dir) as db:  # the default: auto is DuckDB below [spark] auto_min_bytes
        assert db.sql("SELECT 1 AS one", engine="auto").engine == "duckdb"


def test_auto_prefer_is_checked() -> None:
    with pytest.raises(ConfigError, match="auto_prefer"):
        load_settings(environ={"COLONNADE_SERVER_AUTO_PREFER": "spark"})
