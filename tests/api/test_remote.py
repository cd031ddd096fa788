"""``engine.connect("http://…")`` behaves like a local Database: same results, same errors."""

from __future__ import annotations

import pytest

import engine
from engine.errors import ColumnNotFound, QueryTimeout, SqlSyntaxError, StatementNotAllowed, TableNotFound
from tests.api.conftest import Server

Q = "SELECT l_returnflag, count(*) AS n, sum(l_extendedprice) AS total FROM lineitem GROUP BY ALL ORDER BY 1"


@pytest.fixture(scope="module")
def remote(server: Server):
    db = engine.connect(server.url)
    yield db
    db.close()


def test_same_catalog(remote, tpch_dir) -> None:
    local = engine.Database(tpch_dir)
    assert remote.tables() == local.tables()
    assert remote.schema("lineitem") == local.schema("lineitem")


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
def test_same_results(remote, tpch_dir, engine_name: str) -> None:
    local = engine.Database(tpch_dir).sql(Q, engine=engine_name).arrow()
    result = remote.sql(Q, engine=engine_name)
    assert result.arrow().equals(local)
    assert result.pl().height == local.num_rows and len(result.df()) == local.num_rows


def test_reader_streams_batches(remote) -> None:
    reader = remote.sql("SELECT * FROM lineitem, region").reader()
    sizes = [batch.num_rows for batch in reader]
    assert len(sizes) > 1 and sum(sizes) == 5 * remote.sql("SELECT count(*) FROM lineitem").fetchall()[0][0]


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT * FROM nope", TableNotFound),
        ("SELECT nope FROM orders", ColumnNotFound),
        ("SELEC 1", SqlSyntaxError),
        ("DELETE FROM orders", StatementNotAllowed),
    ],
)
def test_same_errors(remote, sql: str, error: type) -> None:
    with pytest.raises(error) as caught:
        remote.sql(sql)
    assert caught.value.code == error.code


def test_remote_timeout(remote) -> None:
    with pytest.raises(QueryTimeout):
        remote.sql("SELECT sum(hash(a.range * b.range)) FROM range(300000) a, range(300000) b", timeout_s=0.3)
    assert remote.sql("SELECT 1 AS one").fetchall() == [(1,)]


def test_repr_html(remote) -> None:
    html = remote.sql("SELECT * FROM nation")._repr_html_()
    assert "first 20 of 25 rows × 4 columns" in html and "ms" in html
