"""Ingestion through the real ``colonnade ingest`` CLI and ``db.ingest``: formats, partitions,
schema policy, bad rows and quarantine, and every bad input leaving the table untouched."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest

import engine
from engine.errors import BadRow, SchemaMismatch
from engine.ingest import estimate_rows, open_source

COLONNADE = str(Path(sys.executable).parent / "colonnade")


def cli(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    return subprocess.run([COLONNADE, *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=120)


def table_state(table_dir: Path) -> tuple[list[str], list[str]]:
    """(commit files, every other file) of a table: what "unchanged" means on disk."""
    files = sorted(str(p.relative_to(table_dir)) for p in table_dir.rglob("*") if p.is_file())
    return [f for f in files if f.startswith("_delta_log")], [f for f in files if not f.startswith("_delta_log")]


def checksum(sql_from: str) -> tuple[int, int]:
    """(rows, order-independent hash of every row), computed by DuckDB, not per row in Python."""
    con = duckdb.connect()
    return con.execute(f"SELECT count(*), sum(hash(row_data)) FROM {sql_from} AS row_data").fetchone()  # type: ignore[return-value]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Inputs plus a data dir holding table ``t`` (partitioned by year) at version 0."""
    (tmp_path / "in").mkdir()
    base = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "year": [2023, 2024, 2024, 2025],
            "city": ["a", "b", None, "d"],
            "amount": [1.5, None, 3.25, 4.0],
        }
    )
    pacsv.write_csv(base, tmp_path / "in" / "base.csv")
    # In this process: the CLI's own ingest is what the tests run, not their set-up (a process
    # of its own per test cost ~1 s of CPU each).
    (tmp_path / "data").mkdir()
    with engine.connect(tmp_path / "data") as db:
        db.ingest(str(tmp_path / "in" / "base.csv"), table="t", partition_by=["year"])
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing file": (["in/nope.csv"], "no such file"),
    "empty file": (["in/empty.csv"], "file is empty"),
    "ragged row": (["in/ragged.csv"], "line 3"),
    "type clash": (["in/clash.csv"], "column 'id'"),
    "wrong partitions": (["in/base.csv", "--partition-by", "city"], "partitioned by year"),
    "unknown format": (["in/data.xlsx"], "format"),
    "bad table name": (["in/base.csv", "--table", "bad-name"], "not a valid table name"),
    "external table": (["in/base.csv", "--table", "ext"], "external"),
    "strict schema": (["in/extra.csv"], "'extra' (BIGINT) is not in the table"),
    "not parquet": (["in/fake.parquet"], "not a Parquet file"),
    "ndjson type clash": (["in/bad.ndjson"], "bad.ndjson: line 2: column 'id': cannot convert \"seven\" to BIGINT"),
    "ndjson malformed line": (["in/broken.ndjson"], "broken.ndjson: line 2: not valid JSON"),
    "ndjson not objects": (["in/array.ndjson"], "array.ndjson: line 2: not a JSON object"),
}
NDJSON_BAD = (
    '{"id": 5, "year": 2024, "city": "x", "amount": 1.0}\n'
    '{"id": "seven", "year": 2025, "city": "y", "amount": 2.0}\n'
    "\n"
    '{"id": 8, "year": 2025\n'
    "[9]\n"
    '{"id": 10, "year": 2025, "city": "z", "amount": null}\n'
)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_cleanly(work: Path, case: str) -> None:
    (work / "in" / "empty.csv").write_bytes(b"")
    write(work / "in" / "ragged.csv", "id,year,city,amount\n5,2024,x,1.0\n6,2024\n7,2025,y,2.0\n")
    write(work / "in" / "clash.csv", "id,year,city,amount\n5,2024,x,1.0\nseven,2025,y,2.0\n")
    write(work / "in" / "data.xlsx", "whatever")
    write(work / "in" / "extra.csv", "id,year,city,amount,extra\n5,2024,x,1.0,9\n")
    write(work / "in" / "fake.parquet", "id\n1\n")
    write(work / "in" / "bad.ndjson", NDJSON_BAD)
    good = '{"id": 5, "year": 2024, "city": "x", "amount": 1.0}\n'
    write(work / "in" / "broken.ndjson", good + '{"id": 6, "year":\n')
    write(work / "in" / "array.ndjson", good + "[6, 2024]\n")
    write(work / "colonnade.toml", f'[[tables]]\nname = "ext"\nuri = "{work / "in" / "base.csv"}"\n')
    args, says = BAD_INPUTS[case]
    if "--table" not in args:
        args = [*args, "--table", "t"]
    before = table_state(work / "data" / "t")
    done = cli("ingest", *args, "--data", "data", cwd=work)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert says in stderr, stderr
    assert table_state(work / "data" / "t") == before  # same version, no stray files
    assert not (work / "data" / "ext").exists() and not (work / "data" / "bad-name").exists()


