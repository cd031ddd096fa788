"""Schemathesis over the live server's OpenAPI: no 5xx, and every response conforms.

The served document (``/schema/openapi.json``) is loaded from the server and completed with
what the README promises but the document does not declare yet (the query parameters and
bodies of /api/sql and /rows, the problem+json error responses), so that generated requests
reach the SQL and filter paths and every error body is checked against RFC 9457.

``COLONNADE_FUZZ_EXAMPLES`` sets the examples per operation (default: a quick run).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
)

from tests.api.conftest import Server

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]
MEDIA = [
    "application/json",
    "application/x-ndjson",
    "text/csv",
    "application/vnd.apache.arrow.stream",
    "application/vnd.apache.parquet",
]

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z_]+$"},
    },
}
ERROR_STATUSES = ["400", "401", "403", "404", "406", "413", "429", "504"]
SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}


def _query(name: str, schema: dict[str, Any], example: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if example is not None:  # schemathesis sends documented examples first
        param["example"] = example
    return param


def complete(document: dict[str, Any], tables: list[str]) -> dict[str, Any]:
    """The served document plus the parameters, bodies and error responses it leaves out."""
    doc = copy.deepcopy(document)
    # Enums where free text would almost never hit a valid value; free text stays in q, sql,
    # params, select, order, limit, offset, or.
    engine = {"enum": ["duckdb", "polars", "DuckDB", "nope", ""]}
    fmt = {"enum": ["json", "ndjson", "csv", "arrow", "parquet", "xml", ""]}
    table = {"enum": [*tables, "no_such_table", "NATION", "nation..", "_delta_log", "a b"]}
    sql = {
        "anyOf": [
            {"enum": [f"SELECT * FROM {t} LIMIT 3" for t in tables] + ["SELECT 1", "VALUES (1)"]},
            {"type": "string"},
        ]
    }
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            params = op.setdefault("parameters", [])
            for p in params:
                if p["in"] == "path" and p["name"] == "name":
                    p["schema"] = table
            if path == "/api/sql" and method == "get":
                params += [
                    _query("q", sql, "SELECT n_name FROM nation WHERE n_regionkey = 1"),
                    _query("engine", engine),
                    _query("format", fmt),
                    _query("params", {"type": "string"}),
                    _query("timeout_s", {"type": "string"}),
                ]
            if path == "/api/sql" and method == "post":
                body = {
                    "type": "object",
                    "required": ["sql"],
                    "additionalProperties": False,
                    "properties": {
                        "sql": sql,
                        "params": {"type": "array", "items": SCALAR, "maxItems": 4},
                        "engine": engine,
                        "timeout_s": {"type": "number"},
                    },
                }
                example = {
                    "sql": "SELECT count(*) FROM orders WHERE o_totalprice > ?",
                    "params": [1000],
                    "engine": "polars",
                }
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": body, "example": example},
                        "text/plain": {"schema": sql, "example": "SELECT 1"},
                    },
                }
                params += [_query("format", fmt), _query("engine", engine)]
            if path == "/api/tables/{name}/rows":
                params += [
                    _query("select", {"type": "string"}),
                    _query("order", {"type": "string"}),
                    _query("limit", {"type": "string"}),
                    _query("offset", {"type": "string"}),
                    _query("format", fmt),
                    _query("or", {"type": "string"}),
                ]
            responses = op.setdefault("responses", {})
            if path in ("/api/sql", "/api/tables/{name}/rows"):
                responses["200"] = {"description": "the result", "content": {m: {} for m in MEDIA}}
            for status in ERROR_STATUSES:
                responses[status] = {
                    "description": "a problem",
                    "content": {"application/problem+json": {"schema": PROBLEM}},
                }
            responses.setdefault("304", {"description": "not modified"})
    return doc


@pytest.fixture(scope="module")
def api_schema(hostile_server: Server) -> schemathesis.BaseSchema:
    document = httpx.get(f"{hostile_server.url}/schema/openapi.json", timeout=30).json()
    tables = [t["name"] for t in httpx.get(f"{hostile_server.url}/api/tables", timeout=30).json()]
    schema = schemathesis.openapi.from_dict(complete(document, tables))
    return schema


# Every operation of the served document (checked below, so a new route is not missed).
# schemathesis' own pytest integration does not run on pytest 9, so each operation's
# hypothesis strategy is driven here.
OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/api/tables"),
    ("GET", "/api/tables/{name}"),
    ("GET", "/api/tables/{name}/history"),
    ("GET", "/api/tables/{name}/rows"),
    ("GET", "/api/sql"),
    ("POST", "/api/sql"),
    ("GET", "/api/queries"),
    ("DELETE", "/api/queries/{query_id}"),
    ("GET", "/metrics"),
]


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    served = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert set(OPERATIONS) == served


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_api_conforms_and_never_fails(
    api_schema: schemathesis.BaseSchema, hostile_server: Server, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=hostile_server.url, timeout=60)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()
    assert statuses, "no case was generated"
    print(f"{method} {path}: {len(statuses)} cases, statuses {sorted(set(statuses))}")
