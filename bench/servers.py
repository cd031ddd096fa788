"""The servers a comparison talks to, each started as a real process group and stopped with it:
Colonnade (``colonnade serve``), the Litestar hello-world, the naive pandas service, ROAPI, and
the Arrow ceiling (pyarrow's IPC writer on a bare socket)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import procstat
from bench.common import BENCH_DIR, COLONNADE, free_port
from engine.processes import stop_process_group

ROAPI_BIN = BENCH_DIR / ".venv-roapi" / "bin" / "roapi"
_PYTHONPATH = {"PYTHONPATH": str(BENCH_DIR.parent)}  # bench/ is not an installed package


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return procstat.tree(self.proc.pid)


def _wait(url: str, path: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}{path} did not become ready in {timeout} s")


class Launch:
    """A server process to start: ``with launch as srv`` starts it, waits until it (and each of
    its workers) answers ``ready``, and stops its process group at the end. ``together`` starts
    several at once, so their start-ups overlap."""

    def __init__(
        self,
        cmd: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        ready: str = "/ready",
        timeout: float = 120,
        workers: int = 1,
        log_file: Path | None = None,
    ) -> None:
        self.cmd, self.ready, self.timeout, self.workers, self.log_file = cmd, ready, timeout, workers, log_file
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | (env or {})
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, env=self.env, start_new_session=True)
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]

    def wait(self) -> Server:
        assert self.proc is not None
        _wait(self.url, self.ready, self.proc, self.timeout)
        if self.workers > 1:  # every worker answers before the clock starts
            seen: set[int] = set()
            deadline = time.monotonic() + self.timeout
            while len(procstat.tree(self.proc.pid)) < self.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            for _ in range(50 * self.workers):
                with contextlib.suppress(Exception):
                    seen.add(httpx.get(self.url + self.ready, timeout=5).json().get("worker", 0))
                if len(seen) >= self.workers:
                    break
        return Server(self.url, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)

    def __enter__(self) -> Server:
        self.start()
        try:
            return self.wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def together(*launches: Launch) -> Iterator[list[Server]]:
    """Start every server, then wait for each: the start-ups overlap."""
    try:
        for launch in launches:
            launch.start()
        yield [launch.wait() for launch in launches]
    finally:
        for launch in launches:
            launch.stop()


def colonnade(
    data: Path,
    *,
    workers: int = 1,
    cache: bool = False,
    log_file: Path | None = None,
    env: dict[str, str] | None = None,
):
    """``colonnade serve`` on ``data``; the result cache is off unless ``cache`` (the engine path
    is what most comparisons measure); ``env`` adds settings (``--server-env``)."""
    port = free_port()
    environ = {
        "COLONNADE_LIMITS_MAX_RESULT_ROWS": "100000000",  # the exports send 1M JSON rows
        "COLONNADE_LIMITS_QUERY_TIMEOUT_S": "300",
    }
    if not cache:
        environ["COLONNADE_CACHE_MAX_BYTES"] = "0"
    environ |= env or {}
    cmd = [COLONNADE, "serve", "--data", str(data), "--port", str(port), "--workers", str(workers)]
    return Launch(cmd, port, env=environ, workers=workers, log_file=log_file)


def hello(workers: int = 2):
    """The framework ceiling, served with the options ``colonnade serve`` uses."""
    from api.server import UVICORN_OPTIONS

    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.hello_app:app", "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", UVICORN_OPTIONS["log_level"]]
    if not UVICORN_OPTIONS.get("access_log", True):
        cmd.append("--no-access-log")
    return Launch(cmd, port, workers=workers, env=_PYTHONPATH)


def naive(data: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.naive_service:app", "--port", str(port), "--log-level", "warning"]
    return Launch(cmd, port, env={"NAIVE_DATA": str(data)} | _PYTHONPATH, timeout=300)


def arrow_ceiling(stream: Path):
    """bench/arrow_ceiling.py serving the Arrow IPC stream file ``stream`` from memory."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.arrow_ceiling", str(stream), str(port)]
    return Launch(cmd, port, env=_PYTHONPATH, timeout=60)


def roapi_available() -> bool:
    return ROAPI_BIN.exists()


def roapi_version() -> str | None:
    if not ROAPI_BIN.exists():
        return None
    return subprocess.run([str(ROAPI_BIN), "--version"], capture_output=True, text=True).stdout.strip()


def roapi_tables(data: Path, root: Path) -> dict[str, Path]:
    """ROAPI cannot read Delta logs: give it a directory per table holding exactly the live
    Parquet files of the current version (hard links, so the very same bytes)."""
    from engine.catalog import Catalog

    catalog = Catalog(data)
    out = {}
    for name in catalog.names():
        d = root / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for f in catalog.get(name).files:
            try:
                os.link(f, d / Path(f).name)
            except OSError:
                shutil.copy(f, d / Path(f).name)
        out[name] = d
    return out


def roapi(tables: dict[str, Path], root: Path, *, memory: bool):
    """ROAPI over ``tables``, in memory (``use_memory_table``) or reading the files per query."""
    port, pg, flight = free_port(), free_port(), free_port()
    lines = [
        f"addr:\n  http: 127.0.0.1:{port}\n  postgres: 127.0.0.1:{pg}\n  flight_sql: 127.0.0.1:{flight}\ntables:\n"
    ]
    for name, d in tables.items():
        lines.append(
            f"  - name: {name}\n    uri: {d}\n    option:\n      format: parquet\n"
            f"      use_memory_table: {'true' if memory else 'false'}\n"
        )
    config = root / f"roapi-{'memory' if memory else 'ondemand'}.yaml"
    config.write_text("".join(lines))
    return Launch([str(ROAPI_BIN), "-c", str(config)], port, ready="/api/schema", timeout=300)
