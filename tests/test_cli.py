"""The real ``colonnade`` console script, run as a subprocess: demo, tables, schema, query in every
output format, and its exit codes (0 ok, 1 user error with one ``error:`` line, 2 usage)."""

from __future__ import annotations

import decimal
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine
from engine.demo import TPCH_TABLES

COLONNADE = str(Path(sys.executable).parent / "colonnade")
SQL = "SELECT o_orderkey, o_orderdate, o_totalprice, o_comment FROM orders WHERE o_custkey < 50 ORDER BY o_orderkey"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    return subprocess.run([COLONNADE, *args], cwd=cwd, env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty working directory: no colonnade.toml, no ./data."""
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def demo(workdir: Path) -> tuple[Path, subprocess.CompletedProcess[bytes]]:
    data = workdir / "demo-data"
    return data, run("demo", "--data", str(data), "--scale", "0.01", cwd=workdir)


@pytest.fixture(scope="module")
def data(demo: tuple[Path, subprocess.CompletedProcess[bytes]]) -> Path:
    assert demo[1].returncode == 0, demo[1].stderr.decode()
    return demo[0]


@pytest.fixture(scope="module")
def expected(data: Path) -> pa.Table:
    """The same query through the Python API: the independent side of every format check."""
    with engine.Database(data) as db:
        return db.sql(SQL).arrow()


def table_files(data: Path) -> list[str]:
    """Everything under the data dir except Colonnade's own state dir (.colonnade/: spill, tokens)."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if ".colonnade" not in p.relative_to(data).parts)


def query(data: Path, workdir: Path, *args: str) -> bytes:
    done = run("query", SQL, "--data", str(data), *args, cwd=workdir)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    return done.stdout


def test_demo_creates_the_tpch_tables(demo: tuple[Path, subprocess.CompletedProcess[bytes]]) -> None:
    data, done = demo
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""  # progress and summary go to stderr; quiet when not a terminal
    assert "8 tables" in done.stderr.decode()
    assert sorted(p.name for p in data.iterdir() if (p / "_delta_log").is_dir()) == sorted(TPCH_TABLES)


def test_tables(data: Path, workdir: Path) -> None:
    done = run("tables", "--data", str(data), cwd=workdir)
    assert done.returncode == 0
    lines = [line.split("\t") for line in done.stdout.decode().splitlines()]
    assert [cells[0] for cells in lines] == sorted(TPCH_TABLES)
    with engine.Database(data) as db:
        for name, kind, version, rows in lines:
            assert (kind, version) == ("managed", "v0")
            assert rows == f"{db.sql(f'SELECT count(*) FROM {name}').fetchall()[0][0]:,} rows"


def test_schema(data: Path, workdir: Path) -> None:
    done = run("schema", "lineitem", "--data", str(data), cwd=workdir)
    assert done.returncode == 0
    names = [line.split("\t")[0] for line in done.stdout.decode().splitlines()]
    with engine.Database(data) as db:
        assert names == db.schema("lineitem").names
    assert "l_shipdate\tdate32[day]" in done.stdout.decode()


def test_query_table_format(data: Path, workdir: Path, expected: pa.Table) -> None:
    text = query(data, workdir).decode()
    assert f"shape: ({expected.num_rows}, 4)" in text
    assert "o_orderkey" in text and str(expected.column("o_orderkey")[0]) in text


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
def test_query_csv(data: Path, workdir: Path, expected: pa.Table, engine_name: str) -> None:
    frame = pl.read_csv(
        io.BytesIO(query(data, workdir, "--format", "csv", "--engine", engine_name)), try_parse_dates=True
    )
    assert frame.columns == expected.column_names
    assert frame["o_orderkey"].to_list() == expected.column("o_orderkey").to_pylist()
    assert frame["o_orderdate"].to_list() == expected.column("o_orderdate").to_pylist()
    assert frame["o_comment"].to_list() == expected.column("o_comment").to_pylist()


def test_query_json_keeps_exact_digits(data: Path, workdir: Path, expected: pa.Table) -> None:
    body = json.loads(query(data, workdir, "--format", "json"), parse_float=decimal.Decimal)
    assert [c["name"] for c in body["columns"]] == expected.column_names
    assert body["row_count"] == expected.num_rows == len(body["rows"]) and body["truncated"] is False
    assert [r["o_totalprice"] for r in body["rows"]] == expected.column("o_totalprice").to_pylist()
    assert [r["o_orderdate"] for r in body["rows"]] == [
        d.isoformat() for d in expected.column("o_orderdate").to_pylist()
    ]


def test_query_ndjson(data: Path, workdir: Path, expected: pa.Table) -> None:
    lines = query(data, workdir, "--format", "ndjson").decode().splitlines()
    rows = [json.loads(line, parse_float=decimal.Decimal) for line in lines]
    assert [r["o_orderkey"] for r in rows] == expected.column("o_orderkey").to_pylist()
    assert [r["o_totalprice"] for r in rows] == expected.column("o_totalprice").to_pylist()


@pytest.mark.parametrize("to_file", [False, True])
def test_query_parquet(data: Path, workdir: Path, expected: pa.Table, to_file: bool, tmp_path: Path) -> None:
    if to_file:
        assert query(data, workdir, "--format", "parquet", "--output", str(tmp_path / "out.parquet")) == b""
        table = pq.read_table(tmp_path / "out.parquet")
    else:
        table = pq.read_table(io.BytesIO(query(data, workdir, "--format", "parquet")))
    assert table.cast(expected.schema).equals(expected)


def test_query_arrow(data: Path, workdir: Path, expected: pa.Table) -> None:
    table = pa.ipc.open_stream(query(data, workdir, "--format", "arrow")).read_all()
    assert table.cast(expected.schema).equals(expected)


# -- exit codes ---------------------------------------------------------------------------

USER_ERRORS = [
    (("query", "SELEC 1"), "syntax error"),
    (("query", "SELECT * FROM no_such_table"), "no_such_table"),
    (("query", "SELECT nope FROM nation"), "nope"),
    (("query", "SELECT * FROM read_csv('/etc/passwd')"), "read_csv"),
    (("query", "DROP TABLE nation"), "DROP"),
    (("query", "SELECT 1", "--engine", "polars", "--data", "/nonexistent-colonnade"), "does not exist"),
    (("schema", "no_such_table"), "no_such_table"),
    (("ingest", "/nonexistent-colonnade/x.parquet", "--table", "t"), "no such file"),
    (("ingest", "README.md", "--table", "t"), "format"),
    (("ingest", "small.parquet", "--table", "not-a-name"), "not a valid table name"),
]


@pytest.mark.parametrize(("args", "says"), USER_ERRORS, ids=lambda a: " ".join(a)[:50] if isinstance(a, tuple) else "")
def test_user_error_is_one_line(data: Path, workdir: Path, args: tuple[str, ...], says: str) -> None:
    if "--data" not in args:
        args = (*args, "--data", str(data))
    (workdir / "README.md").write_text("not data\n")
    pq.write_table(pa.table({"x": [1]}), workdir / "small.parquet")
    before = table_files(data)
    done = run(*args, cwd=workdir)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert says in stderr
    assert "Traceback" not in stderr and done.stdout == b""
    assert table_files(data) == before


def test_bad_config_is_a_user_error(data: Path, workdir: Path, tmp_path: Path) -> None:
    (tmp_path / "colonnade.toml").write_text("[limits]\nquery_timeot_s = 3\n")
    done = run("tables", "--data", str(data), "--config", str(tmp_path / "colonnade.toml"), cwd=workdir)
    assert done.returncode == 1 and done.stderr.decode().startswith("error: ")
    assert "query_timeot_s" in done.stderr.decode() and done.stderr.count(b"\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("no-such-command",),
        ("query",),
        ("query", "SELECT 1", "--format", "xml"),
        ("query", "SELECT 1", "--engine", "spark-on-toaster"),
        ("demo", "--scale", "lots"),
        ("ingest", "x.parquet"),
        ("tables", "--no-such-flag"),
    ],
    ids=lambda a: " ".join(a) or "no-args",
)
def test_usage_error_exits_2(workdir: Path, args: tuple[str, ...]) -> None:
    done = run(*args, cwd=workdir)
    assert done.returncode == 2, done.stderr.decode()
    assert "Usage:" in done.stderr.decode() + done.stdout.decode()
    assert "Traceback" not in done.stderr.decode()
