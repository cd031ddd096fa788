"""Slow and stalled clients: unfinished headers or bodies get a 408 and lose their connection
after a deadline, and the server keeps serving. Raw sockets, so the client sends exactly the
bytes each case needs."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve

HEADER_S, BODY_S = 1.0, 2.0
GRACE_S = 8.0  # generous: a busy machine may be slow to fire a timer


@pytest.fixture(scope="module")
def server(tpch_dir: Path) -> Iterator[Server]:
    env = {"COLONNADE_SERVER_HEADER_TIMEOUT_S": str(HEADER_S), "COLONNADE_SERVER_BODY_TIMEOUT_S": str(BODY_S)}
    with serve(tpch_dir, env=env) as srv:
        yield srv


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=GRACE_S + HEADER_S + BODY_S)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def assert_408(response: bytes, what: str) -> None:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), response[:200]
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["code"] == "request_timeout" and problem["status"] == 408 and what in problem["detail"]


def still_serving(server: Server) -> None:
    with server.client() as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/api/sql", params={"q": "SELECT 3 AS x"}).json()["rows"] == [{"x": 3}]


@pytest.mark.parametrize(
    "sent",
    [b"", b"GE", b"GET /health HTTP/1.1\r\n", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"],
    ids=["nothing", "half-a-method", "request-line-only", "headers-without-blank-line"],
)
def test_unfinished_headers_get_408_and_the_connection_closes(server: Server, sent: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(sent)
        response, waited = read_until_closed(sock)
    assert_408(response, "headers")
    assert waited < HEADER_S + GRACE_S
    still_serving(server)


def test_unfinished_body_gets_408(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 100\r\n\r\nSELECT 1"
        )
        response, waited = read_until_closed(sock)
    assert_408(response, "body")
    assert waited < BODY_S + GRACE_S
    still_serving(server)


def test_a_slow_client_within_the_deadlines_is_served(server: Server) -> None:
    request = b"GET /api/sql?q=SELECT+4+AS+x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with connect(server) as sock:
        for i in range(0, len(request), 8):  # 8 bytes every 20 ms: well inside the header deadline
            sock.sendall(request[i : i + 8])
            time.sleep(0.02)
        response, _ = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b'{"x":4}' in response  # a chunked body


def test_keep_alive_then_a_stalled_second_request(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127")
        response, _ = read_until_closed(sock)
    assert_408(response, "headers")


def test_many_stalled_connections_do_not_stop_the_server(server: Server) -> None:
    sockets = [connect(server) for _ in range(50)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=5) as http:
            assert http.get("/health").json() == {"status": "ok"}  # answered while they stall
        for sock in sockets:
            response, _ = read_until_closed(sock)
            assert_408(response, "headers")
        assert time.monotonic() - started < HEADER_S + GRACE_S
    finally:
        for sock in sockets:
            sock.close()
    still_serving(server)
