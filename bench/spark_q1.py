"""Issue 8's figure: TPC-H Q1 at scale 1, cold and warm, on Spark local[2] (through Spark
Connect, via Colonnade) versus DuckDB (via Colonnade), one run.

    python -m bench.spark_q1 [--scale 1]
"""

from __future__ import annotations

import argparse
import json
import time

from bench.common import DATA_ROOT, free_port, tpch_data, tpch_query


def timed(db, sql: str, engine: str) -> float:
    started = time.perf_counter()
    db.sql(sql, engine=engine).arrow()
    return time.perf_counter() - started


def main() -> None:
    import engine
    from engine.backends.spark_local import local_connect_server
    from engine.config import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    data = tpch_data(args.scale)
    q1 = tpch_query(1)
    out: dict[str, float] = {}
    with engine.Database(data) as db:
        out["duckdb_cold_s"] = timed(db, q1, "duckdb")
        out["duckdb_warm_s"] = min(timed(db, q1, "duckdb") for _ in range(3))
    started = time.perf_counter()
    with local_connect_server(free_port(), log=DATA_ROOT / "spark-connect.log") as url:
        out["spark_server_start_s"] = time.perf_counter() - started
        settings = load_settings(environ={"COLONNADE_SPARK_REMOTE": url})
        with engine.Database(data, settings=settings) as db:
            out["spark_cold_s"] = timed(db, q1, "spark")  # session, view registration, JIT
            out["spark_warm_s"] = min(timed(db, q1, "spark") for _ in range(3))
    out["warm_ratio_spark_vs_duckdb"] = out["spark_warm_s"] / out["duckdb_warm_s"]
    print(json.dumps({k: round(v, 3) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
