"""Bad SQL is refused with the exact error class and code, on every engine, and nothing on disk
changes: not the tables, not the data dir, not the working directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine.errors import (
    ERRORS_BY_CODE,
    ColonnadeError,
    ColumnNotFound,
    InvalidParameters,
    SqlSyntaxError,
    StatementNotAllowed,
    TableNotFound,
)
from engine.sql import validate
from tests.security import corpus
from tests.security.sandbox import Sandbox, disk_state

ENGINES = ("duckdb", "polars")
HOSTILE = corpus.HOSTILE
OUTSIDE_TARGETS = ("/tmp/colonnade-stolen.parquet", "/tmp/colonnade-evil.duckdb", "/tmp/colonnade-export")


@pytest.fixture
def unchanged(db: engine.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Asserts after the test that tables, data dir, working dir and /tmp targets are untouched."""
    for name in ENGINES:  # engines set up their scratch dirs once, before the snapshot
        db.sql("SELECT 1", engine=name).arrow()
    monkeypatch.chdir(tmp_path)  # relative paths in hostile SQL would land here
    versions = {t: db.table(t).version for t in db.tables()}
    before = disk_state(db.catalog.data_dir)
    yield
    assert {t: db.table(t).version for t in db.tables()} == versions
    assert disk_state(db.catalog.data_dir) == before
    assert list(tmp_path.iterdir()) == []
    assert not [p for p in OUTSIDE_TARGETS if os.path.exists(p)]


def refused(
    db: engine.Database, sql: str, engine_name: str, error: type[ColonnadeError], **kw: object
) -> ColonnadeError:
    with pytest.raises(error) as info:
        db.sql(sql, engine=engine_name, **kw).arrow()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert info.value.code == error.code
    assert info.value.detail
    return info.value


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, db: engine.Database) -> Sandbox:
    """A canary file outside the data dir, and directories hostile SQL tries to write to."""
    return Sandbox(tmp_path_factory.mktemp("hostile"), db.catalog.data_dir)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("block", corpus.params())
def test_hostile_statement_is_refused(
    db: engine.Database, sandbox: Sandbox, block: corpus.Block, engine_name: str
) -> None:
    """Each corpus block gives exactly its code (or, for controls, harmless rows), and nothing
    outside the data dir was read or written."""
    sql = block.sql(sandbox.paths())
    if block.expect == corpus.OK:
        table = db.sql(sql, engine=engine_name).arrow()
        assert table.num_rows > 0
        assert not sandbox.leaks(str(table.to_pylist()))
    else:
        with pytest.raises(ColonnadeError) as info:
            db.sql(sql, engine=engine_name).arrow()
        err = info.value
        assert err.code == block.expect, f"{type(err).__name__}: {err}"
        assert type(err) is ERRORS_BY_CODE[block.expect]
        assert not sandbox.leaks(err.detail)
    assert sandbox.problems() == []


def test_hostile_file_covers_the_spec_list() -> None:
    text = HOSTILE.read_text().upper()
    for word in (
        "CREATE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "DROP",
        "COPY",
        "ATTACH",
        "INSTALL",
        "LOAD",
        "SET ",
        "PRAGMA",
        "READ_CSV('/ETC/PASSWD')",
        "FROM '/ETC/PASSWD'",
        "FROM 'X.PARQUET'",
        "GETENV",
    ):
        assert word in text, word


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
def test_unknown_table(db: engine.Database, engine_name: str) -> None:
    err = refused(db, "SELECT * FROM nation JOIN no_such_table USING (n_nationkey)", engine_name, TableNotFound)
    assert err.extra["table"] == "no_such_table"
    assert "no_such_table" in err.detail


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
def test_unknown_column(db: engine.Database, engine_name: str) -> None:
    err = refused(db, "SELECT n_nmae FROM nation", engine_name, ColumnNotFound)
    assert "n_nmae" in err.detail


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize(
    ("sql", "token"),
    [
        ("SELECT n_name\nFROM nation\nWHERE n_nationkey = = 1", "="),
        ("-- a comment\nSELECT (1 +\n  FROM nation", "FROM"),
        ("SELECT n_name FROM nation WHERE )", ")"),
    ],
)
def test_syntax_error_has_position(db: engine.Database, engine_name: str, sql: str, token: str) -> None:
    err = refused(db, sql, engine_name, SqlSyntaxError)
    position = err.extra["position"]
    line = sql.split("\n")[position["line"] - 1]
    assert line[: position["column"]].endswith(token), (position, line)
    assert sql[: position["offset"]].endswith(token)
    assert f"line {position['line']}" in err.detail


def test_empty_query_is_a_syntax_error(db: engine.Database) -> None:
    for sql in ("", "   ", "-- only a comment"):
        refused(db, sql, "duckdb", SqlSyntaxError)


# -- CTE scoping: a CTE named like a table must not hide that table elsewhere ----------------

SCOPING = [
    ("WITH orders AS (SELECT 1 AS x) SELECT * FROM orders", set()),
    ("SELECT * FROM (WITH orders AS (SELECT 1 AS x) SELECT * FROM orders) a, orders", {"orders"}),
    ("WITH orders AS (SELECT * FROM orders) SELECT count(*) FROM orders", {"orders"}),
    ("WITH a AS (SELECT 1 AS x), orders AS (SELECT * FROM a) SELECT * FROM orders", set()),
    ("WITH a AS (SELECT * FROM orders), orders AS (SELECT 1 AS x) SELECT * FROM a", {"orders"}),
    ("SELECT (SELECT count(*) FROM orders) FROM (WITH orders AS (SELECT 1 AS x) SELECT * FROM orders) t", {"orders"}),
    (
        "WITH x AS (SELECT 1 AS y) SELECT * FROM x WHERE EXISTS (WITH orders AS (SELECT 2) SELECT 1 FROM orders)"
        " AND 0 < (SELECT count(*) FROM orders)",
        {"orders"},
    ),
    (
        "WITH RECURSIVE orders AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM orders WHERE n < 3) SELECT * FROM orders",
        set(),
    ),
]