def test_bad_row_names_file_line_and_column(work: Path) -> None:
    done = cli("ingest", "in/clash.csv", "--table", "t", "--data", "data", cwd=write_clash(work))
    line = done.stderr.decode()
    assert "clash.csv: line 3: column 'id'" in line and "seven" in line and "nothing was written" in line


def write_clash(work: Path) -> Path:
    write(work / "in" / "clash.csv", "id,year,city,amount\n5,2024,x,1.0\nseven,2025,y,2.0\n8,2025,z,\n")
    return work


def test_quarantine_commits_good_rows_and_keeps_bad_ones(work: Path) -> None:
    write_clash(work)
    write(work / "in" / "ragged.csv", "id,year,city,amount\n9,2024\n10,2024,k,1.0\n")
    done = cli(
        "ingest",
        "in/clash.csv",
        "in/ragged.csv",
        "--table",
        "t",
        "--data",
        "data",
        "--json",
        "--on-error",
        "quarantine=bad/rows.csv",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["rejected"], summary["version"], summary["files"]) == (3, 2, 1, 2)
    bad = pacsv.read_csv(work / "bad" / "rows.csv").to_pylist()
    assert [(Path(r["file"]).name, r["line"], r["column"]) for r in bad] == [
        ("clash.csv", 3, "id"),
        ("ragged.csv", 2, "city"),
    ]
    assert "seven" in bad[0]["reason"] and bad[0]["row"].startswith("seven")
    with engine.Database(work / "data") as db:
        ids = [r[0] for r in db.sql("SELECT id FROM t ORDER BY id").fetchall()]
    assert ids == [1, 2, 3, 4, 5, 8, 10]


@pytest.mark.parametrize(
    "args",
    [["--table", "fresh", "--partition-by", "city"], ["--table", "t", "--mode", "overwrite", "--partition-by", "city"]],
)
def test_text_null_in_a_partition_column_is_refused(work: Path, args: list[str]) -> None:
    """A partition directory city=NULL reads back as null: refusing beats silently turning the
    text 'NULL' into a null (both the COPY path and delta-rs's writer, used to re-partition)."""
    write(work / "in" / "nulls.csv", "id,year,city,amount\n5,2024,a,1.0\n6,2024,NULL,2.0\n")
    before = table_state(work / "data" / "t")
    done = cli("ingest", "in/nulls.csv", *args, "--data", "data", cwd=work)
    stderr = done.stderr.decode()
    assert done.returncode == 1 and stderr.count("\n") == 1, stderr
    assert "partition column 'city' holds the text 'NULL'" in stderr and "nothing was written" in stderr
    assert table_state(work / "data" / "t") == before and not (work / "data" / "fresh").exists()


