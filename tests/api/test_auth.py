"""Bearer tokens: 401 without one, 403 for any table a token lacks — however the query reaches it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from engine.config import Settings, load_settings
from engine.ingest import ingest
from tests.api.conftest import COLONNADE, Server, serve


def create_token(data: Path, name: str, *grant: str) -> str:
    out = subprocess.run(
        [COLONNADE, "token", "create", "--data", str(data), "--name", name, *grant],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> tuple[Server, dict[str, str]]:
    from engine.catalog import Catalog

    data = tmp_path_factory.mktemp("auth") / "data"
    catalog = Catalog(data, create=True)
    ingest(catalog, pa.table({"id": [1, 2, 3], "owner": ["a", "b", "c"]}), "events")
    ingest(catalog, pa.table({"id": [1], "secret": ["s3cr3t"]}), "secrets")
    tokens = {
        "reader": create_token(data, "reader", "--tables", "events"),
        "all": create_token(data, "everything", "--all"),
    }
    with serve(data, env={"COLONNADE_AUTH_ENABLED": "true"}) as server:
        yield server, tokens


def get(server: Server, path: str, token: str | None = None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with server.client() as client:
        return client.get(path, params=params, headers=headers)


def test_health_and_ready_stay_open(secured) -> None:
    server, _ = secured
    assert get(server, "/health").status_code == 200
    assert get(server, "/ready").status_code == 200


@pytest.mark.parametrize("path", ["/api/tables", "/api/tables/events", "/api/tables/events/rows", "/api/sql"])
def test_missing_or_wrong_token_is_401(secured, path: str) -> None:
    server, _ = secured
    for token in (None, "col_not-a-real-token"):
        response = get(server, path, token, q="SELECT 1")
        assert response.status_code == 401, path
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    with server.client() as client:
        assert client.get("/api/tables", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401


def test_reader_sees_only_granted_tables(secured) -> None:
    server, tokens = secured
    assert [t["name"] for t in get(server, "/api/tables", tokens["reader"]).json()] == ["events"]
    assert [t["name"] for t in get(server, "/api/tables", tokens["all"]).json()] == ["events", "secrets"]
    assert get(server, "/api/tables/events/rows", tokens["reader"]).json()["row_count"] == 3
    for path in ("/api/tables/secrets", "/api/tables/secrets/history", "/api/tables/secrets/rows"):
        response = get(server, path, tokens["reader"])
        assert response.status_code == 403 and response.json()["code"] == "forbidden", path


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM secrets",
        "SELECT * FROM events JOIN secrets USING (id)",
        "WITH s AS (SELECT * FROM secrets) SELECT * FROM s",
        "SELECT * FROM events WHERE id IN (SELECT id FROM secrets)",
        "SELECT (SELECT max(secret) FROM secrets) AS x",
        "SELECT * FROM events UNION ALL SELECT id, secret FROM SECRETS",
        "WITH events AS (SELECT * FROM secrets) SELECT * FROM events",
    ],
)
def test_any_path_to_an_ungranted_table_is_403(secured, sql: str) -> None:
    server, tokens = secured
    response = get(server, "/api/sql", tokens["reader"], q=sql)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert "s3cr3t" not in response.text
    assert get(server, "/api/sql", tokens["all"], q=sql).status_code == 200


def test_granted_queries_work(secured) -> None:
    server, tokens = secured
    body = get(
        server, "/api/sql", tokens["reader"], q="WITH e AS (SELECT * FROM events) SELECT count(*) AS n FROM e"
    ).json()
    assert body["rows"] == [{"n": 3}]


def test_tokens_are_stored_hashed_and_secrets_never_logged(secured) -> None:
    server, tokens = secured
    get(server, "/api/sql", tokens["reader"], q="SELECT count(*) FROM events")
    stored = (server.data_dir / ".colonnade" / "tokens.json").read_text()

    def mine() -> list[dict]:
        return [e for e in server.query_log() if e["token"] == "reader" and e["tables"] == ["events"]]

    deadline = time.monotonic() + 30
    while not mine() and time.monotonic() < deadline:  # the server's log writer is a thread
        time.sleep(0.05)
    log = server.log.read_text()
    for secret in tokens.values():
        assert secret not in stored and secret not in log
    entries = server.query_log()
    assert mine() and mine()[-1]["outcome"] == "ok" and mine()[-1]["rows"] == 1 and mine()[-1]["ms"] >= 0
    assert any(e["outcome"] == "forbidden" for e in entries)


def test_auth_defaults() -> None:
    assert not Settings().auth_enabled()  # loopback: off
    exposed = load_settings(environ={"COLONNADE_SERVER_HOST": "0.0.0.0"})
    assert exposed.auth_enabled()
    opted_out = load_settings(environ={"COLONNADE_SERVER_HOST": "0.0.0.0", "COLONNADE_AUTH_ENABLED": "false"})
    assert not opted_out.auth_enabled()


def test_token_create_errors(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for args in (
        ["--name", "x"],
        ["--name", "x", "--tables", "a", "--all"],
        ["--name", "bad name!", "--all"],
        ["--name", "y", "--tables", "not-a-table"],
    ):
        out = subprocess.run([COLONNADE, "token", "create", "--data", str(data), *args], capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1
    assert not (data / ".colonnade" / "tokens.json").exists()


def test_cors_is_off_by_default_and_configurable(mutable_dir, server: Server) -> None:
    preflight = {"Origin": "http://dash.example", "Access-Control-Request-Method": "GET"}
    with server.client() as client:
        assert "access-control-allow-origin" not in client.options("/api/tables", headers=preflight).headers
    with (
        serve(mutable_dir, env={"COLONNADE_SERVER_CORS_ORIGINS": "http://dash.example"}) as cors,
        cors.client() as client,
    ):
        response = client.options("/api/tables", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "http://dash.example"
        got = client.get("/api/tables", headers={"Origin": "http://dash.example"})
        assert got.headers["access-control-allow-origin"] == "http://dash.example"
