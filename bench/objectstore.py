"""Object storage (issue 16): TPC-H on an S3-compatible server (moto, on 127.0.0.1).

    python -m bench.harness --only objectstore --scale 1

The same Delta objects (the local TPC-H tables, uploaded as they are) are read by:
  colonnade   the server over s3://…, engines reading local copies through its read cache;
              cold = the first pass with an empty cache, warm = the median of the next passes
  duckdb      in-process DuckDB over pyarrow datasets on pyarrow's S3 filesystem (the only S3
              path DuckDB has offline: httpfs cannot be installed), one view per table
  polars      in-process Polars, pl.scan_delta over its own native object store
              (neither keeps anything between passes: one pass each, cold = warm)
and the same server over the local tables (warm ÷ local disk). Then ingest of the lineitem CSV
into an S3 table ÷ the same ingest into a local directory. Each figure is the 22 queries' total.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import servers
from bench.common import COLONNADE, tpch_query

ARROW = "application/vnd.apache.arrow.stream"
TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")


def log(msg: str) -> None:
    print(f"[objectstore {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def upload(client, bucket: str, data: Path) -> int:
    """Every file of the local TPC-H tables, under s3://bucket/tpch/ (the very same objects)."""
    from concurrent.futures import ThreadPoolExecutor

    files = [p for t in TABLES for p in (data / t).rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, f"tpch/{p.relative_to(data)}"), files))
    return sum(p.stat().st_size for p in files)


def timed(run: Callable[[int], None]) -> float:
    """Seconds for the 22 queries, one after the other."""
    started = time.perf_counter()
    for n in range(1, 23):
        run(n)
    return time.perf_counter() - started


def http_runner(url: str) -> Callable[[int], None]:
    client = httpx.Client(base_url=url, timeout=600)

    def run(n: int) -> None:
        # A distinct comment per pass keeps the result cache out of it: the engine runs each time.
        sql = f"{tpch_query(n)}\n-- pass {time.perf_counter_ns()}"
        r = client.post("/api/sql", content=sql, headers={"Content-Type": "application/sql", "Accept": ARROW})
        r.raise_for_status()

    return run


def duckdb_runner(s3fs, bucket: str) -> Callable[[int], None]:
    import duckdb
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    con = duckdb.connect()
    for table in TABLES:
        files = [
            u.split("://", 1)[1] for u in DeltaTable(f"s3://{bucket}/tpch/{table}", storage_options=OPTIONS).file_uris()
        ]
        con.register(table, ds.dataset(files, format="parquet", filesystem=s3fs))

    def run(n: int) -> None:
        con.sql(tpch_query(n)).to_arrow_table()

    return run


def polars_runner(bucket: str) -> Callable[[int], None]:
    import polars as pl

    ctx = pl.SQLContext({t: pl.scan_delta(f"s3://{bucket}/tpch/{t}", storage_options=OPTIONS) for t in TABLES})

    def run(n: int) -> None:
        ctx.execute(tpch_query(n)).collect()

    return run


OPTIONS: dict[str, str] = {}


def passes(run: Callable[[int], None], count: int) -> tuple[float, float]:
    """(cold: the first pass, warm: the median of the next ``count``; with ``count`` 0, for a
    reader without a cache, the one pass is both)."""
    cold = timed(run)
    if count <= 0:
        return cold, cold
    return cold, statistics.median(timed(run) for _ in range(count))


def anchor(out: dict, name: str, make: Callable[[], Callable[[int], None]]) -> None:
    """One in-process reader's pass; a reader that fails (moto under load can time a range
    request out) is recorded as such and the section goes on."""
    try:
        out[f"{name}_cold_s"], out[f"{name}_warm_s"] = passes(make(), 0)
    except Exception as exc:
        out[f"{name}_error"] = " ".join(str(exc).split())[:300]


def run(data: Path, scale: float, runs: int) -> dict:
    from pyarrow import fs as pafs

    from bench.ingest import lineitem_csv, measure
    from tests.objectstore.s3server import CREDENTIALS, s3_server

    os.environ.update(CREDENTIALS)
    work = Path(tempfile.mkdtemp(prefix="colonnade-objectstore-"))
    out: dict = {"scale": scale, "server": "moto (S3-compatible, 127.0.0.1)"}
    try:
        with s3_server(work / "moto.log") as s3:
            bucket = "colonnade-bench"
            client = s3.client()
            client.create_bucket(Bucket=bucket)
            log("uploading the TPC-H tables ...")
            out["bytes"] = upload(client, bucket, data)
            OPTIONS.update(
                AWS_ENDPOINT_URL=s3.endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
                AWS_ACCESS_KEY_ID=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                AWS_SECRET_ACCESS_KEY=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )  # fmt: skip
            env = {
                "COLONNADE_STORAGE_ENDPOINT_URL": s3.endpoint,
                "COLONNADE_STORAGE_LOCAL_DIR": str(work / "local"),
                "COLONNADE_LIMITS_QUERY_TIMEOUT_S": "600",
                **CREDENTIALS,
            }
            uri = f"s3://{bucket}/tpch"
            log("colonnade over S3 ...")
            with servers.colonnade(uri, env=env) as srv:  # type: ignore[arg-type]
                out["colonnade_cold_s"], out["colonnade_warm_s"] = passes(http_runner(srv.url), runs)
            log("colonnade over local disk ...")
            with servers.colonnade(data, env={"COLONNADE_LIMITS_QUERY_TIMEOUT_S": "600"}) as srv:
                out["local_cold_s"], out["local_warm_s"] = passes(http_runner(srv.url), runs)
            s3fs = pafs.S3FileSystem(
                endpoint_override=s3.endpoint.split("://")[1],
                scheme="http",
                region="us-east-1",
                request_timeout=120,
                connect_timeout=10,
            )
            log("in-process Polars scan_delta (native object store) ...")
            anchor(out, "polars", lambda: polars_runner(bucket))
            log("in-process DuckDB over pyarrow S3 datasets ...")
            anchor(out, "duckdb", lambda: duckdb_runner(s3fs, bucket))
            log(f"so far: {out}")
            log("ingest lineitem CSV to S3 and to local disk ...")
            csv = lineitem_csv(scale)
            environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | env
            for target, name in ((f"s3://{bucket}/ingest", "s3"), (str(work / "disk"), "local")):
                cmd = ["env", *(f"{k}={v}" for k, v in environ.items()), COLONNADE, "ingest", str(csv),
                       "--table", "lineitem", "--data", target, "--mode", "overwrite"]  # fmt: skip
                out[f"ingest_{name}_s"], out[f"ingest_{name}_rss_mb"] = measure(cmd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fastest = min(out.get(f"{n}_warm_s", float("inf")) for n in ("duckdb", "polars"))
    fastest_cold = min(out.get(f"{n}_cold_s", float("inf")) for n in ("duckdb", "polars"))
    out["ratios"] = {
        "warm_vs_faster_inprocess": round(out["colonnade_warm_s"] / fastest, 3),
        "cold_vs_faster_inprocess": round(out["colonnade_cold_s"] / fastest_cold, 3),
        "warm_vs_local_disk": round(out["colonnade_warm_s"] / out["local_warm_s"], 3),
        "ingest_s3_vs_local": round(out["ingest_s3_s"] / out["ingest_local_s"], 3),
    }
    return out