def test_unwritable_quarantine_commits_nothing(work: Path) -> None:
    """The quarantine file is written before the commit: if it cannot be, the good rows are not
    committed either (committing them would lose the bad ones)."""
    write_clash(work)
    (work / "bad").write_text("a file where the quarantine's directory should be")
    before = table_state(work / "data" / "t")
    done = cli(
        "ingest", "in/clash.csv", "--table", "t", "--data", "data", "--on-error", "quarantine=bad/rows.csv", cwd=work
    )
    stderr = done.stderr.decode()
    assert (
        done.returncode == 1
        and stderr.startswith("error: cannot write the quarantine file")
        and stderr.count("\n") == 1
    )
    assert table_state(work / "data" / "t") == before


def test_ndjson_quarantine_keeps_bad_lines_with_file_line_and_reason(work: Path) -> None:
    write(work / "in" / "bad.ndjson", NDJSON_BAD)
    write(work / "in" / "more.ndjson", '\n{"id": 11, "year": 2025, "amount": "lots"}\n{"id": 12, "year": 2025}\n')
    done = cli(
        "ingest",
        "in/bad.ndjson",
        "in/more.ndjson",
        "--table",
        "t",
        "--data",
        "data",
        "--json",
        "--on-error",
        "quarantine=bad/rows.ndjson",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["rejected"], summary["version"]) == (3, 4, 1)
    bad = duckdb.sql(f"SELECT * FROM read_json('{work / 'bad' / 'rows.ndjson'}')").fetchall()
    got = [(Path(f).name, line, col, kind, reason) for f, line, col, kind, reason, _ in bad]
    assert got == [
        ("bad.ndjson", 2, "id", "CAST", 'cannot convert "seven" to BIGINT'),
        ("bad.ndjson", 4, None, "INVALID JSON", "not valid JSON"),
        ("bad.ndjson", 5, None, "INVALID JSON", "not a JSON object"),
        ("more.ndjson", 2, "amount", "CAST", 'cannot convert "lots" to DOUBLE'),  # line numbers count blank lines
    ]
    assert bad[0][5] == '{"id": "seven", "year": 2025, "city": "y", "amount": 2.0}'  # the line as it was
    with engine.Database(work / "data") as db:
        assert db.sql("SELECT id FROM t WHERE id > 4 ORDER BY id").fetchall() == [(5,), (10,), (12,)]


def test_ndjson_nested_and_temporal_columns(tmp_path: Path) -> None:
    """Struct and list columns need an object and an array (a string typed as a struct would be a
    struct of NULLs), a list's elements must convert, timestamps must parse. Missing keys and
    JSON nulls are nulls, not errors."""
    good = '{"id": 1, "ts": "2024-01-01 10:00:00", "tags": ["a"], "meta": {"k": 1}, "nums": [1]}\n'
    (tmp_path / "good.ndjson").write_text(good)
    (tmp_path / "new.ndjson").write_text(
        '{"id": 2, "ts": "not a time", "tags": [], "meta": {"k": 2}}\n'
        '{"id": 3, "ts": "2024-01-03 10:00:00", "tags": "a", "meta": {"k": 3}}\n'
        '{"id": 4, "ts": "2024-01-04 10:00:00", "tags": ["b"], "meta": "oops"}\n'
        '{"id": 5}\n'
        '{"id": 6, "ts": "2024-01-06 10:00:00", "tags": ["c", "d"], "meta": {}, "nums": [2, null]}\n'
        '{"id": 7, "nums": [3, "x"]}\n'
    )
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(str(tmp_path / "good.ndjson"), table="ev")
        with pytest.raises(
            BadRow, match=r"new.ndjson: line 1: column 'ts': cannot convert \"not a time\" to TIMESTAMP"
        ):
            db.ingest(str(tmp_path / "new.ndjson"), table="ev")
        summary = db.ingest(str(tmp_path / "new.ndjson"), table="ev", on_error=f"quarantine={tmp_path / 'q.csv'}")
        assert (summary.rows, summary.rejected, summary.version) == (2, 4, 1)
        rows = db.sql("SELECT id, tags, meta.k, nums FROM ev ORDER BY id").fetchall()
    assert rows == [(1, ["a"], 1, [1]), (5, None, None, None), (6, ["c", "d"], None, [2, None])]
    bad = pacsv.read_csv(tmp_path / "q.csv").to_pylist()
    assert [(r["line"], r["column"]) for r in bad] == [(1, "ts"), (2, "tags"), (3, "meta"), (6, "nums")]
    assert bad[2]["reason"] == 'cannot convert "oops" to STRUCT(k BIGINT)'
    assert bad[3]["reason"] == 'cannot convert [3,"x"] to BIGINT[]'


