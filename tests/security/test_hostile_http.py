"""The hostile corpus over HTTP: POST /api/sql on a real server, both engines, both body
kinds (raw SQL and JSON). Exact code, the status of its error class, problem+json, and no
trace of anything outside the data dir: not in any response, not on disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.problems import status_of
from engine.errors import ERRORS_BY_CODE
from tests.security import corpus
from tests.security.sandbox import Sandbox, disk_state


@pytest.fixture(scope="module")
def data_baseline(hostile_http: httpx.Client, tpch_dir: Path) -> dict[str, tuple[int, int]]:
    return disk_state(tpch_dir)


def post(http: httpx.Client, sql: str, engine: str) -> httpx.Response:
    if engine == "duckdb":  # a raw SQL body
        return http.post(
            "/api/sql", params={"engine": engine}, content=sql.encode(), headers={"Content-Type": "application/sql"}
        )
    return http.post("/api/sql", json={"sql": sql, "engine": engine})  # a JSON body


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
@pytest.mark.parametrize("block", corpus.params())
def test_hostile_over_http(
    hostile_http: httpx.Client,
    hostile_sandbox: Sandbox,
    data_baseline: dict[str, tuple[int, int]],
    tpch_dir: Path,
    block: corpus.Block,
    engine_name: str,
) -> None:
    response = post(hostile_http, block.sql(hostile_sandbox.paths()), engine_name)
    if block.expect == corpus.OK:
        assert response.status_code == 200, response.text
        assert response.json()["row_count"] > 0
    else:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text[:300]
        problem = response.json()
        assert problem["code"] == block.expect, problem
        assert response.status_code == status_of(ERRORS_BY_CODE[block.expect]) == problem["status"]
        assert problem["detail"]
    assert not hostile_sandbox.leaks(response.content)
    assert hostile_sandbox.problems() == []
    assert disk_state(tpch_dir) == data_baseline


def test_server_still_healthy_after_corpus(hostile_http: httpx.Client, hostile_sandbox: Sandbox) -> None:
    """Runs last in this module: the server survived every block and still answers."""
    assert hostile_http.get("/health").json() == {"status": "ok"}
    response = hostile_http.get("/api/sql", params={"q": "SELECT count(*) AS n FROM nation"})
    assert response.json()["rows"] == [[25]] or response.json()["rows"] == [{"n": 25}]
    assert hostile_sandbox.problems() == []


def test_canary_detects_what_it_should(tmp_path: Path) -> None:
    """The proof can fail: a read, a write and a stray file are all seen."""
    sandbox = Sandbox(tmp_path, tmp_path / "data")
    assert sandbox.problems() == []
    if sandbox.reads_visible:
        sandbox.canary.read_bytes()
        assert any("was read" in p for p in sandbox.problems())
    (sandbox.out / "stolen.csv").write_text("x")
    assert any("created in" in p for p in sandbox.problems())
    assert sandbox.leaks(f"rows: {sandbox.token}")
    assert sandbox.leaks(b"root:x:0:0:root:/root:/bin/bash")
