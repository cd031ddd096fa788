"""Holes the validator cannot close, pinned until the backend that owns them is fixed.
Each is strict xfail: when the fix lands the test passes, fails the run, and is turned into a
plain test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys, engine
db = engine.Database(sys.argv[1])
try:
    db.sql(sys.argv[2], engine="polars").arrow()
except Exception as exc:  # any clean refusal is fine; the point is that it returns
    print(type(exc).__name__)
"""


@pytest.mark.xfail(
    strict=True,
    reason="engine/backends/polars.py wraps each `/` operand in CAST(… AS DOUBLE): a chain of 49 divisions "
    "becomes 49 nested CASTs, on which Polars' SQL parser spins forever (uninterruptible, one core per request)",
)
def test_polars_division_chain_returns(tpch_dir: Path) -> None:
    sql = "SELECT " + " / ".join(["1"] * 60)
    try:
        subprocess.run([sys.executable, "-c", PROBE, str(tpch_dir), sql], timeout=10, check=True, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail("Polars did not return within 10 s")