def test_ndjson_bad_line_late_in_a_schema_changing_ingest(work: Path) -> None:
    """add-columns streams through delta-rs's writer: a bad line far into the input still fails
    naming it (and commits nothing), or is quarantined while the rest is committed."""
    big = work / "in" / "big.ndjson"
    duckdb.sql(
        f"COPY (SELECT range AS id, 2025 AS year, 'c' AS city, 1.5 AS amount, 'e' AS extra FROM range(200000)) "
        f"TO '{big}' (FORMAT json)"
    )
    with big.open("a") as out:
        out.write('{"id": "late", "year": 2025, "extra": "e"}\n')
    before = table_state(work / "data" / "t")
    args = ("ingest", "in/big.ndjson", "--table", "t", "--data", "data", "--schema-evolution", "add-columns")
    done = cli(*args, cwd=work)
    assert done.returncode == 1
    assert "big.ndjson: line 200001: column 'id': cannot convert \"late\" to BIGINT" in done.stderr.decode()
    assert table_state(work / "data" / "t") == before
    done = cli(*args, "--on-error", "quarantine=bad.csv", "--json", cwd=work)
    assert done.returncode == 0, done.stderr.decode()
    assert (json.loads(done.stdout)["rows"], json.loads(done.stdout)["rejected"]) == (200_000, 1)
    with engine.Database(work / "data") as db:
        assert db.sql("SELECT count(*), count(extra) FROM t").fetchall() == [(200_004, 200_000)]