@pytest.mark.parametrize(("sql", "real"), SCOPING)
def test_cte_does_not_hide_real_tables(db: engine.Database, sql: str, real: set[str]) -> None:
    assert set(db.validate(sql).tables) == real


@pytest.mark.parametrize(("sql", "real"), [s for s in SCOPING if s[1]])
def test_hidden_table_is_still_checked(db: engine.Database, sql: str, real: set[str]) -> None:
    """What an access check sees: a resolver that refuses ``orders`` must be asked about it."""

    def resolve(name: str) -> str:
        if name.lower() in real:
            raise TableNotFound(f"table {name!r} does not exist", table=name)
        return db.catalog.resolve(name)

    with pytest.raises(TableNotFound):
        validate(sql, resolve)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_cte_shadowing_reads_the_right_table(db: engine.Database, engine_name: str) -> None:
    sql = (
        "SELECT (SELECT count(*) FROM (WITH region AS (SELECT 1 AS x) SELECT * FROM region)) AS cte_rows,"
        " (SELECT count(*) FROM region) AS real_rows"
    )
    assert db.sql(sql, engine=engine_name).fetchall() == [(1, 5)]
    inner = "WITH region AS (SELECT * FROM region WHERE r_regionkey = 0) SELECT count(*) FROM region"
    assert db.sql(inner, engine=engine_name).fetchall() == [(1,)]


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine_name", ENGINES)
def test_parameters_are_bound(db: engine.Database, engine_name: str) -> None:
    sql = "SELECT n_name FROM nation WHERE n_nationkey = ? OR n_name = ? ORDER BY n_name"
    assert db.sql(sql, params=[3, "PERU"], engine=engine_name).fetchall() == [("CANADA",), ("PERU",)]
    numbered = "SELECT $2 - $1 AS d, $1 AS again"
    assert db.sql(numbered, params=[1, 10], engine=engine_name).fetchall() == [(9, 1)]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
def test_parameters_are_never_spliced(db: engine.Database, engine_name: str) -> None:
    evil = "x' OR '1'='1"
    assert db.sql("SELECT * FROM nation WHERE n_name = ?", params=[evil], engine=engine_name).fetchall() == []
    drop = "'; DROP TABLE nation; --"
    assert db.sql("SELECT ? AS s", params=[drop], engine=engine_name).fetchall() == [(drop,)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_parameter_types_agree(db: engine.Database, engine_name: str) -> None:
    result = db.sql(
        "SELECT ? AS n, ? AS b, ? AS f, ? AS s, ? AS z", params=[7, True, 1.5, "é", None], engine=engine_name
    )
    assert result.fetchall() == [(7, True, 1.5, "é", None)]
    n, b, f, s = result.schema.types[:4]
    assert pa.types.is_integer(n)  # DuckDB binds small ints as INTEGER, Polars as BIGINT
    assert (b, f, s) == (pa.bool_(), pa.float64(), pa.string())


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT * FROM nation WHERE n_nationkey = ? AND n_name = ?", [1]),
        ("SELECT ?", [1, 2]),
        ("SELECT 1", [1]),
        ("SELECT ?", None),
        ("SELECT ?", [[1, 2]]),
        ("SELECT $name", ["x"]),
        ("SELECT ?, $1", [1]),
    ],
)
def test_wrong_parameters(db: engine.Database, engine_name: str, sql: str, params: list | None) -> None:
    refused(db, sql, engine_name, InvalidParameters, params=params)


def test_statement_not_allowed_is_403_and_says_why(db: engine.Database) -> None:
    err = refused(db, "SELECT * FROM read_csv('/etc/passwd')", "duckdb", StatementNotAllowed)
    assert err.code == "statement_not_allowed" and err.client_error
    assert "read_csv" in err.detail


# -- what is accepted, and the checks' own checks ------------------------------------------


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("VALUES (1, 'a'), (2, 'b')", 2),
        ("FROM nation LIMIT 3", 3),
        ("SELECT * FROM range(4)", 4),
        ("SELECT * FROM generate_series(1, 3)", 3),
        ('SELECT * FROM "NATION" n1 JOIN Nation AS n2 USING (n_nationkey)', 25),
        ("  -- leading comment\n/* block */ SELECT 1 AS one", 1),
    ],
)
def test_read_only_forms_are_accepted(db: engine.Database, engine_name: str, sql: str, rows: int) -> None:
    assert db.sql(sql, engine=engine_name).arrow().num_rows == rows


@pytest.mark.parametrize("engine_name", ENGINES)
def test_explain_is_accepted(db: engine.Database, engine_name: str) -> None:
    assert db.validate("EXPLAIN ANALYZE SELECT count(*) FROM lineitem").tables == ("lineitem",)
    assert db.sql("EXPLAIN SELECT count(*) FROM lineitem", engine=engine_name).arrow().num_rows > 0


def test_disk_state_sees_changes(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    before = disk_state(tmp_path)
    (tmp_path / "a").write_text("22")
    assert disk_state(tmp_path) != before
    (tmp_path / "a").write_text("1")
    os.utime(tmp_path / "a", ns=(before["a"][1], before["a"][1]))
    assert disk_state(tmp_path) == before
    (tmp_path / "sub").mkdir()
    assert disk_state(tmp_path) != before
