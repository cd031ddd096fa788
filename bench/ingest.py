"""Ingest benchmark: TPC-H lineitem CSV → a Delta table with ``colonnade ingest``, against DuckDB's
own ``COPY … TO parquet`` and Polars' ``scan_csv().sink_parquet()``, each in a fresh child process
(seconds and the child's peak RSS), the contenders run in interleaved rounds (bench/interleave.py:
the order alternates, the ratio to the faster anchor is taken per round). Also times the three
CSV readers (pyarrow, DuckDB, Polars) reading the file into Arrow batches, once each.

``--ndjson`` adds the same rows as NDJSON: ``colonnade ingest`` failing on bad lines (one pass)
and quarantining them (a second pass finds bad lines), against DuckDB and Polars writing Parquet.

    python -m bench.ingest [--scale 1] [--pairs 3] [--ndjson]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench import interleave
from bench.common import COLONNADE, DATA_ROOT
from bench.interleave import Phase

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


def _phase(cmd: Callable[[], list[str]]) -> Phase:
    """One run of a command (built afresh, so each run writes into a new directory)."""

    def phase(tag: str) -> dict:
        seconds, rss = measure(cmd())
        return {"value": round(seconds, 3), "rss_mb": round(rss)}

    return phase


def csv_contenders(csv: Path) -> dict[str, Phase]:
    """``colonnade ingest`` of the CSV into a new Delta table, and the two anchors to Parquet."""
    out = {
        "colonnade ingest": _phase(
            lambda: [COLONNADE, "ingest", str(csv), "--table", "lineitem", "--data", str(fresh(OUT / "delta"))]
        )
    }
    for name, code in WRITERS.items():
        out[name] = _phase(lambda code=code: [sys.executable, "-c", code, str(csv), str(fresh(OUT / "anchor"))])
    return out


def ndjson_contenders(ndjson: Path) -> dict[str, Phase]:
    """``colonnade ingest`` of the NDJSON failing on bad lines and quarantining them; the anchors."""
    out = {}
    for label, extra in (("fail", []), ("quarantine", ["--on-error", f"quarantine={OUT / 'rejects.csv'}"])):
        out[f"colonnade ingest ({label})"] = _phase(
            lambda extra=extra: [
                *(COLONNADE, "ingest", str(ndjson), "--table", "lineitem", "--data", str(fresh(OUT / "delta"))),
                *extra,
            ]
        )
    for name, code in NDJSON_WRITERS.items():
        out[name] = _phase(lambda code=code: [sys.executable, "-c", code, str(ndjson), str(fresh(OUT / "anchor"))])
    return out


def readers(csv: Path) -> dict[str, dict]:
    """Each library reading the CSV into Arrow batches, once (context, not a comparison)."""
    out = {}
    for name, code in READERS.items():
        seconds, rss = measure([sys.executable, "-c", code, str(csv)])
        out[name] = {"s": round(seconds, 2), "rss_mb": round(rss)}
    return out


ANCHORS = list(WRITERS)


def run(
    scale: float, pairs: int, slow_pairs: int, *, ndjson: bool = True, log: Callable[[str], None] | None = None
) -> dict:
    """Interleaved rounds of each contender set (bench/interleave.py); ratios per round of
    ``colonnade ingest`` to the faster anchor of that round."""
    csv = lineitem_csv(scale)
    out: dict = {"scale": scale, "csv_mb": round(csv.stat().st_size / 1e6), "comparisons": {}, "ratios": {}}
    cmp = interleave.interleave(csv_contenders(csv), pairs, log=log)
    out["comparisons"]["csv"] = cmp
    out["ratios"]["csv"] = interleave.ratio(cmp, "colonnade ingest", ANCHORS)
    out["peak_rss_mb"] = max(interleave.values(cmp, "colonnade ingest", "rss_mb"))
    if ndjson:
        path = lineitem_ndjson(scale)
        out["ndjson_mb"] = round(path.stat().st_size / 1e6)
        cmp = interleave.interleave(ndjson_contenders(path), slow_pairs, log=log)
        out["comparisons"]["ndjson"] = cmp
        for label in ("fail", "quarantine"):
            out["ratios"][f"ndjson_{label}"] = interleave.ratio(cmp, f"colonnade ingest ({label})", ANCHORS)
    out["readers"] = readers(csv)
    shutil.rmtree(OUT / "anchor", ignore_errors=True)
    shutil.rmtree(OUT / "delta", ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved rounds of the contenders")
    parser.add_argument("--ndjson", action="store_true", help="also ingest the rows as NDJSON")
    args = parser.parse_args()
    out = run(args.scale, args.pairs, args.pairs, ndjson=args.ndjson)
    print(f"lineitem.csv sf{args.scale:g}: {out['csv_mb']} MB, {os.cpu_count()} cores")
    for cmp in out["comparisons"].values():
        for name in cmp["contenders"]:
            s = interleave.spread(interleave.values(cmp, name))
            print(f"  {name:<40} {s['median']:7.2f} s ({s['min']:.2f}-{s['max']:.2f})")
    for name, r in out["ratios"].items():
        print(f"  colonnade / faster anchor, {name}: {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})")
    print(f"  colonnade peak RSS {out['peak_rss_mb']} MB (target < 1500)")
    print(json.dumps(out["ratios"]))


if __name__ == "__main__":
    main()
