"""What drives the servers: HTTP calls, the in-process DuckDB ceiling, N-client loads, the
/health probe, curl downloads and wrk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa

from bench.common import BENCH_DIR, percentile

ARROW = "application/vnd.apache.arrow.stream"


def colonnade_arrow(client: httpx.Client, sql: str) -> int:
    r = client.post("/api/sql", content=sql, headers={"Accept": ARROW})
    r.raise_for_status()
    return pa.ipc.open_stream(r.content).read_all().num_rows


def colonnade_json(client: httpx.Client, sql: str) -> int:
    r = client.post("/api/sql", content=sql, headers={"Accept": "application/json"})
    r.raise_for_status()
    return len(r.json()["rows"])


roapi_arrow = colonnade_arrow  # ROAPI answers the same request the same way


class HttpClients:
    """One keep-alive client per calling thread, all closed at the end of a phase, so every
    phase opens its own connections (with several workers, the kernel deals them out anew)."""

    def __init__(self, url: str, timeout: float = 600) -> None:
        self.url, self.timeout = url, timeout
        self._local = threading.local()
        self._all: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        client = getattr(self._local, "c", None)
        if client is None:
            client = self._local.c = httpx.Client(base_url=self.url, timeout=self.timeout)
            with self._lock:
                self._all.append(client)
        return client

    def __enter__(self) -> HttpClients:
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._all:
            client.close()


class InProcess:
    """The ceiling: DuckDB in this process on the same Parquet files with Colonnade's settings
    (threads and memory per worker from ``engine_resources``) and the very view definitions
    Colonnade's DuckDB backend builds (same ``read_parquet`` options)."""

    def __init__(self, data: Path, workers: int = 1) -> None:
        import duckdb

        from engine.backends.duckdb import DuckDBBackend
        from engine.catalog import Catalog
        from engine.config import engine_resources, load_settings

        settings = load_settings()
        settings.server.workers = workers
        threads, memory = engine_resources(settings)
        self.threads = max(2, threads)  # what Database gives its DuckDB backend
        self.con = duckdb.connect(config={"threads": self.threads, "memory_limit": f"{memory // 1024**2}MB"})
        catalog = Catalog(data)
        views = DuckDBBackend(catalog.table_dirs, threads=self.threads)
        try:
            for name in catalog.names():
                view = views._view_sql(views._sandbox, catalog.get(name))
                self.con.execute(f'CREATE VIEW "{name}" AS {view}')
        finally:
            views.close()

    def run(self, sql: str) -> int:
        cur = self.con.cursor()
        try:
            return cur.sql(sql).to_arrow_reader(64 * 1024).read_all().num_rows
        finally:
            cur.close()

    def close(self) -> None:
        self.con.close()


def load(fn: Callable[[int, int], object], clients: int, duration: float, stop: threading.Event | None = None) -> dict:
    """``clients`` threads call ``fn(client, i)`` in a loop for ``duration`` s (or until ``stop``).

    ``qps`` counts the work done inside the window: each query by the share of its run that
    fell inside it. Clients start no query after the window but finish the one they are in, so
    concurrency stays at ``clients`` throughout the window, and a phase only a few query
    latencies long is neither cut short (queries in flight) nor padded (the drain after it).
    """
    spans: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = time.perf_counter()
    window = [start + duration]

    def loop(c: int) -> None:
        i = 0
        while time.perf_counter() < window[0]:
            if stop is not None and stop.is_set():
                window[0] = min(window[0], time.perf_counter())
                break
            t = time.perf_counter()
            try:
                fn(c, i)
            except Exception as exc:
                errors.append(repr(exc)[:200])
                time.sleep(0.05)
                continue
            spans[c].append((t, time.perf_counter()))
            i += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    end = window[0]
    done = [span for xs in spans for span in xs]
    latencies = [t1 - t0 for t0, t1 in done]
    return {
        "queries": len(done),
        "qps": round(window_work(done, start, end) / max(end - start, 1e-9), 3),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def window_work(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Queries done inside [start, end]: each (t0, t1) run counts by the share of it inside."""
    return sum(max(0.0, min(t1, end) - max(t0, start)) / max(t1 - t0, 1e-9) for t0, t1 in spans)


class HealthProbe:
    """``GET /health`` every ``interval`` s from a separate process (bench/probe.py, so the
    load clients' GIL does not inflate it) for as long as the probe lives; ``window`` gives
    the latencies of a phase from their monotonic timestamps. It runs through both phases of
    a pair, so both sides pay its CPU."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic s, ms; -1 = failed)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.probe", url, str(interval)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(BENCH_DIR.parent)},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            t, ms = line.split()
            self.samples.append((float(t), float(ms)))

    def window(self, start: float, end: float) -> dict:
        inside = [ms for t, ms in self.samples if start <= t <= end]
        ok = [ms for ms in inside if ms >= 0]
        return {
            "samples": len(ok),
            "failed": len(inside) - len(ok),
            "p50_ms": round(percentile(ok, 50), 2) if ok else None,
            "p99_ms": round(percentile(ok, 99), 2) if ok else None,
            "max_ms": round(max(ok), 2) if ok else None,
        }

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def __enter__(self) -> HealthProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def curl(
    url: str, *, data: str | None = None, headers: dict[str, str] | None = None, output: str = "/dev/null"
) -> dict:
    """One download through curl (native, so the client is never the bottleneck)."""
    cmd = ["curl", "-s", "-o", output, "-w", "%{http_code} %{time_total} %{size_download}", "--max-time", "600"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if data is not None:
        cmd += ["--data-binary", data]
    cmd.append(url)
    code, seconds, size = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    if code != "200":
        raise RuntimeError(f"HTTP {code} from {url}")
    return {"seconds": float(seconds), "bytes": int(float(size))}


def wrk(url: str, seconds: float, connections: int = 32) -> dict:
    """wrk's requests/s, non-2xx count and p99 (wrk takes whole seconds)."""
    proc = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = proc.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None
    return {"rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0, "p99_ms": p99_ms}


def why(exc: BaseException) -> str:
    """One line saying why a call failed."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:200]}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return repr(exc)[:240]
