"""Ingest benchmark: TPC-H lineitem CSV → a Delta table with ``colonnade ingest``, against DuckDB's
own ``COPY … TO parquet`` and Polars' ``scan_csv().sink_parquet()``, each in a fresh child process
(seconds and the child's peak RSS), all in the same run. Also times the three CSV readers
(pyarrow, DuckDB, Polars) reading the file into Arrow batches.

``--ndjson`` adds the same rows as NDJSON: ``colonnade ingest`` failing on bad lines (one pass)
and quarantining them (a second pass finds bad lines), against DuckDB and Polars writing Parquet.

    python -m bench.ingest [--scale 1] [--repeat 1] [--ndjson]
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
NDJSON_WRITERS = {
    "duckdb COPY": "import duckdb, sys; duckdb.connect().execute(f\"COPY (FROM read_json('{sys.argv[1]}', format='newline_delimited')) TO '{sys.argv[2]}/x.parquet' (FORMAT parquet)\")",
    "polars sink_parquet": "import polars as pl, sys; pl.scan_ndjson(sys.argv[1]).sink_parquet(sys.argv[2] + '/x.parquet')",
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

        subprocess.run(
            [tpchgen_binary(), "csv", "-s", f"{scale:g}", "--tables", "lineitem", "-o", str(path.parent)], check=True
        )
    return path


def lineitem_ndjson(scale: float) -> Path:
    path = OUT / f"ndjson-sf{scale:g}" / "lineitem.ndjson"
    if not path.exists():
        import duckdb

        path.parent.mkdir(parents=True, exist_ok=True)
        duckdb.connect().execute(f"COPY (FROM read_csv('{lineitem_csv(scale)}')) TO '{path}' (FORMAT json)")
    return path


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process. ru_maxrss of RUSAGE_CHILDREN is the
    max over all children so far, so each run goes through its own wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, env={**__import__('os').environ, 'NO_COLOR': '1'}); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True
    ).stdout.split()
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
            results[name] = min(
                results.get(name, (1e9, 0)), measure([sys.executable, "-c", code, str(csv), str(target)])
            )
        data = fresh(OUT / "delta")
        cmd = [COLONNADE, "ingest", str(csv), "--table", "lineitem", "--data", str(data)]
        results["colonnade ingest"] = min(results.get("colonnade ingest", (1e9, 0)), measure(cmd))
    for name, code in READERS.items():
        results[f"read: {name}"] = measure([sys.executable, "-c", code, str(csv)])
    shutil.rmtree(OUT / "anchor", ignore_errors=True)
    return results


def run_ndjson(scale: float, repeat: int) -> dict[str, tuple[float, float]]:
    ndjson = lineitem_ndjson(scale)
    results: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for name, code in NDJSON_WRITERS.items():
            target = fresh(OUT / "anchor")
            results[f"ndjson: {name}"] = min(
                results.get(f"ndjson: {name}", (1e9, 0)),
                measure([sys.executable, "-c", code, str(ndjson), str(target)]),
            )
        for label, extra in (("fail", []), ("quarantine", ["--on-error", f"quarantine={OUT / 'rejects.csv'}"])):
            cmd = [COLONNADE, "ingest", str(ndjson), "--table", "lineitem", "--data", str(fresh(OUT / "delta")), *extra]
            key = f"ndjson: colonnade ingest ({label})"
            results[key] = min(results.get(key, (1e9, 0)), measure(cmd))
    shutil.rmtree(OUT / "anchor", ignore_errors=True)
    return results


def summarise(results: dict[str, tuple[float, float]]) -> dict:
    """Ratios of ``colonnade ingest`` to the faster anchor writing the same input to Parquet."""
    out = {k: {"s": round(v[0], 2), "rss_mb": round(v[1])} for k, v in results.items()}
    anchor = min(results["duckdb COPY"][0], results["polars sink_parquet"][0])
    ratios = {"csv": round(results["colonnade ingest"][0] / anchor, 3)}
    if "ndjson: duckdb COPY" in results:
        nd_anchor = min(results["ndjson: duckdb COPY"][0], results["ndjson: polars sink_parquet"][0])
        for label in ("fail", "quarantine"):
            ratios[f"ndjson_{label}"] = round(results[f"ndjson: colonnade ingest ({label})"][0] / nd_anchor, 3)
    return {"results": out, "ratios": ratios, "peak_rss_mb": round(results["colonnade ingest"][1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ndjson", action="store_true", help="also ingest the rows as NDJSON")
    args = parser.parse_args()
    results = run(args.scale, args.repeat)
    if args.ndjson:
        results |= run_ndjson(args.scale, args.repeat)
    summary = summarise(results)
    size = lineitem_csv(args.scale).stat().st_size
    print(f"lineitem.csv sf{args.scale:g}: {size / 1e6:.0f} MB, {os.cpu_count()} cores")
    for name, (seconds, rss) in results.items():
        print(f"  {name:<40} {seconds:7.2f} s   peak RSS {rss:7.0f} MB")
    for name, ratio in summary["ratios"].items():
        print(f"  colonnade / faster anchor, {name}: {ratio:.2f}x (target for csv <= 1.2x)")
    print(f"  colonnade peak RSS {summary['peak_rss_mb']} MB (target < 1500)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
