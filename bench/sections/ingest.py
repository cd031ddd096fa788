"""Ingestion: ``colonnade ingest`` of TPC-H lineitem as CSV and NDJSON into a new Delta table,
against DuckDB's ``COPY … TO parquet`` and Polars' ``sink_parquet``, each a fresh process, in
interleaved rounds (bench/ingest.py)."""

from __future__ import annotations

from bench import ingest as ingest_bench
from bench import interleave, markdown
from bench.sections import Context, Target, log

NAME = "ingest"
ORDER = 70
TITLE = "Ingestion"


def add_arguments(p) -> None:
    p.add_argument("--ingest-inputs", nargs="+", default=["csv", "ndjson"], choices=["csv", "ndjson"])


def run(ctx: Context) -> dict:
    return ingest_bench.run(
        ctx.args.scale, ctx.pairs, ctx.slow_pairs, ndjson="ndjson" in ctx.args.ingest_inputs, log=log
    )


def targets(r: dict, meta: dict) -> list[Target]:
    if "ratios" not in r:
        return []
    csv = r["comparisons"]["csv"]
    out = [
        Target(
            f"ingest lineitem CSV SF{r['scale']:g} → Delta: time ÷ faster of DuckDB COPY, Polars sink_parquet",
            NAME,
            r["ratios"]["csv"],
            "×",
            "≤ 1.20×",
            lambda v: v <= 1.2,
            interleave.machine(csv),
        ),
        Target(
            "ingest lineitem CSV, peak RSS (the largest of the rounds)",
            NAME,
            interleave.spread([max(interleave.values(csv, "colonnade ingest", "rss_mb"))], 0),
            " MB",
            "< 1500 MB",
            lambda v: v < 1500,
        ),
    ]
    for label in ("fail", "quarantine"):
        if f"ndjson_{label}" in r["ratios"]:
            out.append(
                Target(
                    f"ingest lineitem NDJSON ({label} mode): time ÷ faster of DuckDB COPY, Polars sink_parquet",
                    NAME,
                    r["ratios"][f"ndjson_{label}"],
                    "×",
                    "(report)",
                    None,
                    interleave.machine(r["comparisons"]["ndjson"]),
                )
            )
    return out


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    sizes = f"CSV ({r['csv_mb']} MB)" + (f" and NDJSON ({r['ndjson_mb']} MB)" if "ndjson_mb" in r else "")
    L = [
        f"TPC-H SF{r['scale']:g} `lineitem` as {sizes} into a new Delta table with `colonnade ingest`, against "
        "DuckDB's `COPY (FROM read_…) TO 'x.parquet'` and Polars' `scan_…().sink_parquet()`. A phase is one run "
        "of one contender in a fresh process (wall time and that process's peak RSS); the contenders run in "
        "rounds, the order reversed every other round, and the ratio to the faster anchor is taken per round. "
        "NDJSON in quarantine mode reads the input twice (once for the rows, once line by line for bad ones).",
        "",
        "| input | contender | seconds, median (min–max) | peak RSS MB (max) |",
        "|---|---|---|---|",
    ]
    for kind, cmp in r["comparisons"].items():
        for name in cmp["contenders"]:
            s = interleave.spread(interleave.values(cmp, name))
            L.append(f"| {kind} | {name} | {markdown.fig(s, '')} | {max(interleave.values(cmp, name, 'rss_mb'))} |")
    for kind, cmp in r["comparisons"].items():
        L.append(f"\n{kind}: load {markdown.machine(interleave.machine(cmp))}")
    L += ["", "Reading the CSV into Arrow batches, once each (context):", ""]
    L += [f"- {name}: {v['s']:.2f} s, {v['rss_mb']} MB" for name, v in r.get("readers", {}).items()]
    L.append("")
    for kind, cmp in r["comparisons"].items():
        L += markdown.details(f"rounds: {kind} (seconds)", markdown.rounds_table(cmp, lambda p: f"{p['value']:.2f}"))
    return L
