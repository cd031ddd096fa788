"""Shared benchmark plumbing: TPC-H data at a scale, a real server, timing helpers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
DATA_ROOT = BENCH_DIR / "data"
QUERIES = BENCH_DIR.parent / "tests" / "fixtures" / "tpch"
COLONNADE = str(Path(sys.executable).parent / "colonnade")


def tpch_data(scale: float) -> Path:
    """Managed TPC-H tables at ``scale`` under bench/data (generated once, then reused)."""
    from engine.demo import TPCH_TABLES, create_demo

    path = DATA_ROOT / f"sf{scale:g}"
    if not all((path / t / "_delta_log").is_dir() for t in TPCH_TABLES):
        create_demo(path, scale)
    return path


def tpch_query(n: int) -> str:
    return (QUERIES / f"q{n:02d}.sql").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def colonnade_server(data: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | (env or {})
    proc = subprocess.Popen(
        [COLONNADE, "serve", "--data", str(data), "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def wait_ready(url: str, path: str = "/ready", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
