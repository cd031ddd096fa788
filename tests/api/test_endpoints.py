"""Every endpoint answers with the documented shape; problems are problem+json."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pyarrow as pa

import engine
from tests.api.conftest import Server

TPCH = {"customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"}


def test_health_and_ready(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json()["tables"] == 8


def test_table_list_matches_catalog(http: httpx.Client, tpch_dir) -> None:
    listed = {t["name"]: t for t in http.get("/api/tables").json()}
    assert set(listed) == TPCH
    db = engine.Database(tpch_dir)
    for name, info in listed.items():
        snap = db.table(name)
        assert info["kind"] == "managed" and info["version"] == snap.version
        assert [c["name"] for c in info["columns"]] == snap.schema.names
        assert [c["type"] for c in info["columns"]] == [str(t) for t in snap.schema.types]
        assert info["row_count"] == db.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def test_table_detail_and_history(http: httpx.Client) -> None:
    detail = http.get("/api/tables/orders").json()
    assert detail["name"] == "orders" and detail["format"] == "delta"
    assert detail["files"] >= 1 and detail["bytes"] > 0 and detail["partitions"] == []
    history = http.get("/api/tables/orders/history").json()
    assert history[0]["version"] == detail["version"]
    assert history[-1]["rows_added"] == detail["row_count"]


def test_unknown_table_is_404_on_table_routes(http: httpx.Client) -> None:
    for path in ("/api/tables/nope", "/api/tables/nope/history", "/api/tables/nope/rows"):
        response = http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "table_not_found"


def test_unknown_route_is_problem_json(http: httpx.Client) -> None:
    response = http.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert http.delete("/api/sql").json()["code"] == "method_not_allowed"


def test_openapi_and_console(http: httpx.Client) -> None:
    spec = http.get("/schema/openapi.json").json()
    for path in (
        "/health",
        "/ready",
        "/api/tables",
        "/api/tables/{name}",
        "/api/tables/{name}/history",
        "/api/tables/{name}/rows",
        "/api/sql",
    ):
        assert path in spec["paths"], path
    page = http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_every_response_carries_elapsed(http: httpx.Client) -> None:
    for response in (
        http.get("/api/sql", params={"q": "SELECT 1"}),
        http.post("/api/sql", content="SELECT 2"),
        http.get("/api/tables/nation/rows"),
    ):
        assert float(response.headers["x-colonnade-elapsed-ms"]) >= 0


def test_curl_smoke(server: Server) -> None:
    curl = shutil.which("curl")
    assert curl, "curl is installed on the machine"
    out = subprocess.run(
        [
            curl,
            "-sf",
            "-H",
            "Accept: application/vnd.apache.arrow.stream",
            f"{server.url}/api/sql?q=SELECT%20count(*)%20AS%20n%20FROM%20region",
        ],
        check=True,
        capture_output=True,
    ).stdout
    assert pa.ipc.open_stream(out).read_all().column("n").to_pylist() == [5]
