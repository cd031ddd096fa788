"""A query URL is a file data tools open directly: HEAD on every GET route, and Parquet, Arrow
and CSV results served from the result store with Content-Length, ranges, strong ETags and
If-Range — checked with the real clients (Polars, pandas/fsspec, pyarrow, curl) against the
same query's Arrow result."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from api.results import StoredResult, Unsatisfiable, answer_file, file_body, parse_ranges
from tests.api.conftest import Server, serve
from tests.api.test_auth import create_token

Q = "SELECT o_orderkey, o_totalprice, o_orderdate, o_comment FROM orders WHERE o_orderkey < 3000 ORDER BY o_orderkey"


def url(server: Server, fmt: str, sql: str = Q) -> str:
    return f"{server.url}/api/sql?q={urllib.parse.quote(sql)}&format={fmt}"


@pytest.fixture(scope="module")
def expected(db: engine.Database) -> pa.Table:
    return db.sql(Q).arrow()


def test_polars_pandas_pyarrow_and_duckdb_style_clients_read_the_url(server: Server, expected: pa.Table) -> None:
    parquet = url(server, "parquet")
    assert pl.read_parquet(parquet).to_arrow().cast(expected.schema).equals(expected)
    scanned = pl.scan_parquet(parquet).filter(pl.col("o_orderkey") > 100).collect()
    later = expected.filter(pa.compute.greater(expected["o_orderkey"], 100))
    assert scanned.to_arrow().cast(expected.schema).equals(later)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), expected.to_pandas())
    with fsspec.filesystem("http").open(parquet) as f:
        assert pq.read_table(f).equals(expected)
    csv = url(server, "csv")
    assert pl.read_csv(csv)["o_orderkey"].to_list() == expected["o_orderkey"].to_pylist()
    assert pd.read_csv(csv)["o_comment"].tolist() == expected["o_comment"].to_pylist()
    arrow = httpx.get(url(server, "arrow")).content
    assert pa.ipc.open_stream(arrow).read_all().equals(expected)


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "csv"])
def test_ranges_reassemble_the_file(server: Server, fmt: str) -> None:
    whole = httpx.get(url(server, fmt), headers={"Range": "bytes=0-"})
    assert whole.status_code == 206 and whole.headers["accept-ranges"] == "bytes"
    size = int(whole.headers["content-range"].rsplit("/", 1)[1])
    assert len(whole.content) == size == int(whole.headers["content-length"])
    etag = whole.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    pieces = []
    for first in range(0, size, size // 3 + 1):
        last = min(size - 1, first + size // 3)
        part = httpx.get(url(server, fmt), headers={"Range": f"bytes={first}-{last}", "If-Range": etag})
        assert part.status_code == 206 and part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        pieces.append(part.content)
    assert b"".join(pieces) == whole.content
    suffix = httpx.get(url(server, fmt), headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == whole.content[-10:]
    head = httpx.head(url(server, fmt))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size) and head.headers["etag"] == etag


def test_curl_byte_ranges(server: Server) -> None:
    full = httpx.get(url(server, "parquet"), headers={"Range": "bytes=0-"}).content
    out = subprocess.run(["curl", "-s", "-r", "4-99", url(server, "parquet")], capture_output=True, check=True)
    assert out.stdout == full[4:100]


def test_multiple_ranges_are_multipart(server: Server) -> None:
    full = httpx.get(url(server, "csv"), headers={"Range": "bytes=0-"}).content
    response = httpx.get(url(server, "csv"), headers={"Range": "bytes=0-9, 20-29, -5"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    parts = [p for p in response.content.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    bodies = [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts]
    assert bodies == [full[0:10], full[20:30], full[-5:]]
    assert int(response.headers["content-length"]) == len(response.content)


def test_bad_ranges(server: Server) -> None:
    full = httpx.get(url(server, "parquet"), headers={"Range": "bytes=0-"})
    size, etag = len(full.content), full.headers["etag"]
    for malformed in ("bytes=abc", "bytes=5-2", "items=0-5", "bytes=", "bytes=--3"):
        response = httpx.get(url(server, "parquet"), headers={"Range": malformed})
        assert response.status_code == 200 and response.content == full.content, malformed
    past = httpx.get(url(server, "parquet"), headers={"Range": f"bytes={size}-{size + 10}"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    stale = httpx.get(url(server, "parquet"), headers={"Range": "bytes=0-9", "If-Range": '"0000000000000000"'})
    assert stale.status_code == 200 and stale.content == full.content
    fresh = httpx.get(url(server, "parquet"), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == full.content[:10]
    assert httpx.get(url(server, "parquet"), headers={"If-None-Match": etag}).status_code == 304


def test_every_get_route_answers_head(server: Server) -> None:
    for path in ("/health", "/ready", "/api/tables", "/api/tables/nation", "/api/tables/nation/history",
                 "/api/tables/nation/rows?limit=2", "/api/sql?q=SELECT%201", "/", "/schema/openapi.json",
                 "/metrics", "/api/queries"):  # fmt: skip
        get, head = httpx.get(server.url + path), httpx.head(server.url + path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"], path
        for name in ("etag", "content-length"):
            volatile = path in ("/metrics", "/api/queries") or "x-colonnade-query-id" in get.headers
            if name in get.headers and not volatile:
                assert head.headers.get(name) == get.headers[name], (path, name)


def test_downloads_are_named(server: Server) -> None:
    rows = httpx.get(f"{server.url}/api/tables/nation/rows", params={"format": "csv"})
    assert rows.headers["content-disposition"] == 'attachment; filename="nation.csv"'
    query = httpx.get(url(server, "parquet"))
    assert query.headers["content-disposition"].startswith('attachment; filename="query-')
    assert "content-disposition" not in httpx.get(url(server, "json")).headers
    # Every way of answering names the file alike: a miss, a hit, the hit path, a stored file.
    sql = f"SELECT n_name, {time.time_ns()} AS fresh FROM nation"
    answers = [httpx.get(f"{server.url}/api/sql", params={"q": sql, "format": "csv"}) for _ in range(3)]
    answers.append(
        httpx.get(f"{server.url}/api/sql", params={"q": sql, "format": "csv"}, headers={"Range": "bytes=0-9"})
    )
    assert [a.headers["x-colonnade-cache"] for a in answers[:2]] == ["miss", "hit"]
    names = {a.headers.get("content-disposition") for a in answers}
    assert len(names) == 1 and names.pop().startswith('attachment; filename="query-'), names


def test_the_console_page_says_its_charset_once(server: Server) -> None:
    assert httpx.get(server.url + "/").headers["content-type"] == "text/html; charset=utf-8"


def test_unknown_tables_suggest_close_names(server: Server) -> None:
    response = httpx.get(f"{server.url}/api/sql", params={"q": "SELECT * FROM lineitems"})
    assert response.status_code == 400 and "did you mean 'lineitem'?" in response.json()["detail"]
    response = httpx.get(f"{server.url}/api/tables/ordrs")
    assert response.status_code == 404 and "did you mean 'orders'?" in response.json()["detail"]


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    from engine.catalog import Catalog
    from engine.ingest import ingest

    data = tmp_path_factory.mktemp("stored") / "data"
    catalog = Catalog(data, create=True)
    ingest(catalog, pa.table({"id": list(range(500)), "label": [f"row {i}" for i in range(500)]}), "public")
    ingest(catalog, pa.table({"id": list(range(50)), "secret": [f"s{i}" for i in range(50)]}), "private")
    tokens = {
        "all": create_token(data, "all", "--all"),
        "public": create_token(data, "public", "--tables", "public"),
    }
    with serve(data, env={"COLONNADE_AUTH_ENABLED": "true"}) as server:
        yield server, tokens


def test_a_stored_result_obeys_grants(granted: tuple[Server, dict[str, str]]) -> None:
    server, tokens = granted
    target = url(server, "parquet", "SELECT * FROM private ORDER BY id")
    stored = httpx.get(target, headers={"Authorization": f"Bearer {tokens['all']}", "Range": "bytes=0-"})
    assert stored.status_code == 206
    for headers in ({"Range": "bytes=0-"}, {}, {"If-None-Match": stored.headers["etag"]}):
        other = httpx.get(target, headers={"Authorization": f"Bearer {tokens['public']}", **headers})
        assert other.status_code == 403 and other.json()["code"] == "forbidden"
        assert b"s1" not in other.content
    suggestion = httpx.get(
        f"{server.url}/api/sql",
        params={"q": "SELECT * FROM privat"},
        headers={"Authorization": f"Bearer {tokens['public']}"},
    )
    assert "private" not in suggestion.json()["detail"]  # never a name the token may not see


# -- the range rules, as a property ------------------------------------------------------------


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    size=st.integers(0, 300),
    specs=st.lists(
        st.one_of(
            st.tuples(st.integers(0, 400), st.one_of(st.none(), st.integers(0, 400))),
            st.tuples(st.none(), st.integers(0, 400)),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_ranges_select_exactly_the_bytes_rfc_9110_says(tmp_path_factory, size: int, specs: list) -> None:
    data = bytes(i % 251 for i in range(size))
    path = tmp_path_factory.mktemp("range") / "f.bin"
    Path(path).write_bytes(data)
    header = "bytes=" + ", ".join(f"{'' if a is None else a}-{'' if b is None else b}" for a, b in specs)
    expected = []
    for a, b in specs:  # the reference: RFC 9110 §14.1.2, range by range
        if a is None:
            if b:
                expected.append(data[max(0, size - b) :])
        elif b is not None and b < a:
            expected = None
            break
        elif a < size:
            expected.append(data[a : (size if b is None else b + 1)])
    stored = StoredResult(Path(path), size, '"t"')
    if expected is None:  # malformed: the whole file, 200
        assert parse_ranges(header, size) is None
        return
    if not expected:
        with pytest.raises(Unsatisfiable):
            parse_ranges(header, size)
        return
    answer = answer_file(stored, "x/y", head=False, range_header=header, if_range=None, if_none_match=set())
    assert answer.status == 206
    body = b"".join(file_body(stored, answer, "x/y"))
    if len(expected) == 1:
        assert body == expected[0]
    else:
        assert all(part in body for part in expected)
        assert int(answer.headers["Content-Length"]) == len(body)


def test_csv_from_the_store_reads_back(server: Server, expected: pa.Table) -> None:
    body = httpx.get(url(server, "csv"), headers={"Range": "bytes=0-"}).content
    table = pcsv.read_csv(pa.py_buffer(body))
    assert table.num_rows == expected.num_rows
