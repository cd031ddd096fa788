"""The Spark backend end to end: notebook, HTTP, CLI, timeouts, auto routing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine.config import load_settings
from engine.errors import InvalidRequest, QueryTimeout, StatementNotAllowed

Q = "SELECT o_orderpriority, count(*) AS n, sum(o_totalprice) AS total FROM orders GROUP BY ALL ORDER BY 1"
HEAVY = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_partkey + b.l_suppkey = a.l_orderkey"


def test_same_answer_as_duckdb(spark_db: engine.Database, db: engine.Database) -> None:
    result = spark_db.sql(Q, engine="spark")
    assert result.engine == "spark"
    assert result.arrow().equals(db.sql(Q).arrow().cast(result.schema))


def test_parameters_are_bound(spark_db: engine.Database) -> None:
    rows = spark_db.sql("SELECT n_name FROM nation WHERE n_nationkey < ? ORDER BY 1", [2], engine="spark").fetchall()
    assert rows == [("ALGERIA",), ("ARGENTINA",)]


def test_validation_runs_before_spark(spark_db: engine.Database) -> None:
    with pytest.raises(StatementNotAllowed):
        spark_db.sql("SELECT * FROM read_csv('/etc/passwd')", engine="spark")


def test_timeout_interrupts_the_spark_job(spark_db: engine.Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        spark_db.sql(HEAVY, engine="spark", timeout_s=2).arrow()
    assert time.monotonic() - started < 15
    started = time.monotonic()
    assert spark_db.sql("SELECT 1 AS one", engine="spark").fetchall() == [(1,)]
    assert time.monotonic() - started < 10, "the interrupted job should not hold the cluster"


def test_a_cancel_before_the_job_starts_still_stops_it(spark_db: engine.Database) -> None:
    """interruptTag reaches only operations already running: a cancel sent earlier (here, before
    the query is even sent) must not be lost, or the job runs to its end."""
    from engine.backends.base import QueryControl
    from engine.errors import QueryCancelled

    control = QueryControl()
    control.cancel()
    started = time.monotonic()
    with pytest.raises(QueryCancelled):
        spark_db.execute(HEAVY, engine="spark", control=control).arrow()
    assert time.monotonic() - started < 15
    assert spark_db.sql("SELECT 2 AS two", engine="spark").fetchall() == [(2,)]


def test_auto_routes_big_scans_to_spark(tpch_dir: Path, spark_remote: str) -> None:
    settings = load_settings(
        environ={"COLONNADE_SPARK_REMOTE": spark_remote, "COLONNADE_SPARK_AUTO_MIN_BYTES": "100000"}
    )
    with engine.Database(tpch_dir, settings=settings) as db:
        assert db.sql("SELECT count(*) FROM lineitem", engine="auto").engine == "spark"  # > 100 kB of files
        assert db.sql("SELECT count(*) FROM region", engine="auto").engine == "duckdb"  # a few kB


def test_unconfigured_spark_is_a_clear_error(db: engine.Database) -> None:
    with pytest.raises(InvalidRequest) as caught:
        db.sql("SELECT 1", engine="spark")
    assert "COLONNADE_SPARK_REMOTE" in caught.value.detail


def test_http_with_spark_as_the_default_engine(tpch_dir: Path, spark_remote: str, db: engine.Database) -> None:
    from tests.api.conftest import serve

    with serve(tpch_dir, env={"COLONNADE_SPARK_REMOTE": spark_remote, "COLONNADE_SERVER_ENGINE": "spark"}) as server:
        with server.client() as client:
            response = client.get("/api/sql", params={"q": Q, "format": "arrow"})
            assert response.status_code == 200, response.text
            got = pa.ipc.open_stream(response.content).read_all()
            assert got.equals(db.sql(Q).arrow().cast(got.schema))
            rows = client.get("/api/tables/region/rows", params={"order": "r_regionkey", "limit": "2"}).json()["rows"]
            assert [r["r_name"] for r in rows] == ["AFRICA", "AMERICA"]
        assert any(entry["engine"] == "spark" for entry in server.query_log(count=2))


def test_cli_query_on_spark(tpch_dir: Path, spark_remote: str) -> None:
    env = {**os.environ, "COLONNADE_SPARK_REMOTE": spark_remote}
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "colonnade"),
            "query",
            "--data",
            str(tpch_dir),
            "--engine",
            "spark",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM nation",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.splitlines() == ['"n"', "25"]
