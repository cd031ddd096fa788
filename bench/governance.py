"""Issue 13's governance benchmark: what running Polars in killable worker processes costs, and
what stopping a query and streaming wide rows cost in memory.

    python -m bench.governance --data /tmp/sf1 --runs 3 > governance.json
    python -m bench.harness --only governance --data /tmp/sf1      # the same, as a harness section

- tpch: the 22 TPC-H queries on Polars, isolated (``PolarsBackend``: a worker process, Arrow IPC
  frames over a pipe) vs in-process (``run_polars`` with ``collect()``, what the backend did
  before), interleaved, median of ``--runs``; both include translating the AST to Polars SQL.
- transfer: one big result (``SELECT * FROM lineitem``) through the pipe vs in-process.
- kill: a runaway Polars query is cancelled; time until its worker is gone, and the memory of
  this process and its workers before, at the peak and after the replacement worker is up.
- wide_exports: a ``--wide-mb`` result of wide rows in every format from a real server: the
  server process's RSS growth (DuckDB with 10 KB rows, Polars with 10 MB rows).

Runs in its own process: Polars reads POLARS_MAX_THREADS once, at import, and the in-process
side must get the same thread count as the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bench import procstat
from bench.common import tpch_query

if TYPE_CHECKING:
    import pyarrow as pa

    from engine.catalog import TableSnapshot
    from engine.database import Database

NATIONS = ", ".join(f"nation {t}" for t in "abcdef")
RUNAWAY = f"SELECT sum(length(a.n_comment || f.n_comment)) FROM {NATIONS}"  # 244M rows of string work
FORMATS = ("json", "ndjson", "csv", "arrow", "parquet")


def _drain(batches: Iterable[pa.RecordBatch]) -> int:
    return sum(b.num_rows for b in batches)


def collected_in_process(sql: str, tables: Mapping[str, TableSnapshot]) -> list[pa.RecordBatch]:
    """Polars in this process, as the backend ran it before isolation: collect(), then batches."""
    import polars as pl

    from engine.backends.base import DEFAULT_BATCH_ROWS
    from engine.backends.polars import scan
    from engine.backends.semantics import regular_schema

    frame = pl.SQLContext({name: scan(snap) for name, snap in tables.items()}).execute(sql)
    frame.collect_schema()
    table = frame.collect().to_arrow()
    return table.cast(regular_schema(table.schema)).to_batches(max_chunksize=DEFAULT_BATCH_ROWS)


def tpch(db: Database, runs: int) -> dict:
    from engine.backends.base import QueryControl
    from engine.backends.polars import polars_sql

    backend = db.backend("polars")
    per_query: dict[str, dict[str, float]] = {}
    for n in range(1, 23):
        prepared = db.prepare(tpch_query(n), engine="polars")
        sides = {
            "inprocess": lambda p=prepared: _drain(collected_in_process(polars_sql(p), p.by_relation)),
            "isolated": lambda p=prepared: _drain(backend.execute(p, QueryControl())),
        }
        rows = {name: fn() for name, fn in sides.items()}  # warm-up: file metadata, a warm worker
        if len(set(rows.values())) != 1:
            raise AssertionError(f"Q{n}: row counts differ {rows}")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(runs):
            for name, fn in sides.items():
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        per_query[str(n)] = {name: round(statistics.median(t), 4) for name, t in times.items()}
    totals = {side: round(sum(q[side] for q in per_query.values()), 3) for side in ("inprocess", "isolated")}
    return {
        "runs": runs,
        "per_query_s": per_query,
        "totals_s": totals,
        "ratio_isolated_vs_inprocess": round(totals["isolated"] / totals["inprocess"], 3),
    }


def transfer(db: Database, runs: int) -> dict:
    from engine.backends.base import QueryControl
    from engine.backends.polars import polars_sql, run_polars

    prepared = db.prepare("SELECT * FROM lineitem", engine="polars")
    backend = db.backend("polars")
    out: dict = {}
    for name, fn in (
        ("inprocess", lambda: run_polars(polars_sql(prepared), prepared.by_relation)[1]),
        ("isolated", lambda: backend.execute(prepared, QueryControl())),
    ):
        times, nbytes = [], 0
        for _ in range(runs + 1):
            started = time.perf_counter()
            nbytes = sum(b.nbytes for b in fn())
            times.append(time.perf_counter() - started)
        best = min(times[1:]) if runs else times[0]
        out[name] = {"seconds": round(best, 3), "mb": round(nbytes / 1e6, 1), "mb_per_s": round(nbytes / 1e6 / best)}
    out["ratio_isolated_vs_inprocess"] = round(out["isolated"]["seconds"] / out["inprocess"]["seconds"], 3)
    return out


def kill(db: Database, trials: int) -> dict:
    from engine.backends.base import QueryControl
    from engine.errors import QueryCancelled

    backend = db.backend("polars")
    prepared = db.prepare(RUNAWAY, engine="polars")
    latencies, before, peaks, after = [], [], [], []
    me = os.getpid()
    for _ in range(trials):
        _settle(me)
        before.append(procstat.rss(procstat.tree(me)))
        control = QueryControl()
        execution = backend.execute(prepared, control)
        failure: list[BaseException] = []

        def run(execution=execution, failure=failure) -> None:
            try:
                _drain(execution)
            except QueryCancelled as exc:
                failure.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        peak = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            peak = max(peak, procstat.rss(procstat.tree(me)))
            time.sleep(0.05)
        busy = _busiest(backend.pool.pids())
        started = time.perf_counter()
        control.cancel()
        while _alive(busy):
            time.sleep(0.001)
        latencies.append((time.perf_counter() - started) * 1000)
        thread.join()
        assert failure, "the runaway query finished instead of being cancelled"
        peaks.append(peak)
        _settle(me)
        after.append(procstat.rss(procstat.tree(me)))
    mb = lambda values: round(statistics.median(values) / 1e6, 1)  # noqa: E731
    return {
        "trials": trials,
        "query": RUNAWAY,
        "kill_latency_ms": {"median": round(statistics.median(latencies), 1), "max": round(max(latencies), 1)},
        "rss_mb": {"before": mb(before), "peak": mb(peaks), "after": mb(after)},
    }


def wide_exports(data: Path, total_mb: int) -> dict:
    from bench.servers import colonnade

    queries = {
        "duckdb-10KB-rows": ("duckdb", f"SELECT repeat('x', 10000) AS s FROM range({total_mb * 100})"),
        "polars-10MB-rows": ("polars", f"SELECT lpad('', 10000000, 'x') AS s FROM range({max(1, total_mb // 10)})"),
    }
    out: dict = {"result_mb": total_mb}
    with colonnade(data) as srv:
        import httpx

        for label, (engine_name, sql) in queries.items():
            out[label] = {}
            for fmt in FORMATS:
                time.sleep(0.5)
                base = procstat.rss([srv.proc.pid])
                peak, done = [base], threading.Event()

                def sample(peak=peak, done=done) -> None:  # the server process alone, not its workers
                    while not done.is_set():
                        peak[0] = max(peak[0], procstat.rss([srv.proc.pid]))
                        done.wait(0.01)

                sampler = threading.Thread(target=sample)
                sampler.start()
                started, received = time.perf_counter(), 0
                params = {"q": sql, "format": fmt, "engine": engine_name}
                try:
                    with (
                        httpx.Client(base_url=srv.url, timeout=600) as http,
                        http.stream("GET", "/api/sql", params=params) as response,
                    ):
                        for chunk in response.iter_raw():
                            received += len(chunk)
                        status = response.status_code
                finally:
                    done.set()
                    sampler.join()
                out[label][fmt] = {
                    "status": status,
                    "mb": round(received / 1e6, 1),
                    "seconds": round(time.perf_counter() - started, 2),
                    "rss_growth_mb": round((peak[0] - base) / 1e6, 1),
                }
    out["max_rss_growth_mb"] = max(
        v["rss_growth_mb"] for k, row in out.items() if k != "result_mb" for v in row.values()
    )
    return out


def _busiest(pids: list[int]) -> int:
    before = {pid: procstat.cpu_ticks([pid]) for pid in pids}
    time.sleep(0.3)
    return max(pids, key=lambda pid: procstat.cpu_ticks([pid]) - before[pid])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _settle(root: int, timeout_s: float = 60) -> None:
    """Wait until this process and its workers are idle (a replacement worker has started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = procstat.tree(root)
        start = procstat.cpu_ticks(pids)
        time.sleep(0.5)
        if (procstat.cpu_ticks(pids) - start) / procstat.TICKS < 0.1:
            return


def run(data: Path, *, runs: int, kill_trials: int, wide_mb: int) -> dict:
    from engine.config import engine_resources, load_settings

    settings = load_settings(environ={})
    threads, _ = engine_resources(settings)
    os.environ["POLARS_MAX_THREADS"] = str(threads)  # before Polars is imported: as in the workers
    import engine

    out: dict = {"polars_threads": threads}
    with engine.Database(data, settings=settings) as db:
        out["tpch"] = tpch(db, runs)
        out["transfer"] = transfer(db, runs)
        out["kill"] = kill(db, kill_trials)
    out["wide_exports"] = wide_exports(data, wide_mb)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--kill-trials", type=int, default=5)
    p.add_argument("--wide-mb", type=int, default=1000)
    args = p.parse_args(argv)
    result = run(Path(args.data), runs=args.runs, kill_trials=args.kill_trials, wide_mb=args.wide_mb)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
