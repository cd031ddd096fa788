"""200 concurrent clients against a server with 2 query slots and 8 queue places: no crash,
no 5xx, every refusal a 429 with Retry-After, every admitted query finishes, bounded memory.

``COLONNADE_OVERLOAD_CLIENTS`` changes the number of clients (default 200).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.security.conftest import serve_from

CLIENTS = int(os.environ.get("COLONNADE_OVERLOAD_CLIENTS", "200"))
LIMITS = {
    "COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "2",
    "COLONNADE_LIMITS_MAX_QUEUED_QUERIES": "8",
    "COLONNADE_LIMITS_MEMORY_LIMIT": "512MB",
    "COLONNADE_LIMITS_QUERY_TIMEOUT_S": "60",
}
RSS_BOUND_MB = 1500  # the whole server process group, engines included


def group_rss_kb(pgid: int) -> int:
    """Resident memory of every process in the server's process group."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid, self.peak_kb, self.baseline_kb = pgid, 0, group_rss_kb(pgid)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, group_rss_kb(self.pgid))
            self._done.wait(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join()


async def fire(url: str, clients: int) -> list[tuple[int, float, httpx.Headers, bytes]]:
    start = asyncio.Event()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def one(i: int) -> tuple[int, float, httpx.Headers, bytes]:
            await start.wait()
            # a distinct literal per client: the result cache cannot answer for the engine
            sql = (
                f"SELECT {i} AS client, count(*) AS n, sum(l_extendedprice) AS s FROM lineitem l"
                " JOIN orders o ON l.l_orderkey = o.o_orderkey, range(8) r"
            )
            engine = "polars" if i % 4 == 0 else "duckdb"
            t0 = time.perf_counter()
            r = await http.post("/api/sql", json={"sql": sql, "engine": engine})
            return r.status_code, time.perf_counter() - t0, r.headers, r.content

        tasks = [asyncio.create_task(one(i)) for i in range(clients)]
        await asyncio.sleep(0.2)
        start.set()
        return await asyncio.gather(*tasks)


def test_overload(tpch_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "cwd").mkdir()
    with serve_from(tmp_path / "cwd", tpch_dir, env=LIMITS) as server:
        sampler = RssSampler(server.process.pid)  # serve() starts a new session: pgid == pid
        sampler.start()
        try:
            # A thread of its own: an earlier test (Playwright's sync API) may leave this thread's
            # event loop running, and asyncio.run refuses to nest.
            with ThreadPoolExecutor(1) as pool:
                results = pool.submit(asyncio.run, fire(server.url, CLIENTS)).result()
        finally:
            sampler.stop()
        assert server.process.poll() is None, "the server died"
        with server.client() as http:
            assert http.get("/health").json() == {"status": "ok"}
            after = http.post("/api/sql", json={"sql": "SELECT count(*) AS n FROM nation"})
            assert after.status_code == 200

    statuses = [status for status, *_ in results]
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    refused = [(headers, body) for status, _, headers, body in results if status == 429]
    for headers, body in refused:
        assert int(headers["retry-after"]) >= 0
        assert b'"overloaded"' in body
    admitted = sorted(elapsed for status, elapsed, *_ in results if status == 200)
    assert len(admitted) >= 10  # at least the 2 running and the 8 queued
    for status, _, _, body in results:
        if status == 200:
            assert b'"row_count":1' in body  # finished, with its one row
    p99 = admitted[min(len(admitted) - 1, int(len(admitted) * 0.99))]
    peak_mb = sampler.peak_kb / 1024
    print(
        f"\noverload: {CLIENTS} clients, {len(admitted)} admitted, {len(refused)} refused with 429, "
        f"p99 of admitted {p99 * 1000:.0f} ms, peak RSS {peak_mb:.0f} MB (idle {sampler.baseline_kb / 1024:.0f} MB)"
    )
    assert peak_mb < RSS_BOUND_MB
