"""Result limits on a real server: every format obeys max_result_bytes, a cut is never silent,
and a 1 GB result of wide rows streams with bounded server memory (or is a clean 413)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.csv as pcsv
import pytest

import engine
from bench import procstat
from engine.errors import ResultTooLarge
from engine.formats import TRUNCATED
from tests.api.conftest import Server, serve
from tests.api.test_errors import problem

CAP = 20 * 1024**2
WIDE_ROWS = "SELECT range AS i, repeat('x', 50000) AS s FROM range(2000)"  # 100 MB in 50 KB rows
LONG = "SELECT l.*, r.r_name FROM lineitem l, region r"  # 300,000 rows, over 20 MB in any format
ONE_HUGE_ROW = "SELECT repeat('x', 30000000) AS s"


@pytest.fixture(scope="module")
def capped(tpch_dir: Path) -> Iterator[Server]:
    env = {"COLONNADE_LIMITS_MAX_RESULT_BYTES": str(CAP), "COLONNADE_LIMITS_MAX_RESULT_ROWS": "1000"}
    with serve(tpch_dir, env=env) as srv:
        yield srv


def get(server: Server, sql: str, fmt: str) -> httpx.Response:
    with server.client() as http:
        return http.get("/api/sql", params={"q": sql, "format": fmt})


def test_json_is_truncated_by_bytes_and_says_so(capped: Server) -> None:
    response = get(capped, WIDE_ROWS, "json")
    assert response.status_code == 200 and len(response.content) <= CAP
    body = response.json()
    assert body["truncated"] is True and 0 < body["row_count"] < 1000
    assert [r["i"] for r in body["rows"]] == list(range(body["row_count"]))


def test_ndjson_ends_with_a_marker_line(capped: Server) -> None:
    for sql, reason, rows in (
        (WIDE_ROWS, "max_result_bytes", None),
        ("SELECT * FROM lineitem", "max_result_rows", 1000),
    ):
        response = get(capped, sql, "ndjson")
        assert response.status_code == 200 and len(response.content) <= CAP
        lines = response.content.decode().split("\n")
        assert lines.pop() == ""
        marker = json.loads(lines.pop())[TRUNCATED]
        assert marker == {"reason": reason, "row_count": len(lines)}
        assert rows is None or len(lines) == rows


def test_ndjson_and_csv_complete_results_have_no_marker(capped: Server) -> None:
    for fmt in ("ndjson", "csv"):
        response = get(capped, "SELECT * FROM nation", fmt)
        assert response.status_code == 200 and TRUNCATED.encode() not in response.content


def test_csv_ends_with_a_comment_marker(capped: Server) -> None:
    response = get(capped, WIDE_ROWS, "csv")
    assert response.status_code == 200 and len(response.content) <= CAP
    data, _, marker = response.content.rpartition(f"# {TRUNCATED} ".encode())
    table = pcsv.read_csv(io.BytesIO(data))
    assert json.loads(marker) == {"reason": "max_result_bytes", "row_count": table.num_rows}
    assert table.column("i").to_pylist() == list(range(table.num_rows))
    assert table.num_rows > 0
    # Readers that know the comment character read the rows and skip the marker:
    import polars as pl

    assert pl.read_csv(io.BytesIO(response.content), comment_prefix="#").height == table.num_rows


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_binary_formats_past_the_cap(capped: Server, fmt: str) -> None:
    """413 when the first chunk is over the cap; later, the connection is cut (no final chunk)."""
    problem(get(capped, ONE_HUGE_ROW, fmt), 413, "result_too_large")
    sql = LONG if fmt == "arrow" else "SELECT md5(range::VARCHAR) AS m, hash(range) AS h FROM range(3000000)"
    with capped.client() as http, http.stream("GET", "/api/sql", params={"q": sql, "format": fmt}) as response:
        assert response.status_code == 200
        assert int(response.headers["x-colonnade-max-result-bytes"]) == CAP
        received = 0
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += len(chunk)
        assert received <= CAP
    with capped.client() as http:
        assert http.get("/health").json() == {"status": "ok"}


def test_remote_client_raises_instead_of_returning_part(capped: Server) -> None:
    with engine.connect(capped.url) as remote:
        with pytest.raises(ResultTooLarge):
            remote.sql(LONG).arrow()
        with pytest.raises(ResultTooLarge):  # the first chunk: a 413 problem
            remote.sql(ONE_HUGE_ROW).arrow()
        assert remote.sql("SELECT count(*) AS n FROM nation").arrow().to_pylist() == [{"n": 25}]


# -- 1 GB of wide rows: bounded server memory -------------------------------------------------------

FORMATS = ["json", "ndjson", "csv", "arrow", "parquet"]
GROWTH_LIMIT = 300 * 1024**2


@pytest.fixture(scope="module")
def big(tpch_dir: Path) -> Iterator[Server]:
    # One Polars worker with 6 GB: enough to compute 1 GB of 50 MB rows, so a too-wide row is
    # refused for its width (413), never for the worker's memory (503).
    env = {
        "COLONNADE_LIMITS_QUERY_TIMEOUT_S": "300",
        "COLONNADE_LIMITS_MEMORY_LIMIT": "6GB",
        "COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "1",
    }
    with serve(tpch_dir, env=env) as srv, srv.client() as http:
        http.post("/api/sql", json={"sql": "SELECT 1", "engine": "polars"})  # start the Polars worker
        yield srv


def stream_peak(server: Server, sql: str, fmt: str, engine_name: str) -> tuple[int, int, int]:
    """(status, bytes received, peak RSS growth of the server process) for one streamed query."""
    pid = server.process.pid
    time.sleep(0.3)
    before, peak, done = procstat.rss([pid]), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], procstat.rss([pid]))
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    try:
        params = {"q": sql, "format": fmt, "engine": engine_name}
        with (
            httpx.Client(base_url=server.url, timeout=300) as http,
            http.stream("GET", "/api/sql", params=params) as response,
        ):
            for chunk in response.iter_raw():
                received += len(chunk)
            status = response.status_code
    finally:
        done.set()
        sampler.join()
    return status, received, peak[0] - before


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("engine_name", "sql"),
    [
        ("duckdb", "SELECT repeat('x', 10000) AS s FROM range(100000)"),  # 10 KB rows
        ("polars", "SELECT lpad('', 10000000, 'x') AS s FROM range(100)"),  # 10 MB rows
    ],
    ids=["duckdb-10KB-rows", "polars-10MB-rows"],
)
def test_a_1gb_wide_row_result_streams_in_bounded_memory(big: Server, engine_name: str, sql: str, fmt: str) -> None:
    status, received, growth = stream_peak(big, sql, fmt, engine_name)
    assert status == 200
    assert received > (1000 if fmt == "parquet" else 1_000_000_000)  # Parquet compresses the x's away
    assert growth <= GROWTH_LIMIT, f"server RSS grew {growth / 1024**2:.0f} MB"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
def test_rows_wider_than_the_limit_are_a_clean_413(big: Server, engine_name: str, fmt: str) -> None:
    # Four rows of 50 MB, each past the row limit: more rows only cost time (DuckDB computes a
    # vector's rows before the first reaches the check), and a Polars worker holds its whole
    # result under its address-space cap, where 1 GB is a 503 on a busy machine.
    function = "repeat('x', 50000000)" if engine_name == "duckdb" else "lpad('', 50000000, 'x')"
    rows = 4
    sql = f"SELECT {function} AS s FROM range({rows})"
    with httpx.Client(base_url=big.url, timeout=300) as http:
        problem(http.get("/api/sql", params={"q": sql, "format": fmt, "engine": engine_name}), 413, "result_too_large")
        assert http.get("/health").json() == {"status": "ok"}
