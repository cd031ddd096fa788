"""Governance (issue 13): what stopping queries costs and what it bounds. Isolated Polars (worker
processes under a memory cap) ÷ in-process Polars on the TPC-H 22 (per query, the two sides
alternated), the pipe's throughput, kill latency and RSS around a killed query, server RSS
growth for a 1 GB wide-row export in every format (bench/governance.py); and the worst-case
validation time at the default ``max_sql_bytes`` (bench/validation.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from bench import interleave
from bench.sections import Context, Target

NAME = "governance"
ORDER = 70
TITLE = "Governance: isolated Polars, kills, wide rows, validation"


def add_arguments(p) -> None:
    p.add_argument("--wide-mb", type=int, default=1000, help="size of the wide-row exports (MB)")
    p.add_argument("--kill-trials", type=int, default=5, help="killed queries to time")


def _module(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run(ctx: Context) -> dict:
    load_before = interleave.Machine.read()
    out = _module(
        "bench.governance",
        "--data",
        str(ctx.data),
        "--runs",
        str(ctx.pairs),
        "--wide-mb",
        str(ctx.args.wide_mb),
        "--kill-trials",
        str(ctx.args.kill_trials),
    )
    out["validation"] = _module("bench.validation")
    out["machine"] = load_before.since(load_before) | {"load_before": load_before.load1}
    return out


def targets(r: dict, meta: dict) -> list[Target]:
    tpch = r["tpch"]
    per_query = [q["isolated"] / q["inprocess"] for q in tpch["per_query_s"].values() if q["inprocess"]]
    ratio = {"median": tpch["ratio_isolated_vs_inprocess"], **_range(per_query)}
    growth = r["wide_exports"]["max_rss_growth_mb"]
    worst = r["validation"]["worst"]
    return [
        Target("TPC-H 22 on Polars, isolated ÷ in-process (total)", NAME, ratio, "×", "≤ 1.10×", lambda v: v <= 1.10),
        Target(
            "1 GB wide-row export, server RSS growth (worst format)",
            NAME,
            _one(growth),
            " MB",
            "≤ 300 MB",
            lambda v: v <= 300,
        ),
        Target(
            f"worst-case validation at max_sql_bytes = {r['validation']['max_sql_bytes'] // 1024} KiB",
            NAME,
            _one(worst),
            " s",
            "< 1 s",
            lambda v: v < 1.0,
        ),
    ]


def _one(value: float) -> dict:
    return {"median": round(value, 3), "min": round(value, 3), "max": round(value, 3), "values": [value]}


def _range(xs: list[float]) -> dict:
    return {"min": round(min(xs), 3), "max": round(max(xs), 3), "values": [round(x, 3) for x in xs]} if xs else {}


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    tpch, transfer, kill = r["tpch"], r["transfer"], r["kill"]
    lines = [
        f"TPC-H 22 on Polars, each query's two sides alternated {tpch['runs']}×: in-process "
        f"{tpch['totals_s']['inprocess']} s, isolated {tpch['totals_s']['isolated']} s, "
        f"**{tpch['ratio_isolated_vs_inprocess']}×**.",
        "",
        f"Pipe: `SELECT * FROM lineitem` in-process {transfer['inprocess']['mb_per_s']} MB/s, isolated "
        f"{transfer['isolated']['mb_per_s']} MB/s ({transfer['ratio_isolated_vs_inprocess']}× the time).",
        "",
        f"Kill: {json.dumps(kill)}",
        "",
        "| wide-row export | format | status | MB | seconds | server RSS growth, MB |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {fmt} | {v['status']} | {v['mb']} | {v['seconds']} | {v['rss_growth_mb']} |"
            for label, row in r["wide_exports"].items()
            if isinstance(row, dict)
            for fmt, v in row.items()
        ),
        "",
        f"Validation, worst shape at the default size cap: {json.dumps(r['validation'])}",
        "",
    ]
    return lines
