"""Any column name Delta holds reads the same on every engine: a property test.

Hypothesis draws column names from all of Unicode (spaces, quotes, dots, brackets, operators,
digits first, keywords, letters whose case differs); each table is ingested once and queried
through shapes that put the names in every position (``*``, select list, WHERE, GROUP BY, a
CTE, an alias). Polars and Spark must return DuckDB's names, types and values. Derandomised;
``COLONNADE_FUZZ_EXAMPLES`` runs more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import ColonnadeError
from tests.test_parity import assert_same_result

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "15"))

# Every character but NUL and the surrogates, with the troublesome ASCII drawn often.
CHARS = st.one_of(
    st.sampled_from(list(" \t\n\"'`.,;:()[]{}=+-*/\\$@#%^&|<>?!~09aAzZ_")),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
)
NAMES = st.one_of(
    st.text(CHARS, min_size=1, max_size=10),
    st.sampled_from(["select", "from", "Order", "ß", "K", "k", "Ç", "ç", "ǅ", "Σ", "σ", "ς", "`", "a`b", "[x]"]),
)


# Names Delta tells apart: it matches them case-insensitively (see the refusals below).
COLUMNS = st.lists(NAMES, min_size=1, max_size=8, unique_by=str.lower).filter(lambda names: "_k" not in names)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shapes(names: list[str]) -> list[str]:
    first, last = q(names[0]), q(names[-1])
    listed = ", ".join(q(n) for n in names)
    return [
        "SELECT * FROM t ORDER BY _k",
        f"SELECT {listed} FROM t ORDER BY _k",
        f"SELECT {first}, count(*) AS n FROM t WHERE {last} >= 0 GROUP BY {first} ORDER BY 1",
        f"WITH w AS (SELECT {first}, _k FROM t WHERE {first} IS NOT NULL) SELECT * FROM w ORDER BY _k",
        f"SELECT t.{first} AS {last}, {first} + 1 FROM t ORDER BY _k DESC",
    ]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("names")


def table_of(names: list[str]) -> pa.Table:
    return pa.table({"_k": [0, 1, 2], **{n: pa.array([i, None, -i], pa.int64()) for i, n in enumerate(names)}})


def check(db: engine.Database, names: list[str], other: str) -> None:
    db.ingest(table_of(names), table="t", mode="overwrite")
    for sql in shapes(names):
        expected = db.sql(sql).arrow()
        try:
            got = db.sql(sql, engine=other).arrow()
        except ColonnadeError as exc:
            pytest.fail(f"{other} refused {sql!r}: {exc!r}")
        assert_same_result(sql, expected, got)


@pytest.fixture(scope="module")
def polars_names_db(scratch: Path) -> Iterator[engine.Database]:
    # One database for every example: each new one would start its own Polars workers.
    with engine.Database(scratch / "polars", create=True) as db:
        yield db


@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=COLUMNS)
def test_polars_reads_any_column_name_as_duckdb_does(polars_names_db: engine.Database, names: list[str]) -> None:
    check(polars_names_db, names, "polars")


@pytest.fixture(scope="module")
def spark_names_db(scratch: Path, spark_databases: Callable[[Path], engine.Database]) -> Iterator[engine.Database]:
    engine.Database(scratch / "spark", create=True).close()
    yield spark_databases(scratch / "spark")


@settings(
    max_examples=max(EXAMPLES // 4, 5),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(names=COLUMNS)
def test_spark_reads_any_column_name_as_duckdb_does(spark_names_db: engine.Database, names: list[str]) -> None:
    check(spark_names_db, names, "spark")


# -- names Delta cannot tell apart --------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "says"),
    [
        (["A", "a"], "'A' and 'a', which differ only in case"),
        (["Σ", "σ"], "'Σ' and 'σ', which differ only in case"),  # DuckDB would keep both; Delta cannot
        (["v", "v"], "two columns named 'v'"),  # DuckDB would rename the second v_1
    ],
)
def test_names_that_differ_only_in_case_are_refused(tmp_path: Path, names: list[str], says: str) -> None:
    data = pa.table([pa.array([1]) for _ in names], names=names)
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(pa.table({"kept": [7]}), table="t")
        for table in ("t", "new"):
            with pytest.raises(ColonnadeError, match=says) as caught:
                db.ingest(data, table=table, schema_evolution="add-columns")
            assert caught.value.code == "schema_mismatch"
        assert db.tables() == ["t"]
        assert db.sql("SELECT * FROM t").fetchall() == [(7,)]


def test_an_input_column_takes_the_tables_spelling(tmp_path: Path) -> None:
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(pa.table({"Name": [1], "ÉTÉ": [2]}), table="t")
        db.ingest(pa.table({"NAME": [3], "été": [4]}), table="t")  # strict: the same two columns
        assert db.sql("SELECT * FROM t ORDER BY 1").arrow().to_pydict() == {"Name": [1, 3], "ÉTÉ": [2, 4]}


@pytest.mark.parametrize("header", ["id,ID", "v;v", "Été,été"])
def test_a_csv_header_with_names_that_differ_only_in_case_is_refused(tmp_path: Path, header: str) -> None:
    """DuckDB would read the second name as ``ID_1``: a column the file does not have."""
    source = tmp_path / "in.csv"
    delimiter = ";" if ";" in header else ","
    source.write_text(f"{header}\n1{delimiter}2\n")
    with engine.Database(tmp_path / "data", create=True) as db:
        with pytest.raises(ColonnadeError, match="CSV header") as caught:
            db.ingest(str(source), table="t")
        assert caught.value.code == "schema_mismatch"
        assert db.tables() == []
