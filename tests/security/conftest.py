"""Servers for the security suite: real ``colonnade serve`` processes over the session's TPC-H
data, started from an empty working directory so that relative paths in hostile SQL would
land somewhere we watch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.security.sandbox import Sandbox


@contextlib.contextmanager
def serve_from(cwd: Path, data_dir: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``serve`` with the server process's working directory set to ``cwd``."""
    with serve(data_dir, env=env, cwd=cwd) as server:
        yield server


@pytest.fixture(scope="session")
def hostile_sandbox(tmp_path_factory: pytest.TempPathFactory, tpch_dir: Path) -> Sandbox:
    return Sandbox(tmp_path_factory.mktemp("hostile-http"), tpch_dir)


@pytest.fixture(scope="session")
def hostile_server(hostile_sandbox: Sandbox, tpch_dir: Path) -> Iterator[Server]:
    with serve_from(hostile_sandbox.cwd, tpch_dir) as server:
        yield server


@pytest.fixture(scope="session")
def hostile_http(hostile_server: Server) -> Iterator[httpx.Client]:
    with hostile_server.client() as client:
        for engine in ("duckdb", "polars"):  # engines make their scratch dirs before any snapshot
            assert client.post("/api/sql", params={"engine": engine}, content=b"SELECT 1").status_code == 200
        yield client
