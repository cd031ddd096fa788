"""Object storage (issue 16): TPC-H on an S3-compatible server (moto on 127.0.0.1) through
Colonnade's read cache, against in-process DuckDB and Polars reading the same objects, and
against local disk; ingest to S3 against ingest to a local directory (bench/objectstore.py).
Each side's passes alternate with the others' inside bench/objectstore.py."""

from __future__ import annotations

from bench import objectstore
from bench.sections import Context, Target

NAME = "objectstore"
ORDER = 80
TITLE = "Object storage (S3-compatible)"


def run(ctx: Context) -> dict:
    return objectstore.run(ctx.data, ctx.args.scale, ctx.pairs)


def _one(value: float) -> dict:
    return {"median": value, "min": value, "max": value, "values": [value]}


def targets(r: dict, meta: dict) -> list[Target]:
    ratios = r.get("ratios", {})
    if not ratios:
        return []
    return [
        Target(
            "TPC-H on S3, warm: Colonnade ÷ the faster in-process reader",
            NAME,
            _one(ratios["warm_vs_faster_inprocess"]),
            "×",
            "≤ 1.10×",
            lambda v: v <= 1.10,
        ),
        Target("TPC-H on S3, warm: ÷ local disk", NAME, _one(ratios["warm_vs_local_disk"]), "×", "(report)", None),
        Target(
            "ingest lineitem CSV: to S3 ÷ to local disk",
            NAME,
            _one(ratios["ingest_s3_vs_local"]),
            "×",
            "(report)",
            None,
        ),
    ]


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    rows = [
        ("Colonnade over S3 (read cache)", r.get("colonnade_cold_s"), r.get("colonnade_warm_s")),
        ("Colonnade over local disk", r.get("local_cold_s"), r.get("local_warm_s")),
        ("in-process DuckDB over pyarrow S3", r.get("duckdb_cold_s"), r.get("duckdb_warm_s")),
        ("in-process Polars scan_delta", r.get("polars_cold_s"), r.get("polars_warm_s")),
    ]
    lines = ["| reader | cold, s | warm, s |", "|---|---|---|"]
    lines += [f"| {name} | {cold} | {warm} |" for name, cold, warm in rows if cold is not None]
    lines += ["", f"Ratios: {r.get('ratios')}", ""]
    return lines
