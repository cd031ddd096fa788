"""Grants over HTTP, on every engine: the shapes that once read every table and the token store
with a one-table token, and their variants. Each is a 4xx problem that shows no row of another
table, no byte of the token store, no server path or internal name; nothing new appears on disk,
no file of another table is read, and the query log names the tables each query tried.

Also the smaller leaks found beside them: Polars plans, NUL in paths and column names, a damaged
token store, volatile results in the cache, DNS rebinding, ``nosniff``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.security.relations import GRANTED, Vault
from tests.security.sandbox import disk_state

ENGINES = ("duckdb", "polars", "spark")
KELVIN = "\u212a"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    return Vault(tmp_path_factory.mktemp("vault-http"))


@pytest.fixture(scope="module")
def secured(vault: Vault, spark_remote: str) -> Iterator[Server]:
    env = {"COLONNADE_AUTH_ENABLED": "true", "COLONNADE_SPARK_REMOTE": spark_remote}
    with serve(vault.data_dir, env=env) as server:
        yield server


def attacks(vault: Vault) -> list[str]:
    data = vault.data_dir
    glob = f"{data}/keys/*.parquet"
    tokens = f"{data}/.colonnade/tokens.json"
    return [
        f'WITH RECURSIVE "{glob}" AS (SELECT * FROM "{glob}") SELECT count(*) FROM "{glob}"',
        f'WITH RECURSIVE "{glob}" AS (SELECT * FROM "{glob}") SELECT * FROM "{glob}"',
        f'SELECT * FROM granted, LATERAL (WITH RECURSIVE "{glob}" AS (SELECT * FROM "{glob}") SELECT * FROM "{glob}") AS l',
        f'WITH RECURSIVE "{tokens}" AS (SELECT * FROM "{tokens}") SELECT * FROM "{tokens}"',
        f'WITH "{data}/[{KELVIN}v]eys/*.parquet" AS (SELECT 1 AS x) SELECT * FROM "{data}/[kv]eys/*.parquet"',
        f'WITH "{KELVIN}eys" AS (SELECT * FROM granted) SELECT * FROM keys',
        f'WITH x AS (WITH RECURSIVE "{glob}" AS (SELECT * FROM "{glob}") SELECT * FROM "{glob}") SELECT * FROM x',
        'SELECT * FROM "keys@v0"',
        "SELECT * FROM sqlite_master",
        "SELECT * FROM duckdb_views()",
        "DESCRIBE keys",
        "SUMMARIZE vault",
        "DESCRIBE SELECT * FROM granted, main.keys",
        f"SELECT * FROM '{glob}'",
        "SELECT * FROM keys",
        "SELECT * FROM granted JOIN main.vault ON true",
    ]


def _disk(vault: Vault) -> dict:
    """Every file under the vault but the server's own log."""
    return {path: state for path, state in disk_state(vault.root).items() if not path.startswith("server-")}


def query(server: Server, secret: str, sql: str, engine: str) -> httpx.Response:
    with server.client(headers={"Authorization": f"Bearer {secret}"}) as client:
        return client.post("/api/sql", params={"engine": engine}, json={"sql": sql})