def test_quarantine_of_typed_input_is_empty_and_well_formed(work: Path) -> None:
    """Parquet and Arrow carry their types: a mismatch is a schema error before anything is read,
    so no single row can be bad and the quarantine file holds only its header."""
    pq.write_table(pacsv.read_csv(work / "in" / "base.csv"), work / "in" / "a.parquet")
    done = cli(
        "ingest",
        "in/a.parquet",
        "--table",
        "t",
        "--data",
        "data",
        "--json",
        "--on-error",
        "quarantine=bad/rows.csv",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (json.loads(done.stdout)["rows"], json.loads(done.stdout)["rejected"]) == (4, 0)
    assert (work / "bad" / "rows.csv").read_text() == "file,line,column,error_type,reason,row\n"


def test_summary_line_and_gzip_named_csv(work: Path) -> None:
    raw = (work / "in" / "base.csv").read_bytes()
    (work / "in" / "zipped.csv").write_bytes(gzip.compress(raw))  # gzip, whatever the name says
    done = cli("ingest", "in/zipped.csv", "--table", "t", "--data", "data", cwd=work)
    assert done.returncode == 0, done.stderr.decode()
    line = done.stdout.decode()
    assert line.count("\n") == 1 and done.stderr == b""  # no progress bar off a terminal
    assert (
        line.startswith("t: 4 rows from 1 file(s),")
        and "MB in" in line
        and "MB out" in line
        and line.endswith(f"→ version 1 in {work / 'data'}\n")  # and where
    )


def test_stdin_directories_globs_and_formats(work: Path) -> None:
    src = pacsv.read_csv(work / "in" / "base.csv")
    pq.write_table(src, work / "in" / "a.parquet")
    (work / "in" / "dir").mkdir()
    pq.write_table(src.slice(0, 2), work / "in" / "dir" / "b.parquet")
    pq.write_table(src.slice(2), work / "in" / "dir" / "c.parquet")
    done = cli("ingest", "in/a.parquet", "in/dir", "--table", "p", "--data", "data", "--json", cwd=work)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["files"] == 3 and json.loads(done.stdout)["rows"] == 8
    ndjson = b"".join(json.dumps(r).encode() + b"\n" for r in src.to_pylist())
    done = cli("ingest", "-", "--format", "ndjson", "--table", "t", "--data", "data", cwd=work, stdin=ndjson)
    assert done.returncode == 0, done.stderr.decode()
    with pa.ipc.new_file(work / "in" / "x.arrow", src.schema) as w:
        w.write_table(src)
    done = cli("ingest", "in/*.arrow", "--table", "t", "--data", "data", cwd=work)
    assert done.returncode == 0, done.stderr.decode()
    with engine.Database(work / "data") as db:
        assert db.sql("SELECT count(*) FROM t").fetchall() == [(12,)]
        assert db.table("t").version == 2 and db.table("t").partitions == ("year",)


def test_parity_many_csv_files_one_commit(tmp_path: Path) -> None:
    con = duckdb.connect()
    (tmp_path / "in").mkdir()
    for i in range(4):
        con.execute(
            f"COPY (SELECT range AS k, {i} AS part, 'v' || (range * 7 % 1000) AS s, range / 3 AS f, "
            f"DATE '2020-01-01' + (range % 400)::INTEGER AS d FROM range({i} * 50000, ({i} + 1) * 50000)) "
            f"TO '{tmp_path / 'in' / f'f{i}.csv'}' (HEADER)"
        )
    with engine.Database(tmp_path / "data", create=True) as db:
        summary = db.ingest(str(tmp_path / "in" / "*.csv"), table="big", partition_by=["part"])
        assert (summary.version, summary.files, summary.rows) == (0, 4, 200_000)
        assert len(db.history("big")) == 1  # many files, one commit
        files = db.table("big").files
    source = checksum(f"(SELECT k, part, s, f, d FROM read_csv('{tmp_path / 'in' / '*.csv'}'))")
    table = checksum(f"(SELECT k, part, s, f, d FROM read_parquet({list(files)}, hive_partitioning = true))")
    assert source == table and source[0] == 200_000


def test_files_carry_exact_delta_statistics(tmp_path: Path) -> None:
    """Each committed file's min/max/null counts in the Delta log equal what DuckDB computes over
    that very file, bounds that could mislead a reader are left out, and delta-rs skips files by
    them (returning the same rows as DuckDB)."""
    src = tmp_path / "st.csv"
    duckdb.sql(
        f"COPY (SELECT range AS id, (range // 10000)::INTEGER AS g, range / 3 AS f, "
        f"CASE WHEN range % 7 = 0 THEN NULL ELSE 'v' || (range % 1000) END AS s, "
        f"DATE '2020-01-01' + (range % 400)::INTEGER AS d, repeat('x', 40) || range AS long, "
        f"TIMESTAMP '2020-01-01' + to_seconds(range) AS ts FROM range(50000)) TO '{src}' (HEADER)"
    )
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(str(src), table="st", partition_by=["g"])
    table = tmp_path / "data" / "st"
    log = [json.loads(line) for line in (table / "_delta_log" / f"{0:020d}.json").read_text().splitlines()]
    adds = [entry["add"] for entry in log if "add" in entry]
    assert len(adds) == 5
    for add in adds:
        stats = json.loads(add["stats"])
        [(rows, nulls, lo_id, hi_id, lo_f, hi_f, lo_s, hi_s, lo_d, hi_d)] = duckdb.sql(
            f"SELECT count(*), count(*) - count(s), min(id), max(id), min(f), max(f), min(s), max(s), "
            f"min(d)::VARCHAR, max(d)::VARCHAR FROM read_parquet('{table / add['path']}')"
        ).fetchall()
        assert stats["numRecords"] == rows and stats["nullCount"]["s"] == nulls and stats["nullCount"]["id"] == 0
        assert (stats["minValues"]["id"], stats["maxValues"]["id"]) == (lo_id, hi_id)
        assert (stats["minValues"]["f"], stats["maxValues"]["f"]) == (lo_f, hi_f)
        assert (stats["minValues"]["s"], stats["maxValues"]["s"]) == (lo_s, hi_s)
        assert (stats["minValues"]["d"], stats["maxValues"]["d"]) == (lo_d, hi_d)
        for left_out in ("long", "ts", "g"):  # > 32 characters, millisecond-truncated, partition column
            assert left_out not in stats["minValues"] and left_out not in stats["maxValues"]
    from deltalake import DeltaTable

    dataset = DeltaTable(str(table)).to_pyarrow_dataset()
    wanted = pyarrow.dataset.field("id") > 40000
    assert len(list(dataset.get_fragments(filter=wanted))) == 1  # four of five files skipped by their stats
    assert dataset.to_table(filter=wanted).num_rows == 9999


def test_planned_schema_from_types_equals_the_inputs_own(tmp_path: Path) -> None:
    """The new table's Arrow schema is planned from the input's column types (no second bind of
    the files): for every type an input can bring, it equals what DuckDB reads from the data."""
    import datetime
    import decimal

    from engine.ingest.plan import plan_columns
    from engine.ingest.scan import scan
    from engine.ingest.types import delta_schema
    from engine.storage import TableState

    data = pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "u64": pa.array([1], pa.uint64()),
            "u32": pa.array([1], pa.uint32()),
            "f32": pa.array([1.5], pa.float32()),
            "dec": pa.array([decimal.Decimal("1.25")], pa.decimal128(10, 2)),
            "dec38": pa.array([decimal.Decimal("1.25")], pa.decimal128(38, 10)),
            "s": ["x"],
            "ls": pa.array(["x"], pa.large_string()),
            "b": pa.array([b"x"], pa.binary()),
            "ok": [True],
            "d": [datetime.date(2020, 1, 1)],
            "ts_s": pa.array([1], pa.timestamp("s")),
            "ts_ns": pa.array([1], pa.timestamp("ns")),
            "tstz": pa.array([1], pa.timestamp("us", tz="UTC")),
            "t": pa.array([1], pa.time64("us")),
            "l": [[1, 2]],
            "st": [{"a": 1, "b c": "x"}],
            "m": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
            "dict": pa.array(["a"]).dictionary_encode(),
            'weird "name"': [1],
        }
    )
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    src, new = open_source(data), TableState(exists=False)
    plan = plan_columns(con, scan(con, src, new, False), src, new, "strict", "t")
    read = delta_schema(con.sql(f"{plan.select} LIMIT 0").to_arrow_table().schema)
    assert [(f.name, f.type) for f in plan.schema] == [(f.name, f.type) for f in read] and len(plan.schema) == 20


