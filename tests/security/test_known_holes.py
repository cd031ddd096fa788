"""Holes the validator cannot close, fixed in the backend that owns them; each test proves the
fix holds (in a subprocess, so a regression times out instead of hanging the suite)."""

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


def test_polars_division_chain_returns(tpch_dir: Path) -> None:
    # Wrapping every `/` operand in CAST(… AS DOUBLE) once nested 60 CASTs here, on which Polars'
    # SQL parser spins forever (uninterruptible, one core per request).
    sql = "SELECT " + " / ".join(["1"] * 60)
    try:
        subprocess.run([sys.executable, "-c", PROBE, str(tpch_dir), sql], timeout=10, check=True, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail("Polars did not return within 10 s")
