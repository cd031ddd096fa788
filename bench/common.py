"""Shared benchmark plumbing: TPC-H data at a scale, the queries, ports, percentiles."""

from __future__ import annotations

import socket
import statistics
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_ROOT = BENCH_DIR / "data"
QUERIES = BENCH_DIR.parent / "tests" / "fixtures" / "tpch"
COLONNADE = str(Path(sys.executable).parent / "colonnade")


def tpch_data(scale: float) -> Path:
    """Managed TPC-H tables at ``scale`` under bench/data (generated once, then reused)."""
    from engine.demo import TPCH_TABLES, create_demo

    path = DATA_ROOT / f"sf{scale:g}"
    if not all((path / t / "_delta_log").is_dir() for t in TPCH_TABLES):
        create_demo(path, scale)
    return path


def tpch_query(n: int) -> str:
    return (QUERIES / f"q{n:02d}.sql").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
