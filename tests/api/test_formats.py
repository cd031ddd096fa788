"""Each response format carries exactly what the engine computed."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine

QUERY = (
    "SELECT o_orderkey, o_totalprice, o_orderdate, o_orderstatus, "
    "CASE WHEN o_orderkey % 3 = 0 THEN NULL ELSE o_comment END AS maybe "
    "FROM orders WHERE o_orderkey < 200 ORDER BY o_orderkey"
)


@pytest.fixture(scope="module")
def expected(tpch_dir) -> pa.Table:
    return engine.Database(tpch_dir).sql(QUERY).arrow()


def _get(http: httpx.Client, fmt: str | None = None, accept: str | None = None) -> httpx.Response:
    params = {"q": QUERY} | ({"format": fmt} if fmt else {})
    response = http.get("/api/sql", params=params, headers={"Accept": accept} if accept else {})
    assert response.status_code == 200, response.text
    return response


def test_json_keeps_exact_decimals_iso_dates_and_nulls(http: httpx.Client, expected: pa.Table) -> None:
    body = json.loads(_get(http, "json").content, parse_float=Decimal)
    assert [c["name"] for c in body["columns"]] == expected.column_names
    assert body["row_count"] == expected.num_rows and body["truncated"] is False
    assert all(set(row) == set(expected.column_names) for row in body["rows"])  # nulls never dropped
    for got, want in zip(body["rows"], expected.to_pylist(), strict=True):
        assert Decimal(str(got["o_totalprice"])) == want["o_totalprice"]
        assert got["o_orderdate"] == want["o_orderdate"].isoformat()
        assert got["maybe"] == want["maybe"]
    assert any(row["maybe"] is None for row in body["rows"])


def test_ndjson_one_object_per_row(http: httpx.Client, expected: pa.Table) -> None:
    response = _get(http, accept="application/x-ndjson")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["o_orderkey"] for r in rows] == expected.column("o_orderkey").to_pylist()


def test_csv_reads_back_with_polars(http: httpx.Client, expected: pa.Table) -> None:
    response = _get(http, "csv")
    assert response.headers["content-type"].startswith("text/csv")
    frame = pl.read_csv(io.BytesIO(response.content))
    assert frame.columns == expected.column_names
    assert frame["o_orderkey"].to_list() == expected.column("o_orderkey").to_pylist()


def test_arrow_stream_is_identical(http: httpx.Client, expected: pa.Table) -> None:
    response = _get(http, accept="application/vnd.apache.arrow.stream")
    assert pa.ipc.open_stream(response.content).read_all().equals(expected)


def test_parquet_is_identical(http: httpx.Client, expected: pa.Table) -> None:
    response = _get(http, "parquet")
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(response.content)).equals(expected)


def test_format_param_wins_over_accept(http: httpx.Client) -> None:
    response = _get(http, "csv", accept="application/json")
    assert response.headers["content-type"].startswith("text/csv")


def test_json_is_capped_at_max_result_rows(http: httpx.Client) -> None:
    body = http.get("/api/sql", params={"q": "SELECT * FROM lineitem"}).json()
    assert body["row_count"] == 5000 and len(body["rows"]) == 5000 and body["truncated"] is True


def test_rows_endpoint_in_every_format(http: httpx.Client, tpch_dir) -> None:
    params = {"select": "n_nationkey,n_name", "n_regionkey": "eq.1", "order": "n_nationkey.desc"}
    want = (
        engine.Database(tpch_dir)
        .sql("SELECT n_nationkey, n_name FROM nation WHERE n_regionkey = 1 ORDER BY n_nationkey DESC")
        .arrow()
    )
    arrow = http.get("/api/tables/nation/rows", params=params | {"format": "arrow"}).content
    assert pa.ipc.open_stream(arrow).read_all().equals(want)
    rows = http.get("/api/tables/nation/rows", params=params).json()["rows"]
    assert [r["n_name"] for r in rows] == want.column("n_name").to_pylist()
    csv = http.get("/api/tables/nation/rows", params=params | {"format": "csv"}).content
    assert pl.read_csv(io.BytesIO(csv))["n_nationkey"].to_list() == want.column("n_nationkey").to_pylist()


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
def test_post_json_body_with_params_on_both_engines(http: httpx.Client, engine_name: str) -> None:
    body = {
        "sql": "SELECT n_name FROM nation WHERE n_nationkey < ? ORDER BY n_nationkey",
        "params": [3],
        "engine": engine_name,
    }
    response = http.post("/api/sql", json=body, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert response.status_code == 200, response.text
    assert pa.ipc.open_stream(response.content).read_all().column(0).to_pylist() == ["ALGERIA", "ARGENTINA", "BRAZIL"]


def test_raw_sql_body(http: httpx.Client) -> None:
    for content_type in ("text/plain", "application/sql"):
        response = http.post("/api/sql", content="SELECT 40 + 2 AS answer", headers={"Content-Type": content_type})
        assert response.json()["rows"] == [{"answer": 42}]


EXOTIC = (
    "SELECT [1, 2] AS l, {'a': 1} AS s, 'ab'::BLOB AS b, INTERVAL 3 DAY AS i, TIME '10:00' AS t, "
    "NULL AS n, 'NaN'::DOUBLE AS nan, MAP {'k': 1} AS m, 12345678901234567890::HUGEINT AS h"
)


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "arrow", "parquet"])
def test_every_type_in_every_format(http: httpx.Client, fmt: str) -> None:
    """Types a format cannot hold natively are carried as text, never a 500."""
    response = http.get("/api/sql", params={"q": EXOTIC, "format": fmt})
    assert response.status_code == 200, response.text
    if fmt == "json":
        row = json.loads(response.content, parse_float=Decimal)["rows"][0]
        assert row == {
            "l": [1, 2],
            "s": {"a": 1},
            "b": "YWI=",
            "i": "3 days",
            "t": "10:00:00",
            "n": None,
            "nan": None,
            "m": {"k": 1},
            "h": 12345678901234567890,
        }
    elif fmt == "csv":
        assert pl.read_csv(io.BytesIO(response.content))["b"].to_list() == ["YWI="]
    elif fmt == "parquet":
        assert pq.read_table(io.BytesIO(response.content)).column("i").to_pylist() == ["3 days"]