@pytest.mark.parametrize("engine", ENGINES)
def test_no_shape_reaches_another_table_or_the_token_store(secured: Server, vault: Vault, engine: str) -> None:
    before = _disk(vault)
    ids = []
    for sql in attacks(vault):
        vault.arm()
        response = query(secured, vault.reader_secret, sql, engine)
        ids.append(response.headers["x-colonnade-query-id"])
        assert 400 <= response.status_code < 500, (sql, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert not vault.secrets_in(response.text, json.dumps(sql)), (sql, response.text)
        assert "rel_" not in response.text.replace(sql, ""), (sql, response.text)
        assert not vault.files_read(), (sql, vault.files_read())
    # Nothing new on disk (the canaries' atimes were put back by arm(); sizes and mtimes hold).
    assert _disk(vault) == before
    entries = [secured.query_log_entry(query_id) for query_id in ids]
    assert all(entry["token"] == "reader" and entry["outcome"] != "ok" for entry in entries)
    # A query refused for its grants names the tables it tried.
    tried = [entry["tables"] for entry in entries if entry["outcome"] == "forbidden"]
    assert ["keys"] in tried and ["granted", "vault"] in tried and ["granted", "keys"] in tried


@pytest.mark.parametrize("engine", ENGINES)
def test_introspection_shows_only_granted_tables(secured: Server, vault: Vault, engine: str) -> None:
    expected = {
        "SHOW TABLES": [{"name": GRANTED}],
        "SELECT table_name FROM information_schema.tables": [{"table_name": GRANTED}],
        "SELECT DISTINCT table_name FROM information_schema.columns": [{"table_name": GRANTED}],
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_name IN ('keys', 'vault', 'outside')": [
            {"n": 0}
        ],
    }
    for sql, rows in expected.items():
        response = query(secured, vault.reader_secret, sql, engine)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == rows, sql
    # The admin token sees every table: the filter is the grant, not the view.
    response = query(secured, vault.admin_secret, "SHOW TABLES", engine)
    assert [r["name"] for r in response.json()["rows"]] == [GRANTED, "keys", "vault"]


@pytest.mark.parametrize("engine", ENGINES)
def test_granted_shapes_run_and_the_log_names_their_tables(secured: Server, vault: Vault, engine: str) -> None:
    """The same shapes over the granted table run, and the log names what they read."""
    sql = (
        'WITH RECURSIVE "keys"(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM "keys" WHERE n < 3), '
        f'"{KELVIN}eys" AS (SELECT * FROM granted) '
        f'SELECT (SELECT count(*) FROM "keys") AS k, (SELECT count(*) FROM "{KELVIN}eys") AS g'
    )
    response = query(secured, vault.reader_secret, sql, engine)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"k": 3, "g": 12}]
    entry = secured.query_log_entry(response.headers["x-colonnade-query-id"])
    assert entry["tables"] == [GRANTED] and entry["outcome"] == "ok"


@pytest.mark.parametrize("engine", ENGINES)
def test_plans_name_tables_not_files(secured: Server, vault: Vault, engine: str) -> None:
    for sql in ("EXPLAIN SELECT * FROM granted", "EXPLAIN ANALYZE SELECT count(*) FROM granted"):
        response = query(secured, vault.admin_secret, sql, engine)
        if response.status_code == 400 and engine != "duckdb":
            assert response.json()["code"] in ("unsupported_query", "query_error")
            continue
        assert response.status_code == 200, response.text
        assert str(vault.root) not in response.text and ".parquet" not in response.text, response.text
        assert "rel_" not in response.text, response.text


