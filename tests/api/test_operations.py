"""For operators: every query response carries its id (the query log's), running and queued
queries are listed and cancelled across workers by an admin token, and /metrics counts what
every worker did."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.api.test_auth import create_token
from tests.api.test_errors import assert_engine_idle

HEAVY = "SELECT sum(hash(a.range * b.range)) AS h FROM range(300000) a, range(300000) b"


def wait_for(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is truthy (a server under load may take its time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    import pyarrow as pa

    from engine.catalog import Catalog
    from engine.ingest import ingest

    data = tmp_path_factory.mktemp("operations") / "data"
    ingest(Catalog(data, create=True), pa.table({"id": list(range(1000))}), "events")
    tokens = {
        "admin": create_token(data, "ops", "--all", "--admin"),
        "reader": create_token(data, "reader", "--tables", "events"),
    }
    env = {"COLONNADE_AUTH_ENABLED": "true", "COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "1"}
    with serve(data, workers=2, env=env) as server:
        yield server, tokens


def client(server: Server, token: str) -> httpx.Client:
    return server.client(headers={"Authorization": f"Bearer {token}"})


def test_every_query_response_carries_the_id_the_log_uses(http: httpx.Client, server: Server) -> None:
    ok = http.get("/api/sql", params={"q": "SELECT 1 AS one"})
    hit = http.get("/api/sql", params={"q": "SELECT 1 AS one"})
    bad = http.get("/api/sql", params={"q": "SELECT * FROM nope"})
    ids = [r.headers["x-colonnade-query-id"] for r in (ok, hit, bad)]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f]+-\d+", i) for i in ids)
    assert bad.json()["query_id"] == ids[2]
    wait_for(lambda: {ids[2]} <= {line["id"] for line in server.query_log()})
    logged = {line["id"]: line for line in server.query_log()}
    assert logged[ids[0]]["cache"] == "miss" and logged[ids[1]]["cache"] == "hit"
    assert logged[ids[2]]["outcome"] == "table_not_found"


def test_queries_are_admin_only(secured: tuple[Server, dict[str, str]]) -> None:
    server, tokens = secured
    with client(server, tokens["reader"]) as c:
        for response in (c.get("/api/queries"), c.delete("/api/queries/abc-1"), c.get("/metrics")):
            assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert httpx.get(f"{server.url}/api/queries").status_code == 401
    with client(server, tokens["admin"]) as c:
        response = c.delete("/api/queries/abc-1")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_a_running_query_is_listed_and_cancelled_from_any_worker(secured: tuple[Server, dict[str, str]]) -> None:
    server, tokens = secured
    with ThreadPoolExecutor(1) as pool:
        running: Future = pool.submit(
            lambda: client(server, tokens["admin"]).post("/api/sql", json={"sql": HEAVY}, timeout=120)
        )

        def listed() -> dict | None:
            with client(server, tokens["admin"]) as c:  # a new connection: either worker answers
                found = [q for q in c.get("/api/queries").json()["queries"] if q["state"] == "running"]
            return found[0] if found else None

        query = wait_for(listed)
        assert query["token"] == "ops" and query["engine"] == "duckdb" and query["tables"] == []
        assert query["elapsed_ms"] > 0
        # Cancel through fresh connections until the other worker has served one too.
        with client(server, tokens["admin"]) as c:
            assert c.delete(f"/api/queries/{query['id']}").status_code == 202
        response = running.result(timeout=60)
    assert response.status_code == 499 and response.json()["code"] == "query_cancelled"
    assert response.headers["x-colonnade-query-id"] == query["id"]
    assert_engine_idle(query["worker"])
    wait_for(lambda: not client(server, tokens["admin"]).get("/api/queries").json()["queries"])


def test_a_queued_query_can_be_cancelled(tmp_path: Path, mutable_dir: Path) -> None:
    env = {"COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "1"}
    with serve(mutable_dir, env=env) as server, ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{server.url}/api/sql", json={"sql": HEAVY, "timeout_s": 20}, timeout=120)
        first_id = wait_for(lambda: httpx.get(f"{server.url}/api/queries").json()["queries"])[0]["id"]
        second = pool.submit(httpx.post, f"{server.url}/api/sql", json={"sql": "SELECT 2 AS two"}, timeout=120)

        def queued() -> dict | None:
            listed = httpx.get(f"{server.url}/api/queries").json()["queries"]
            found = [q for q in listed if q["state"] == "queued" and q["id"] != first_id]
            return found[0] if found else None

        query = wait_for(queued)
        assert httpx.delete(f"{server.url}/api/queries/{query['id']}").status_code == 202
        response = second.result(timeout=60)
        assert response.status_code == 499 and response.json()["code"] == "query_cancelled"
        assert not first.done(), "the running query is untouched"
        running = httpx.get(f"{server.url}/api/queries").json()["queries"]
        assert httpx.delete(f"{server.url}/api/queries/{running[0]['id']}").status_code == 202
        assert first.result(timeout=60).status_code == 499


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_add_up_every_worker(secured: tuple[Server, dict[str, str]]) -> None:
    server, tokens = secured
    with client(server, tokens["admin"]) as c:
        before = c.get("/metrics").text
    n = 12
    for i in range(n):  # a new connection each time: both workers serve some
        with client(server, tokens["reader"]) as c:
            assert c.get("/api/sql", params={"q": f"SELECT count(*) + {i} AS n FROM events"}).status_code == 200
            assert c.get("/api/sql", params={"q": "SELECT * FROM nope"}).status_code == 400
    name = "colonnade_queries_total"

    def scraped() -> str | None:  # each worker applies its numbers a few times a second
        with client(server, tokens["admin"]) as c:
            response = c.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        ok = metric(response.text, name, engine="duckdb", outcome="ok") - metric(
            before, name, engine="duckdb", outcome="ok"
        )
        refused = metric(response.text, name, outcome="table_not_found") - metric(
            before, name, outcome="table_not_found"
        )
        return response.text if ok >= n and refused >= n else None  # both workers' numbers are in

    after = wait_for(scraped)
    assert metric(after, name, engine="duckdb", outcome="ok") - metric(before, name, engine="duckdb", outcome="ok") == n
    grew = metric(after, name, outcome="table_not_found") - metric(before, name, outcome="table_not_found")
    assert grew == n
    assert metric(after, "colonnade_result_rows_total") - metric(before, "colonnade_result_rows_total") >= n
    assert metric(after, "colonnade_query_seconds_count", engine="duckdb") >= 2 * n
    workers = {line.split('worker="')[1].split('"')[0] for line in after.splitlines() if "worker_rss_bytes{" in line}
    assert len(workers) == 2, workers
    assert metric(after, "colonnade_busy_slots") == 0


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("admin", 403), ("off", 404)])
def test_metrics_mode(mutable_dir: Path, mode: str, status: int) -> None:
    data = mutable_dir
    reader = create_token(data, "reader", "--tables", "events")
    env = {"COLONNADE_AUTH_ENABLED": "true", "COLONNADE_SERVER_METRICS": mode}
    with serve(data, env=env) as server:
        response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert response.status_code == status, response.text
        if status == 200:
            assert "colonnade_busy_slots" in response.text


def test_busy_and_queued_gauges_follow_the_load(mutable_dir: Path) -> None:
    env = {"COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "1", "COLONNADE_SERVER_METRICS": "open"}
    with serve(mutable_dir, env=env) as server:
        threads = [
            threading.Thread(
                target=httpx.post,
                args=(f"{server.url}/api/sql",),
                kwargs={"json": {"sql": HEAVY, "timeout_s": 3}, "timeout": 120},
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        text = wait_for(
            lambda: (
                (t := httpx.get(f"{server.url}/metrics").text)
                and metric(t, "colonnade_busy_slots") == 1
                and metric(t, "colonnade_queued_queries") == 2
                and t
            )
        )
        assert text
        for t in threads:
            t.join()
        after = httpx.get(f"{server.url}/metrics").text
        assert metric(after, "colonnade_busy_slots") == 0 and metric(after, "colonnade_queued_queries") == 0
        assert metric(after, "colonnade_queries_total", outcome="query_timeout") == 3


def test_the_answering_engine_is_named_on_a_miss_a_hit_and_the_hit_path(mutable_dir: Path) -> None:
    """engine=auto preferring Polars: a query Polars refuses falls back to DuckDB, and every
    answer to it — the first, the pre-routing hit path, a routed cache hit — says DuckDB answered."""
    refused = f"SELECT mode(1) AS m, count(*) AS n FROM events AS e{time.time_ns()}"  # no mode() on Polars
    with serve(mutable_dir, env={"COLONNADE_SERVER_AUTO_PREFER": "polars"}) as srv, srv.client() as http:
        plain = http.get("/api/sql", params={"q": "SELECT count(*) AS n FROM events", "engine": "auto"})
        assert plain.headers["x-colonnade-engine"] == "polars"
        answers = [http.get("/api/sql", params={"q": refused, "engine": "auto"}) for _ in range(3)]
        answers.append(http.post("/api/sql", json={"sql": refused, "engine": "auto"}))  # routed: no hit path
        assert [a.json()["rows"] for a in answers] == [[{"m": 1, "n": 100}]] * 4
        assert [a.headers["x-colonnade-cache"] for a in answers] == ["miss", "hit", "hit", "hit"]
        assert [a.headers["x-colonnade-engine"] for a in answers] == ["duckdb"] * 4
