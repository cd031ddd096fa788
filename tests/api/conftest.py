"""A real uvicorn server (``colonnade serve``) on 127.0.0.1 and a free port, over real data."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.processes import stop_process_group
from tests.conftest import TEST_QUERY_TIMEOUT_S

COLONNADE = str(Path(sys.executable).parent / "colonnade")


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    data_dir: Path
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def query_log_entry(self, query_id: str, timeout: float = 30) -> dict:
        """The query log's line for ``query_id`` (the X-Colonnade-Query-Id of a response)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.query_log():
                if entry.get("id") == query_id:
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no query log line for {query_id}")

    def query_log(self, *, after: int = 0, count: int | None = None, timeout: float = 30) -> list[dict]:
        """The query log's lines (JSON objects) past the first ``after``; with ``count``, waits
        until that many are there (a thread of the server writes them)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log.read_text(errors="replace").splitlines()
            entries = [json.loads(line) for line in lines if line.startswith("{") and '"outcome"' in line][after:]
            if count is None or len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(
    data_dir: Path | str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path | None = None,
) -> Iterator[Server]:
    """Run ``colonnade serve`` in ``cwd`` (default: beside the data dir, never the repository);
    an object-store data dir (a URI) needs a ``log_dir``."""
    log_dir = log_dir if log_dir is not None else Path(data_dir).parent
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    # Sized for a busy machine (tests/conftest.py): a test that wants a timeout sets one.
    environ["COLONNADE_LIMITS_QUERY_TIMEOUT_S"] = TEST_QUERY_TIMEOUT_S
    environ.update(env or {})
    cmd = [
        COLONNADE,
        "serve",
        "--data",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log_path = log_dir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True, cwd=cwd or log_dir
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process)
        yield Server(url, process, Path(data_dir), log_path)
    finally:
        stop_process_group(process, timeout_s=15)  # it may have died on its own: fine
        log.close()


def _wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


@pytest.fixture(scope="session")
def server(tpch_dir: Path) -> Iterator[Server]:
    """One server over the read-only TPC-H data for the whole session."""
    with serve(tpch_dir, env={"COLONNADE_LIMITS_MAX_RESULT_ROWS": "5000"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def mutable_dir(tmp_path: Path) -> Path:
    """A data dir with one small managed table that a test may write to."""
    import pyarrow as pa

    from engine.catalog import Catalog
    from engine.ingest import ingest

    data = tmp_path / "data"
    table = pa.table({"id": pa.array(range(100), pa.int64()), "label": [f"row {i}" for i in range(100)]})
    ingest(Catalog(data, create=True), table, "events")
    return data
