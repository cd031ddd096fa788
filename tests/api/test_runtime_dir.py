"""The server's runtime directory (the running-queries registry, the metrics, the stored result
files) is gone when the server stops: on SIGTERM, with one worker or several, and after a
kill -9, as soon as the next server starts. It once stayed in /tmp after every SIGTERM to a
one-worker server: uvicorn re-raises the signal under the default handler once it has shut down.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from api.server import RUNTIME_DIR_PREFIX
from tests.api.conftest import Server, serve


def runtime_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob(f"{RUNTIME_DIR_PREFIX}*"))


def store_a_result(server: Server) -> None:
    """A HEAD materialises the result as a file in the runtime directory (api/results.py)."""
    with server.client() as http:
        response = http.head("/api/sql", params={"q": "SELECT * FROM nation", "format": "csv"})
    assert response.status_code == 200 and int(response.headers["content-length"]) > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_removes_the_runtime_directory(tpch_dir: Path, tmp_path: Path, workers: int) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with serve(tpch_dir, workers=workers, env={"TMPDIR": str(tmp)}, log_dir=tmp_path) as server:
        (runtime,) = runtime_dirs(tmp)
        store_a_result(server)
        assert any((runtime / "results").iterdir())
    # serve() stopped it with SIGTERM to its process group
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert runtime_dirs(tmp) == []


def test_the_next_server_removes_what_a_killed_one_left(tpch_dir: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with serve(tpch_dir, env={"TMPDIR": str(tmp)}, log_dir=tmp_path) as killed:
        (abandoned,) = runtime_dirs(tmp)
        store_a_result(killed)
        os.killpg(killed.process.pid, signal.SIGKILL)
        killed.process.wait()
    assert runtime_dirs(tmp) == [abandoned]
    other_users = tmp / f"{RUNTIME_DIR_PREFIX}1-kept"  # pid 1 runs: not abandoned
    other_users.mkdir()
    with serve(tpch_dir, env={"TMPDIR": str(tmp)}, log_dir=tmp_path):
        (current,) = [p for p in runtime_dirs(tmp) if p != other_users]
        assert current != abandoned and not abandoned.exists()
    assert runtime_dirs(tmp) == [other_users]