def test_nul_in_a_path_is_404(secured: Server) -> None:
    for path in ("/static/%00", "/static/a%00b.js", "/api/tables/%00"):
        response = httpx.get(secured.url + path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("engine", ("duckdb", "polars"))
def test_nul_and_repeated_column_names_keep_json_valid(secured: Server, vault: Vault, engine: str) -> None:
    """Names a DuckDB struct cannot hold (NUL, repeats) and values with NUL: the body stays
    one valid JSON document, every value under its column's name, in order."""
    sql = 'SELECT 1 AS "a\x00b", \'x\x00y\' AS "q""\n", 3 AS a, 4 AS a, 5 AS "\x00"'
    headers = {"Authorization": f"Bearer {vault.admin_secret}"}
    response = httpx.post(f"{secured.url}/api/sql", params={"engine": engine}, json={"sql": sql}, headers=headers)
    if response.status_code == 400:  # Polars refuses repeated names and NUL in names
        assert engine == "polars" and response.json()["code"] in ("query_error", "unsupported_query"), response.text
        return
    assert response.status_code == 200, response.text
    body = json.loads(response.text, object_pairs_hook=list)
    columns = [dict(c)["name"] for c in dict(body)["columns"]]
    (row,) = dict(body)["rows"]
    assert [name for name, _ in row] == columns and len(columns) == 5
    assert [value for _, value in row] == [1, "x\x00y", 3, 4, 5]
    ndjson = httpx.post(
        f"{secured.url}/api/sql", params={"engine": engine, "format": "ndjson"}, json={"sql": sql}, headers=headers
    )
    assert json.loads(ndjson.text, object_pairs_hook=list) == row


def test_volatile_queries_are_never_served_from_the_cache(secured: Server, vault: Vault) -> None:
    headers = {"Authorization": f"Bearer {vault.admin_secret}"}
    for sql in ("SELECT random() AS r", "SELECT now() AS t, uuid() AS u", "SELECT * FROM granted USING SAMPLE 50%"):
        seen = []
        for _ in range(2):
            response = httpx.get(f"{secured.url}/api/sql", params={"q": sql}, headers=headers)
            assert response.status_code == 200
            assert response.headers["x-colonnade-cache"] == "miss", sql
            assert "etag" not in response.headers, sql
            seen.append(response.json()["rows"])
    stable = "SELECT count(*) AS n FROM granted"
    statuses = [httpx.get(f"{secured.url}/api/sql", params={"q": stable}, headers=headers) for _ in range(2)]
    assert [r.headers["x-colonnade-cache"] for r in statuses] == ["miss", "hit"]


def test_every_response_says_nosniff(secured: Server, vault: Vault) -> None:
    headers = {"Authorization": f"Bearer {vault.reader_secret}"}
    for path in ("/health", "/api/tables", "/api/sql?q=SELECT%201", "/nope", "/schema/openapi.json", "/"):
        response = httpx.get(secured.url + path, headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff", path


def test_a_damaged_token_store_fails_closed_naming_nothing(tmp_path: Path) -> None:
    vault = Vault(tmp_path)
    with serve(vault.data_dir, env={"COLONNADE_AUTH_ENABLED": "true"}) as server:
        headers = {"Authorization": f"Bearer {vault.reader_secret}"}
        assert httpx.get(f"{server.url}/api/tables", headers=headers).status_code == 200
        vault.tokens_file.write_text('{"tokens": [{"name": ')  # cut mid-write by a foreign tool
        for path in ("/api/tables", "/api/sql?q=SELECT%201", "/api/tables/granted/rows"):
            response = httpx.get(server.url + path, headers=headers)
            assert response.status_code == 503, response.text
            problem = response.json()
            assert problem["code"] == "auth_unavailable"
            assert str(tmp_path) not in response.text and "tokens.json" not in response.text
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert "tokens.json is damaged" in server.log.read_text()  # the operator is told where


@pytest.fixture(scope="module")
def open_server(vault: Vault) -> Iterator[Server]:
    """Auth off (the loopback default), one more Host name allowed."""
    with serve(vault.data_dir, env={"COLONNADE_SERVER_ALLOWED_HOSTS": "dash.example.org"}) as server:
        yield server


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8000", "[::1]:80", "127.1.2.3", "app.localhost"])
def test_loopback_host_names_are_served(open_server: Server, host: str) -> None:
    assert httpx.get(f"{open_server.url}/api/tables", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.com", "10.0.0.8"])
def test_other_host_names_are_403_with_auth_off(open_server: Server, host: str) -> None:
    """A DNS-rebinding page reaches the server under its own name: refused, on every path."""
    for path in ("/api/tables", "/", "/health", "/nope"):
        response = httpx.get(f"{open_server.url}{path}", headers={"Host": host})
        assert response.status_code == 403, (host, path)
        assert response.json()["code"] == "host_not_allowed"


def test_listed_host_names_are_served(open_server: Server) -> None:
    response = httpx.get(f"{open_server.url}/api/tables", headers={"Host": "DASH.example.org:8443"})
    assert response.status_code == 200


def test_with_auth_on_any_host_name_is_served(secured: Server, vault: Vault) -> None:
    headers = {"Host": "colonnade.internal:8000", "Authorization": f"Bearer {vault.reader_secret}"}
    assert httpx.get(f"{secured.url}/api/tables", headers=headers).status_code == 200
