"""Issue 6's benchmark: every comparison in one run, each ratio taken in that run.

    python -m bench.harness --scale 1 --out bench/results      # what `make bench` runs
    python -m bench.harness --scale 0.01 --duration 1 --runs 1  # the smoke test's size

Sections (each writes into results.json as soon as it finishes, so a partial run keeps its data):
  tpch         TPC-H 22 queries, one client, Arrow: Colonnade vs in-process DuckDB vs ROAPI
  concurrency  8 clients looping Q1 and a mix for --duration s vs 8 in-process threads;
               /health p99 during the load; 1 and 2 uvicorn workers
  gil          the naive pandas service vs Colonnade under the same 8-client mix (JSON), CPU
  small        wrk, 32 connections, 2 workers: a cached point query vs a Litestar hello-world
  exports      1M orders rows as json/csv/arrow/parquet vs ROAPI; the 6M-row lineitem CSV RSS
  profile      py-spy flame graph of the server under the mixed load
  objectstore  TPC-H on an S3-compatible server: cold/warm vs in-process DuckDB and Polars, vs
               local disk; ingest to S3 vs local (bench/objectstore.py; alone: --only objectstore)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pyarrow as pa

from bench import procstat
from bench.common import BENCH_DIR, COLONNADE, free_port, median, percentile, tpch_query
from engine.processes import stop_process_group

ARROW = "application/vnd.apache.arrow.stream"
MIX = (1, 3, 6, 12)  # the mixed set: the naive service implements exactly these
ROAPI_BIN = BENCH_DIR / ".venv-roapi" / "bin" / "roapi"
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
POINT_QUERY = "SELECT o_orderkey, o_orderstatus, o_totalprice, o_orderdate FROM orders WHERE o_orderkey = 42"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- servers ------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def server(
    cmd: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    ready: str = "/ready",
    timeout: float = 120,
    workers: int = 1,
    log_file: Path | None = None,
) -> Iterator[Server]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | (env or {})
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=environ, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, ready, proc, timeout)
        if workers > 1:  # every worker answers before the clock starts
            seen: set[int] = set()
            deadline = time.monotonic() + timeout
            while len(procstat.tree(proc.pid)) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            for _ in range(50 * workers):
                with contextlib.suppress(Exception):
                    seen.add(httpx.get(url + ready, timeout=5).json().get("worker", 0))
                if len(seen) >= workers:
                    break
        yield Server(url, proc)
    finally:
        stop_process_group(proc)
        if log_file:
            out.close()  # type: ignore[union-attr]


def colonnade(data: Path, *, workers: int = 1, cache: bool = False, log_file: Path | None = None):
    port = free_port()
    env = {
        "COLONNADE_LIMITS_MAX_RESULT_ROWS": "100000000",  # the exports send 1M JSON rows
        "COLONNADE_LIMITS_QUERY_TIMEOUT_S": "300",
    }
    if not cache:
        env["COLONNADE_CACHE_MAX_BYTES"] = "0"  # measure the engine path, not the result cache
    cmd = [COLONNADE, "serve", "--data", str(data), "--port", str(port), "--workers", str(workers)]
    return server(cmd, port, env=env, workers=workers, log_file=log_file)


def hello(workers: int = 2):
    from api.server import UVICORN_OPTIONS

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.hello_app:app",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        UVICORN_OPTIONS["log_level"],
    ]
    if not UVICORN_OPTIONS.get("access_log", True):
        cmd.append("--no-access-log")
    return server(cmd, port, workers=workers, env={"PYTHONPATH": str(BENCH_DIR.parent)})


def naive(data: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.naive_service:app", "--port", str(port), "--log-level", "warning"]
    return server(cmd, port, env={"NAIVE_DATA": str(data), "PYTHONPATH": str(BENCH_DIR.parent)}, timeout=300)


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
    return server([str(ROAPI_BIN), "-c", str(config)], port, ready="/api/schema", timeout=300)


def roapi_available() -> bool:
    return ROAPI_BIN.exists()


# -- clients ------------------------------------------------------------------------------------


def colonnade_arrow(client: httpx.Client, sql: str) -> int:
    r = client.post("/api/sql", content=sql, headers={"Accept": ARROW})
    r.raise_for_status()
    return pa.ipc.open_stream(r.content).read_all().num_rows


def colonnade_json(client: httpx.Client, sql: str) -> int:
    r = client.post("/api/sql", content=sql, headers={"Accept": "application/json"})
    r.raise_for_status()
    return len(r.json()["rows"])


def roapi_arrow(client: httpx.Client, sql: str) -> int:
    r = client.post("/api/sql", content=sql, headers={"Accept": ARROW})
    r.raise_for_status()
    return pa.ipc.open_stream(r.content).read_all().num_rows


class InProcess:
    """The ceiling: DuckDB in this process on the same Parquet files with Colonnade's settings
    (threads and memory per worker from ``engine_resources``)."""

    def __init__(self, data: Path, workers: int = 1) -> None:
        import duckdb

        from engine.catalog import Catalog
        from engine.config import engine_resources, load_settings

        settings = load_settings()
        settings.server.workers = workers
        threads, memory = engine_resources(settings)
        self.threads = max(2, threads)  # what Database gives its DuckDB backend
        self.con = duckdb.connect(config={"threads": self.threads, "memory_limit": f"{memory // 1024**2}MB"})
        # The very view definitions Colonnade's DuckDB backend builds (same read_parquet options).
        from engine.backends.duckdb import DuckDBBackend

        catalog = Catalog(data)
        views = DuckDBBackend([str(data)], threads=self.threads)
        for name in catalog.names():
            self.con.execute(f'CREATE VIEW "{name}" AS {views._view_sql(catalog.get(name))}')
        views.close()

    def run(self, sql: str) -> int:
        cur = self.con.cursor()
        try:
            return cur.sql(sql).to_arrow_reader(64 * 1024).read_all().num_rows
        finally:
            cur.close()

    def close(self) -> None:
        self.con.close()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def load(fn: Callable[[int, int], object], clients: int, duration: float) -> dict:
    """``clients`` threads call ``fn(client, i)`` in a loop for ``duration`` s."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + duration

    def loop(c: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                fn(c, i)
            except Exception as exc:
                errors.append(repr(exc)[:200])
                time.sleep(0.05)
                continue
            latencies[c].append(time.perf_counter() - t)
            i += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    elapsed = time.perf_counter() - start
    all_lat = [x for xs in latencies for x in xs]
    return {
        "queries": len(all_lat),
        "seconds": round(elapsed, 3),
        "qps": round(len(all_lat) / elapsed, 3),
        "p50_ms": round(percentile(all_lat, 50) * 1000, 1) if all_lat else None,
        "p99_ms": round(percentile(all_lat, 99) * 1000, 1) if all_lat else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


@contextlib.contextmanager
def health_probe(url: str, duration: float, interval: float = 0.05) -> Iterator[dict]:
    """/health latency from a separate process (so the load clients' GIL does not inflate it)."""
    out: dict = {}
    code = (
        "import httpx,time,json,sys\n"
        "u,d,iv=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]);lat=[]\n"
        "c=httpx.Client(timeout=10);end=time.perf_counter()+d\n"
        "while time.perf_counter()<end:\n"
        " t=time.perf_counter();r=c.get(u+'/health');r.raise_for_status();lat.append((time.perf_counter()-t)*1000)\n"
        " time.sleep(max(0,iv-(time.perf_counter()-t)))\n"
        "print(json.dumps(lat))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(duration), str(interval)], stdout=subprocess.PIPE)
    try:
        yield out
    finally:
        stdout, _ = proc.communicate(timeout=duration + 60)
        lat = json.loads(stdout or b"[]")
        out.update(
            samples=len(lat),
            p50_ms=round(percentile(lat, 50), 2) if lat else None,
            p99_ms=round(percentile(lat, 99), 2) if lat else None,
            max_ms=round(max(lat), 2) if lat else None,
        )


def curl(url: str, *, data: str | None = None, headers: dict[str, str] | None = None) -> dict:
    """One download through curl (native, so the client is never the bottleneck)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}", "--max-time", "600"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if data is not None:
        cmd += ["--data-binary", data]
    cmd.append(url)
    code, seconds, size = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    if code != "200":
        raise RuntimeError(f"HTTP {code} from {url}")
    return {"seconds": float(seconds), "bytes": int(float(size))}


# -- the comparisons ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = Path(args.data)
        self.results: dict = {"meta": meta(args)}
        self.roapi = roapi_available() and not args.no_roapi
        self.wrk = shutil.which("wrk") is not None and not args.no_wrk
        self.py_spy = Path(PY_SPY).exists() and not args.no_profile
        self.results["meta"]["skipped"] = [
            name for name, ok in (("roapi", self.roapi), ("wrk", self.wrk), ("py-spy", self.py_spy)) if not ok
        ]

    def save(self) -> None:
        path = self.out / "results.json"
        path.write_text(json.dumps(self.results, indent=1))

    def section(self, name: str, fn: Callable[[], dict]) -> None:
        if self.args.only and name not in self.args.only:
            return
        log(f"{name} ...")
        started = time.monotonic()
        try:
            self.results[name] = fn()
        except Exception as exc:  # record it and go on: the other comparisons still count
            import traceback

            traceback.print_exc()
            self.results[name] = {"error": repr(exc)}
            if self.args.strict:
                raise
        self.results[name]["section_seconds"] = round(time.monotonic() - started, 1)
        self.results["meta"]["load_after_" + name] = os.getloadavg()
        self.save()
        log(f"{name} done in {self.results[name]['section_seconds']} s")

    # (1) TPC-H, one client, Arrow --------------------------------------------------------------

    def tpch(self) -> dict:
        queries = {n: tpch_query(n) for n in range(1, 23)}
        runs = self.args.runs
        inproc = InProcess(self.data)
        systems: dict[str, Callable[[str], int]] = {"inprocess": inproc.run}
        stack = contextlib.ExitStack()
        with stack:
            col = stack.enter_context(colonnade(self.data, log_file=self.out / "colonnade-tpch.log"))
            col_client = stack.enter_context(httpx.Client(base_url=col.url, timeout=600))
            systems["colonnade"] = lambda sql: colonnade_arrow(col_client, sql)
            if self.roapi:
                tables = roapi_tables(self.data, self.out / "roapi-tables")
                for mode, memory in (("roapi_memory", True), ("roapi_ondemand", False)):
                    srv = stack.enter_context(roapi(tables, self.out, memory=memory))
                    client = stack.enter_context(httpx.Client(base_url=srv.url, timeout=self.args.roapi_timeout))
                    systems[mode] = lambda sql, c=client: roapi_arrow(c, sql)
            per_query: dict[str, dict[str, float | None]] = {}
            rows: dict[str, dict[str, int | None]] = {}
            failures: dict[str, dict[str, str]] = {}
            for n, sql in queries.items():
                per_query[str(n)], rows[str(n)] = {}, {}
                for name, fn in systems.items():
                    times = []
                    try:
                        fn(sql)  # warm-up: file metadata, views, plan caches
                        for _ in range(runs):
                            t, count = timed(lambda fn=fn, sql=sql: fn(sql))
                            times.append(t)
                        rows[str(n)][name] = count  # type: ignore[assignment]
                    except Exception as exc:
                        failures.setdefault(name, {})[str(n)] = _why(exc)
                    per_query[str(n)][name] = round(median(times), 4) if len(times) == runs else None
            inproc.close()
        totals, ratios = {}, {}
        for name in systems:
            ok = [q for q in per_query if per_query[q][name] is not None]
            totals[name] = round(sum(per_query[q][name] for q in ok), 3)  # type: ignore[misc]
        both = [q for q in per_query if all(per_query[q][s] is not None for s in ("colonnade", "inprocess"))]
        ratios["colonnade_vs_inprocess"] = round(
            sum(per_query[q]["colonnade"] for q in both) / sum(per_query[q]["inprocess"] for q in both), 3
        )  # type: ignore[misc]
        for mode in ("roapi_memory", "roapi_ondemand"):
            if mode in systems:
                common = [q for q in per_query if per_query[q][mode] is not None]
                ratios[f"{mode}_vs_colonnade"] = round(
                    sum(per_query[q][mode] for q in common) / sum(per_query[q]["colonnade"] for q in common), 3
                )  # type: ignore[misc]
                ratios[f"{mode}_queries_compared"] = len(common)
        mismatched = [q for q, r in rows.items() if len({v for v in r.values() if v is not None}) > 1]
        return {
            "runs": runs,
            "per_query_s": per_query,
            "totals_s": totals,
            "ratios": ratios,
            "failures": failures,
            "row_count_mismatch": mismatched,
        }

    # (2) concurrency ------------------------------------------------------------------------------

    def concurrency(self) -> dict:
        clients, duration = self.args.clients, self.args.duration
        q1 = tpch_query(1)
        mix = [tpch_query(n) for n in MIX]
        out: dict = {"clients": clients, "duration_s": duration, "mix": list(MIX)}

        def pick(c: int, i: int) -> str:
            return mix[(c + i) % len(mix)]

        inproc = InProcess(self.data)
        inproc.run(q1)
        out["inprocess_q1"] = load(lambda c, i: inproc.run(q1), clients, duration)
        out["inprocess_mix"] = load(lambda c, i: inproc.run(pick(c, i)), clients, duration)
        inproc.close()
        for workers in (1, 2):
            with colonnade(self.data, workers=workers, log_file=self.out / f"colonnade-{workers}w.log") as srv:
                local = threading.local()

                def client(local: threading.local = local) -> httpx.Client:
                    if not hasattr(local, "c"):
                        local.c = httpx.Client(base_url=srv.url, timeout=600)
                    return local.c

                for sql in mix:  # warm every worker's views
                    for _ in range(workers * 2):
                        colonnade_arrow(client(), sql)
                for name, fn in (
                    ("q1", lambda c, i: colonnade_arrow(client(), q1)),
                    ("mix", lambda c, i: colonnade_arrow(client(), pick(c, i))),
                ):
                    with procstat.ProcessSampler(srv.pid) as cpu, health_probe(srv.url, duration) as health:
                        result = load(fn, clients, duration)
                    result["health"] = health
                    result["cpu"] = cpu.summary()
                    out[f"colonnade_{workers}w_{name}"] = result
        out["ratios"] = {
            f"{w}w_{k}": round(out[f"colonnade_{w}w_{k}"]["qps"] / out[f"inprocess_{k}"]["qps"], 3)
            for w in (1, 2)
            for k in ("q1", "mix")
        }
        return out

    # (3) the GIL story ----------------------------------------------------------------------------

    def gil(self) -> dict:
        clients, duration = self.args.clients, self.args.duration
        mix = [tpch_query(n) for n in MIX]
        out: dict = {"clients": clients, "duration_s": duration, "mix": list(MIX), "format": "json"}
        with naive(self.data) as srv:
            local = threading.local()

            def naive_call(c: int, i: int) -> None:
                if not hasattr(local, "c"):
                    local.c = httpx.Client(base_url=srv.url, timeout=600)
                local.c.get(f"/q/{MIX[(c + i) % len(MIX)]}").raise_for_status()

            naive_call(0, 0)
            with procstat.ProcessSampler(srv.pid) as cpu:
                out["naive"] = load(naive_call, clients, duration)
            out["naive"]["cpu"] = cpu.summary()
        with colonnade(self.data) as srv:
            local2 = threading.local()

            def col_call(c: int, i: int) -> None:
                if not hasattr(local2, "c"):
                    local2.c = httpx.Client(base_url=srv.url, timeout=600)
                colonnade_json(local2.c, mix[(c + i) % len(mix)])

            for i in range(len(mix)):
                col_call(0, i)
            with procstat.ProcessSampler(srv.pid) as cpu:
                out["colonnade"] = load(col_call, clients, duration)
            out["colonnade"]["cpu"] = cpu.summary()
        out["ratio_colonnade_vs_naive"] = round(out["colonnade"]["qps"] / max(out["naive"]["qps"], 1e-9), 2)
        return out

    # (4) small cached queries ---------------------------------------------------------------------

    def small(self) -> dict:
        if not self.wrk:
            return {"skipped": "wrk is not installed"}
        seconds, runs = self.args.wrk_seconds, self.args.wrk_runs
        out: dict = {"connections": 32, "workers": 2, "seconds": seconds, "runs": runs, "query": POINT_QUERY}
        path = "/api/sql?q=" + quote(POINT_QUERY)
        with colonnade(self.data, workers=2, cache=True) as col, hello(2) as hw:
            targets = {"colonnade": col.url + path, "hello": hw.url + "/"}
            for url in targets.values():
                wrk(url, 1)  # warm every worker (and the result cache)
            for name in targets:
                out[name] = []
            for _ in range(runs):  # interleaved, so drift in the machine's load hits both
                for name, url in targets.items():
                    out[name].append(wrk(url, seconds))
        for name in targets:
            out[f"{name}_rps"] = median([r["rps"] for r in out[name]])
        out["ratio"] = round(out["colonnade_rps"] / out["hello_rps"], 3)
        return out

    # (5) exports ----------------------------------------------------------------------------------

    def exports(self) -> dict:
        rows = self.args.export_rows
        # A key range, not LIMIT: TPC-H uses 8 order keys of every 32, so o_orderkey <= rows * 4
        # selects exactly ``rows`` rows (while they last). LIMIT would measure DuckDB's
        # order-preserving LIMIT (0.36 s vs 0.20 s for 1M rows in raw DuckDB), not the export path.
        sql = f"SELECT * FROM orders WHERE o_orderkey <= {rows * 4}"
        formats = {
            "json": "application/json",
            "csv": "text/csv",
            "arrow": ARROW,
            "parquet": "application/vnd.apache.parquet",
        }
        roapi_accept = {
            "json": "application/json",
            "csv": "application/csv",
            "arrow": ARROW,
            "parquet": "application/vnd.apache.parquet",
        }
        out: dict = {
            "rows": rows,
            "sql": sql,
            "runs": self.args.runs,
            "colonnade": {},
            "roapi_memory": {},
            "roapi_ondemand": {},
        }

        def measure(srv: Server, fetch: Callable[[], dict]) -> dict:
            pids = srv.pids()
            base = procstat.rss(pids)
            runs = []
            for _ in range(self.args.runs):
                procstat.reset_peak(pids)
                r = fetch()
                r["peak_rss_mb"] = round(procstat.peak_rss(pids) / 1e6, 1)
                runs.append(r)
            return {
                "seconds": round(median([r["seconds"] for r in runs]), 4),
                "bytes": runs[0]["bytes"],
                "mb_per_s": round(runs[0]["bytes"] / 1e6 / median([r["seconds"] for r in runs]), 1),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "base_rss_mb": round(base / 1e6, 1),
            }

        with colonnade(self.data) as srv:
            for fmt in formats:
                url = f"{srv.url}/api/sql?q={quote(sql)}&format={fmt}"
                curl(url)  # warm-up
                out["colonnade"][fmt] = measure(srv, lambda url=url: curl(url))
            limit_url = f"{srv.url}/api/sql?q={quote(f'SELECT * FROM orders LIMIT {rows}')}&format=arrow"
            curl(limit_url)
            out["colonnade_arrow_limit"] = measure(srv, lambda: curl(limit_url))
            # 6M-row lineitem CSV: RSS growth over the idle worker while it streams.
            big = f"{srv.url}/api/sql?q={quote('SELECT * FROM lineitem')}&format=csv"
            pids = srv.pids()
            before = procstat.rss(pids)
            procstat.reset_peak(pids)
            with procstat.ProcessSampler(srv.pid, 0.1) as sampler:
                r = curl(big)
            peak = max(procstat.peak_rss(pids), max((x for _, _, x in sampler.samples), default=0))
            out["lineitem_csv"] = {
                "seconds": r["seconds"],
                "bytes": r["bytes"],
                "rss_before_mb": round(before / 1e6, 1),
                "rss_peak_mb": round(peak / 1e6, 1),
                "rss_growth_mb": round((peak - before) / 1e6, 1),
                "mb_per_s": round(r["bytes"] / 1e6 / r["seconds"], 1),
            }
        if self.roapi:
            tables = roapi_tables(self.data, self.out / "roapi-tables")
            for mode, memory in (("roapi_memory", True), ("roapi_ondemand", False)):
                with roapi(tables, self.out, memory=memory) as srv:
                    for fmt, accept in roapi_accept.items():
                        url = f"{srv.url}/api/sql"
                        fetch = lambda url=url, accept=accept: curl(url, data=sql, headers={"Accept": accept})  # noqa: E731
                        try:
                            fetch()
                            out[mode][fmt] = measure(srv, fetch)
                        except Exception as exc:
                            out[mode][fmt] = {"error": _why(exc)}
        out["ratios_vs_best_roapi"] = {}
        for fmt in formats:
            peers = [
                out[m][fmt]["seconds"] for m in ("roapi_memory", "roapi_ondemand") if "seconds" in out[m].get(fmt, {})
            ]
            if peers:
                out["ratios_vs_best_roapi"][fmt] = round(out["colonnade"][fmt]["seconds"] / min(peers), 3)
        return out

    # (6) profile ----------------------------------------------------------------------------------

    def profile(self) -> dict:
        if not self.py_spy:
            return {"skipped": "py-spy is not installed"}
        seconds = self.args.profile_seconds
        mix = [tpch_query(n) for n in MIX]
        out: dict = {"seconds": seconds, "load": f"{self.args.clients} clients looping the mix {list(MIX)}, Arrow"}
        plots = self.out / "plots"
        plots.mkdir(exist_ok=True)
        with colonnade(self.data) as srv:
            local = threading.local()

            def call(c: int, i: int) -> None:
                if not hasattr(local, "c"):
                    local.c = httpx.Client(base_url=srv.url, timeout=600)
                colonnade_arrow(local.c, mix[(c + i) % len(mix)])

            for i in range(len(mix)):
                call(0, i)
            svg, raw = plots / "flamegraph.svg", self.out / "profile-native.txt"
            runs = {}
            loader = threading.Thread(target=lambda: runs.update(load=load(call, self.args.clients, 2 * seconds + 6)))
            loader.start()
            time.sleep(1)
            out["svg"] = _py_spy(
                [
                    "record",
                    "-p",
                    str(srv.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "-r",
                    "100",
                    "-d",
                    str(seconds),
                    "-f",
                    "flamegraph",
                    "-o",
                    str(svg),
                ]
            )
            native = _py_spy(
                [
                    "record",
                    "-p",
                    str(srv.pid),
                    "--subprocesses",
                    "--native",
                    "-r",
                    "100",
                    "-d",
                    str(seconds),
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                ]
            )
            if not native["ok"]:  # no native unwinding here: classify by the Python leaf instead
                native = _py_spy(
                    [
                        "record",
                        "-p",
                        str(srv.pid),
                        "--subprocesses",
                        "--nonblocking",
                        "-r",
                        "100",
                        "-d",
                        str(seconds),
                        "-f",
                        "raw",
                        "-o",
                        str(raw),
                    ]
                )
            out["raw"] = native
            loader.join()
            out["load_during_profile"] = runs.get("load")
        if raw.exists():
            out["shares"] = classify(raw.read_text())
        out["svg_path"] = str(svg) if svg.exists() else None
        return out

    # (7) ingestion --------------------------------------------------------------------------------

    def ingest(self) -> dict:
        """`colonnade ingest` of lineitem as CSV and NDJSON against DuckDB and Polars writing Parquet
        (best of --ingest-runs, each contender in a fresh process; see bench/ingest.py)."""
        from bench import ingest as ingest_bench

        runs, scale = self.args.ingest_runs, self.args.scale
        results = ingest_bench.run(scale, runs) | ingest_bench.run_ndjson(scale, runs)
        out = ingest_bench.summarise(results)
        out |= {
            "scale": scale,
            "runs": runs,
            "csv_mb": round(ingest_bench.lineitem_csv(scale).stat().st_size / 1e6),
            "ndjson_mb": round(ingest_bench.lineitem_ndjson(scale).stat().st_size / 1e6),
        }
        return out


def _py_spy(args: list[str]) -> dict:
    proc = subprocess.run([PY_SPY, *args], capture_output=True, text=True)
    return {"ok": proc.returncode == 0, "native": "--native" in args, "stderr": proc.stderr[-400:]}


IDLE_LEAVES = (
    "select (selectors.py",
    "_worker (concurrent/futures/thread.py:81",
    "wait (threading.py",
    "dequeue (logging/handlers.py",
    "Queue.get (queue.py",
)
ENGINE_LIBS = ("_duckdb", "libarrow", "libparquet", "pyarrow/lib", "pyarrow/_", "polars", "duckdb::")


def classify(raw: str) -> dict:
    """Shares of py-spy (--native) samples of the server's Python threads, by what the thread
    was doing: inside native engine code (DuckDB, Arrow, Parquet — including DuckDB's calling
    thread waiting for its own worker threads), running Python (Litestar, uvicorn, Colonnade,
    the interpreter), waiting for the GIL or a lock, or other native code (socket I/O, libc).
    Threads parked waiting for work (idle pool threads, the selector) are counted apart."""
    counts = {"native_engine": 0, "python": 0, "gil_or_lock_wait": 0, "native_other": 0}
    where: dict[str, int] = {}
    idle = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")[1:]  # [0] names the process
        py = [i for i, f in enumerate(frames) if ".py:" in f]
        if not py:
            counts["native_other"] += count
            continue
        last = frames[py[-1]]
        callees = frames[py[-1] + 1 :]
        if any(k in last for k in IDLE_LEAVES):
            idle += count
            continue
        if any(lib in f for f in callees for lib in ENGINE_LIBS):
            kind = "native_engine"
        elif not callees or all("libpython" in f or ".c:" in f or ".c.h:" in f for f in callees):
            kind = "python"
        elif all("libc.so" in f or "pthread" in f for f in callees) and any("pthread_cond" in f for f in callees):
            kind = "gil_or_lock_wait"
        else:
            kind = "native_other"
        counts[kind] += count
        key = f"{kind}: {last}"
        where[key] = where.get(key, 0) + count
    busy = sum(counts.values()) or 1
    return {
        "busy_samples": sum(counts.values()),
        "idle_samples": idle,
        "share": {k: round(v / busy, 3) for k, v in counts.items()},
        "top": sorted(where.items(), key=lambda kv: -kv[1])[:15],
    }


def _objectstore(bench: Bench) -> dict:
    from bench import objectstore

    return objectstore.run(bench.data, bench.args.scale, bench.args.runs)


Bench.objectstore = _objectstore  # type: ignore[attr-defined]


def wrk(url: str, seconds: float) -> dict:
    proc = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = proc.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    p99_ms = None
    if p99:
        p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return {"rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0, "p99_ms": p99_ms}


def _why(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:200]}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return repr(exc)[:240]


def meta(args: argparse.Namespace) -> dict:
    import duckdb

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR.parent
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "commit": commit,
        "scale": args.scale,
        "load_before": os.getloadavg(),
        "roapi": subprocess.run([str(ROAPI_BIN), "--version"], capture_output=True, text=True).stdout.strip()
        if ROAPI_BIN.exists()
        else None,
    }


SECTIONS = ("tpch", "concurrency", "gil", "small", "exports", "profile", "ingest", "objectstore")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--data", help="a TPC-H data dir (default: bench/data/sf<scale>, generated if missing)")
    p.add_argument("--out", default=str(BENCH_DIR / "results"))
    p.add_argument("--runs", type=int, default=3, help="timed repetitions per measurement (medians)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per concurrent load")
    p.add_argument("--wrk-seconds", type=float, default=4.0)
    p.add_argument("--wrk-runs", type=int, default=5, help="interleaved wrk runs per side (2 workers are bimodal)")
    p.add_argument("--export-rows", type=int, default=1_000_000)
    p.add_argument("--profile-seconds", type=int, default=8)
    p.add_argument("--ingest-runs", type=int, default=2, help="repetitions of each ingest contender (best of)")
    p.add_argument("--roapi-timeout", type=float, default=60.0)
    p.add_argument("--only", nargs="*", choices=SECTIONS)
    p.add_argument("--no-roapi", action="store_true")
    p.add_argument("--no-wrk", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--strict", action="store_true", help="stop at the first failing section")
    args = p.parse_args(argv)
    if args.data is None:
        from bench.common import tpch_data

        log(f"TPC-H scale {args.scale:g} data ...")
        args.data = str(tpch_data(args.scale))
    bench = Bench(args)
    started = time.monotonic()
    for name in SECTIONS:
        bench.section(name, getattr(bench, name))
    bench.results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    bench.results["meta"]["load_after"] = os.getloadavg()
    bench.save()
    log(f"all done in {bench.results['meta']['total_seconds']} s -> {bench.out / 'results.json'}")
    return bench.results


if __name__ == "__main__":
    main()