def test_schema_policy(tmp_path: Path) -> None:
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(pa.table({"a": pa.array([1], pa.int64()), "x": pa.array([1.0], pa.float64())}), table="s")
        # safe widening: int32 → int64, float32 → float64
        db.ingest(pa.table({"a": pa.array([2], pa.int32()), "x": pa.array([2.5], pa.float32())}), table="s")
        with pytest.raises(SchemaMismatch, match=r"'a' is INTEGER in the table but BIGINT"):
            db.ingest(pa.table({"a": pa.array([1], pa.int32())}), table="s32")  # create an int32 table
            db.ingest(pa.table({"a": pa.array([2**40], pa.int64())}), table="s32")  # lossy: refused
        with pytest.raises(SchemaMismatch, match=r"'b' \(VARCHAR\) is not in the table"):
            db.ingest(pa.table({"a": [3], "x": [3.0], "b": ["new"]}), table="s")
        with pytest.raises(SchemaMismatch, match=r"'x' is DOUBLE in the table but VARCHAR"):
            db.ingest(pa.table({"a": [3], "x": ["text"]}), table="s")
        assert db.table("s").version == 1
        summary = db.ingest(pa.table({"a": [3], "x": [3.0], "b": ["new"]}), table="s", schema_evolution="add-columns")
        assert summary.version == 2 and db.schema("s").names == ["a", "x", "b"]
        rows = db.sql("SELECT a, x, b FROM s ORDER BY a").fetchall()
    assert rows == [(1, 1.0, None), (2, 2.5, None), (3, 3.0, "new")]


