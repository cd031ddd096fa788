"""Issue 3's figures: small-query latency over HTTP, and TPC-H Q1 throughput with 8 concurrent
clients over HTTP versus the same 8-way load in-process — one run, as a ratio.

    python bench/http_vs_inprocess.py [--scale 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyarrow as pa

from bench.common import colonnade_server, median, percentile, tpch_data, tpch_query

ARROW = "application/vnd.apache.arrow.stream"


def small_query_latency(url: str, n: int = 300) -> dict[str, float]:
    """Distinct SQL each time, so neither the result cache nor an ETag helps."""
    times = []
    with httpx.Client(base_url=url) as client:
        for i in range(n):
            started = time.perf_counter()
            r = client.get("/api/sql", params={"q": f"SELECT n_name FROM nation WHERE n_nationkey = {i % 1000}"})
            r.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": median(times), "p99_ms": percentile(times, 99)}


def http_throughput(url: str, sql: str, clients: int, rounds: int) -> float:
    def client_loop(_: int) -> int:
        with httpx.Client(base_url=url, timeout=600) as client:
            for _ in range(rounds):
                r = client.post("/api/sql", content=sql, headers={"Accept": ARROW})
                r.raise_for_status()
                pa.ipc.open_stream(r.content).read_all()
        return rounds

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client_loop, range(clients)))
    return done / (time.perf_counter() - started)


def inprocess_throughput(data, sql: str, clients: int, rounds: int) -> float:
    import engine

    db = engine.Database(data)
    db.sql(sql).arrow()  # warm-up, as the server is warmed by its first query

    def client_loop(_: int) -> int:
        for _ in range(rounds):
            db.sql(sql).arrow()
        return rounds

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client_loop, range(clients)))
    db.close()
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    data = tpch_data(args.scale)
    q1 = tpch_query(1)
    env = {"COLONNADE_CACHE_MAX_BYTES": "0"}  # measure the engine path, not the result cache
    with colonnade_server(data, env=env) as url:
        httpx.post(url + "/api/sql", content=q1, timeout=600).raise_for_status()  # warm-up
        latency = small_query_latency(url)
        over_http = http_throughput(url, q1, args.clients, args.rounds)
    in_process = inprocess_throughput(data, q1, args.clients, args.rounds)
    result = {
        "scale": args.scale,
        "small_query": latency,
        "q1_qps_http": over_http,
        "q1_qps_in_process": in_process,
        "ratio_http_vs_in_process": over_http / in_process,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
