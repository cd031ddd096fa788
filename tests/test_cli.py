"""The real ``colonnade`` console script, run as a subprocess: demo, tables, schema, query in every
output format, and its exit codes (0 ok, 1 user error with one ``error:`` line, 2 usage)."""

from __future__ import annotations

import decimal
import io
import json
import os
import shutil
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


# -- read commands as data: --json, closed pipes ---------------------------------------------


def json_lines(done: subprocess.CompletedProcess[bytes]) -> list[dict]:
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def test_every_read_command_takes_json(data: Path, workdir: Path) -> None:
    tables = json_lines(run("tables", "--json", "--data", str(data), cwd=workdir))
    assert [t["name"] for t in tables] == sorted(TPCH_TABLES)
    assert all(t["kind"] == "managed" and t["version"] == 0 and t["row_count"] > 0 for t in tables)
    columns = json_lines(run("schema", "nation", "--json", "--data", str(data), cwd=workdir))
    with engine.Database(data) as db:
        schema = db.schema("nation")
    assert [(c["name"], c["type"]) for c in columns] == [(f.name, str(f.type)) for f in schema]
    versions = json_lines(run("history", "nation", "--json", "--data", str(data), cwd=workdir))
    assert [v["version"] for v in versions] == [0]
    assert json_lines(run("token", "list", "--json", "--data", str(data), cwd=workdir)) == []


@pytest.mark.parametrize(
    "args",
    [
        ("history", "nation"),
        ("tables",),
        ("schema", "lineitem", "--json"),
        ("query", "SELECT * FROM lineitem", "--format", "csv"),
    ],
    ids=lambda a: " ".join(a),
)
def test_a_closed_pipe_ends_quietly(data: Path, workdir: Path, args: tuple[str, ...]) -> None:
    """``colonnade history t | head -1``: the reader went away; no message, status 141 as for
    SIGPIPE (the reader closes before the first write here, so every command meets it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    proc = subprocess.Popen(
        [COLONNADE, *args, "--data", str(data)], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert b"Broken pipe" not in proc.stderr.read() and b"Traceback" not in proc.stderr.read()


def test_head_of_a_pipeline(data: Path, workdir: Path) -> None:
    shell = f"{COLONNADE} query 'SELECT * FROM lineitem' --format csv --data {data} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=workdir, capture_output=True, timeout=120)
    assert done.stdout.decode().startswith('"l_orderkey",') and done.stderr == b""
    assert done.returncode == 141


# -- one rule for the data directory ----------------------------------------------------------


@pytest.fixture
def four_dirs(tmp_path: Path) -> Path:
    """A data dir per way of naming one, each holding a table named after it, and a working
    directory whose ./data is the last."""
    for name in ("flag", "env", "conf", "default"):
        where = tmp_path / "work" / "data" if name == "default" else tmp_path / name
        with engine.Database(where, create=True) as db:
            db.ingest(pa.table({"x": [1]}), table=f"from_{name}")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "colonnade.toml").write_text('[data]\ndir = "../conf"\n')  # relative to the file
    return tmp_path


@pytest.mark.parametrize(
    ("flag", "env", "conf", "winner", "origin"),
    [
        (True, True, True, "flag", "--data"),
        (False, True, True, "env", "COLONNADE_DATA_DIR"),
        (False, False, True, "conf", "[data] dir in"),
        (False, False, False, "default", "the default"),
    ],
)
def test_data_dir_flag_then_env_then_config_then_default(
    four_dirs: Path, flag: bool, env: bool, conf: bool, winner: str, origin: str
) -> None:
    args = ["tables", "--json"]
    args += ["--data", str(four_dirs / "flag")] if flag else []
    args += ["--config", str(four_dirs / "etc" / "colonnade.toml")] if conf else []
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    environ |= {"COLONNADE_DATA_DIR": str(four_dirs / "env")} if env else {}
    done = subprocess.run([COLONNADE, *args], cwd=four_dirs / "work", env=environ, capture_output=True, timeout=120)
    assert [t["name"] for t in json_lines(done)] == [f"from_{winner}"]
    # the notebook, by the same rule: engine.connect(dir) is the flag; the environment and the config follow
    script = "import engine, sys; print(engine.connect(sys.argv[1] or None, config=sys.argv[2] or None).tables())"
    config = str(four_dirs / "etc" / "colonnade.toml") if conf else ""
    cmd = [sys.executable, "-c", script, str(four_dirs / "flag") if flag else "", config]
    out = subprocess.run(cmd, cwd=four_dirs / "work", env=environ, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"['from_{winner}']", out.stderr
    shutil.rmtree(four_dirs / winner if winner != "default" else four_dirs / "work" / "data")
    gone = subprocess.run([COLONNADE, *args], cwd=four_dirs / "work", env=environ, capture_output=True, timeout=120)
    stderr = gone.stderr.decode()
    assert gone.returncode == 1 and stderr.count("\n") == 1 and "does not exist" in stderr and origin in stderr


def test_an_ingest_that_creates_a_data_dir_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    done = run("ingest", "x.csv", "--table", "t", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert f"created data directory {tmp_path / 'data'} (set by the default, ./data)" in done.stderr.decode()
    assert done.stdout.decode().rstrip().endswith(f"in {tmp_path / 'data'}")
    again = run("ingest", "x.csv", "--table", "t", cwd=tmp_path)
    assert again.returncode == 0 and b"created" not in again.stderr
    missing = run("ingest", "nope.csv", "--table", "t", "--data", "fresh", cwd=tmp_path)
    assert missing.returncode == 1 and not (tmp_path / "fresh").exists()  # a failed ingest leaves nothing


def test_the_server_follows_the_same_rule(four_dirs: Path) -> None:
    """``serve --data`` beats the environment, in every worker."""
    import httpx

    from tests.api.conftest import serve

    with serve(four_dirs / "flag", workers=2, env={"COLONNADE_DATA_DIR": str(four_dirs / "env")}) as srv:
        names = {tuple(t["name"] for t in httpx.get(f"{srv.url}/api/tables", timeout=60).json()) for _ in range(6)}
        log = srv.log.read_text()
    assert names == {("from_flag",)}
    assert f"serving {four_dirs / 'flag'} (set by --data)" in log


def test_readme_documents_every_command_and_option() -> None:
    """Docs are a tested contract: each command and each of its options appears in README.md."""
    import click

    from engine.cli import main

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix}{name} ")
                continue
            if f"colonnade {prefix}{name}" not in readme:
                missing.append(f"{prefix}{name}")
            missing.extend(
                f"{prefix}{name} {o}" for p in cmd.params for o in p.opts if o.startswith("--") and o not in readme
            )

    walk(main, "")
    assert not missing