def test_overwrite_replaces_rows_and_may_repartition(work: Path) -> None:
    done = cli(
        "ingest",
        "in/base.csv",
        "--table",
        "t",
        "--mode",
        "overwrite",
        "--partition-by",
        "city",
        "--data",
        "data",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr.decode()
    with engine.Database(work / "data") as db:
        snap = db.table("t")
        assert (snap.version, snap.partitions, snap.row_count) == (1, ("city",), 4)
        assert db.sql("SELECT count(*) FROM t WHERE city IS NULL").fetchall() == [(1,)]


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~2M rows of uneven width: long enough for the progress bar to draw (it polls every 0.2 s)."""
    path = tmp_path_factory.mktemp("progress") / "long.csv"
    duckdb.sql(
        f"COPY (SELECT range AS id, repeat('x', (range % 40)::INTEGER) AS pad, range / 7 AS f "
        f"FROM range(2000000)) TO '{path}' (HEADER)"
    )
    return path


def test_row_estimates_for_the_progress_bar(long_csv: Path, tmp_path: Path) -> None:
    pq.write_table(pacsv.read_csv(long_csv), tmp_path / "long.parquet")
    (tmp_path / "long.csv.gz").write_bytes(gzip.compress(long_csv.read_bytes(), compresslevel=1))
    duckdb.sql(f"COPY (FROM read_csv('{long_csv}')) TO '{tmp_path / 'long.zst.csv'}' (HEADER, COMPRESSION zstd)")
    assert estimate_rows(open_source(str(tmp_path / "long.parquet"))) == 2_000_000  # from the footers
    assert estimate_rows(open_source(str(long_csv))) == pytest.approx(2_000_000, rel=0.1)  # from the first MiB
    gz = open_source(str(tmp_path / "long.csv.gz"), "csv")
    assert gz.compression == "gzip" and estimate_rows(gz) == pytest.approx(2_000_000, rel=0.15)
    assert estimate_rows(open_source(str(tmp_path / "long.zst.csv"))) is None  # unknown: no row count is shown
    assert estimate_rows(open_source(pa.table({"a": range(10)}))) == 10


def test_progress_reports_bytes_and_rows_as_it_goes(long_csv: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int, int | None]] = []
    with engine.Database(tmp_path / "data", create=True) as db:
        summary = db.ingest(str(long_csv), table="p", progress=lambda *a: calls.append(a))
    assert summary.rows == 2_000_000 and calls, "no progress reported"
    total = long_csv.stat().st_size
    assert all(t == total and 0 <= done <= total for done, t, _ in calls)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)  # never goes backwards
    for done, _, rows in calls:  # rows follow bytes: the estimate extrapolates the same fraction
        assert rows is not None and rows == pytest.approx(2_000_000 * done / total, rel=0.1, abs=1000)


def test_progress_bar_on_a_terminal(long_csv: Path, tmp_path: Path) -> None:
    """On a terminal, stderr shows MB read, MB/s, rows and rows/s; the summary still goes to stdout."""
    import pty

    main, replica = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | {"COLUMNS": "160"}
    proc = subprocess.Popen(
        [COLONNADE, "ingest", str(long_csv), "--table", "p", "--data", "data"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=replica,
    )
    os.close(replica)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the replica closed: the process is done
            break
        if not chunk:
            break
        drawn += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(main)
    assert proc.returncode == 0 and out.decode().startswith("p: 2,000,000 rows")
    text = drawn.decode(errors="replace")
    assert "ingest p" in text and "MB" in text and "rows/s" in text and "~" in text, text[-2000:]
