"""Ingest benchmark: TPC-H lineitem CSV → a Delta table with ``colonnade ingest``, against DuckDB's
own ``COPY … TO parquet`` and Polars' ``scan_csv().sink_parquet()``, each in a fresh child process
(seconds and the child's peak RSS), all in the same run. Also times the three CSV readers
(pyarrow, DuckDB, Polars) reading the file into Arrow batches.

    python -m bench.ingest [--scale 1] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import COLONNADE, DATA_ROOT

OUT = DATA_ROOT / "ingest"

WRITERS = {
    "duckdb COPY": "import duckdb, sys; duckdb.connect().execute(f\"COPY (FROM read_csv('{sys.argv[1]}')) TO '{sys.argv[2]}/x.parquet' (FORMAT parquet)\")",
    "polars sink_parquet": "import polars as pl, sys; pl.scan_csv(sys.argv[1]).sink_parquet(sys.argv[2] + '/x.parquet')",
}
READERS = {
    "pyarrow open_csv": "import pyarrow.csv as c, sys; print(sum(b.num_rows for b in c.open_csv(sys.argv[1])))",
    "duckdb to_arrow_reader": "import duckdb, sys; r = duckdb.connect().sql(f\"FROM read_csv('{sys.argv[1]}')\").to_arrow_reader(131072); print(sum(b.num_rows for b in r))",
    "polars collect_batches": "import polars as pl, sys; print(sum(len(b) for b in pl.scan_csv(sys.argv[1]).collect_batches()))",
}


def lineitem_csv(scale: float) -> Path:
    path = OUT / f"csv-sf{scale:g}" / "lineitem.csv"
    if not path.exists():
        from engine.demo import tpchgen_binary

        subprocess.run([tpchgen_binary(), "csv", "-s", f"{scale:g}", "--tables", "lineitem", "-o", str(path.parent)], check=True)
    return path


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process. ru_maxrss of RUSAGE_CHILDREN is the
    max over all children so far, so each run goes through its own wrapper process."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, env={**__import__('os').environ, 'NO_COLOR': '1'}); "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run(scale: float, repeat: int) -> dict[str, tuple[float, float]]:
    csv = lineitem_csv(scale)
    results: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):  # best of N, each contender interleaved so machine noise hits all
        for name, code in WRITERS.items():
            target = fresh(OUT / "anchor")
            results[name] = min(results.get(name, (1e9, 0)), measure([sys.executable, "-c", code, str(csv), str(target)]))
        data = fresh(OUT / "delta")
        cmd = [COLONNADE, "ingest", str(csv), "--table", "lineitem", "--data", str(data)]
        results["colonnade ingest"] = min(results.get("colonnade ingest", (1e9, 0)), measure(cmd))
    for name, code in READERS.items():
        results[f"read: {name}"] = measure([sys.executable, "-c", code, str(csv)])
    shutil.rmtree(OUT / "anchor", ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    results = run(args.scale, args.repeat)
    size = lineitem_csv(args.scale).stat().st_size
    best_anchor = min(results["duckdb COPY"][0], results["polars sink_parquet"][0])
    print(f"lineitem.csv sf{args.scale:g}: {size / 1e6:.0f} MB, {os.cpu_count()} cores")
    for name, (seconds, rss) in results.items():
        print(f"  {name:<32} {seconds:7.2f} s   peak RSS {rss:7.0f} MB")
    ratio = results["colonnade ingest"][0] / best_anchor
    print(f"  colonnade / faster anchor: {ratio:.2f}x (target <= 1.2x), peak RSS {results['colonnade ingest'][1]:.0f} MB (target < 1500)")
    print(json.dumps({"ratio": round(ratio, 3), **{k: {"s": round(v[0], 2), "rss_mb": round(v[1])} for k, v in results.items()}}))


if __name__ == "__main__":
    main()
