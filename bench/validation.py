"""Worst-case validation time: the SQL shapes that cost sqlglot the most, at the size cap.

Validation (parse, checks, the relation rewrite, DuckDB's second opinion) runs inside a query
slot and counts against the query's timeout, but it cannot be interrupted: ``max_sql_bytes``
is set so that the worst accepted text validates in well under a second.

    python -m bench.validation [--kib 64]
"""

from __future__ import annotations

import argparse
import json
import time

from engine.config import LimitsSettings
from engine.errors import ColonnadeError
from engine.sql import validate


def shapes(size: int) -> dict[str, str]:
    """Texts of about ``size`` bytes, each the worst of its kind we found."""
    return {
        "in-list": "SELECT * FROM t WHERE a IN (" + ", ".join(str(i) for i in range(size // 7)) + ")",
        "case": "SELECT CASE " + " ".join(f"WHEN a = {i} THEN {i}" for i in range(size // 24)) + " END FROM t",
        "columns": "SELECT " + ", ".join(f"a + {i} AS c{i}" for i in range(size // 16)) + " FROM t",
        "strings": "SELECT * FROM t WHERE s IN (" + ", ".join(f"'v{i}'" for i in range(size // 9)) + ")",
        "unions": " UNION ALL ".join(f"SELECT a, {i} FROM t" for i in range(size // 26)),
    }


def measure(size: int, repeat: int = 3) -> dict[str, float]:
    """Best-of-``repeat`` seconds per shape (a text over the cap is cut to fit it)."""
    out = {}
    for name, text in shapes(size).items():
        text = text[: size - 1] if len(text) >= size else text
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            try:
                query = validate(text, lambda n: n, max_bytes=size)
                query.render({t: f"rel_{t}" for t in query.tables})
            except ColonnadeError:
                pass  # refused is fine too: the time to decide is what counts
            best = min(best, time.perf_counter() - started)
        out[name] = round(best, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kib", type=int, default=LimitsSettings().max_sql_bytes // 1024)
    args = parser.parse_args()
    validate("SELECT 1", lambda n: n)  # imports and the DuckDB parser, once
    result = measure(args.kib * 1024)
    print(json.dumps({"max_sql_bytes": args.kib * 1024, "seconds": result, "worst": max(result.values())}))


if __name__ == "__main__":
    main()
