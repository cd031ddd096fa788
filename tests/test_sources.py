"""Sources are literal unless the user wrote a pattern: a file is read by its exact name whatever
characters it holds (DuckDB's readers glob every path they are given), a directory's files are
each read once, and a pattern matches only when no file has that very name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine

COLONNADE = str(Path(sys.executable).parent / "colonnade")
NAMES = ["star*.csv", "starA.csv", "starB.csv", "glob[1].csv", "q?.csv", "it's [a-z] ~x.csv", "b]{1,2}.csv"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    return subprocess.run([COLONNADE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    for i, name in enumerate(NAMES):
        (tmp_path / "in" / name).write_text(f"id,name\n{i},{json.dumps(name)}\n")
    return tmp_path


def ids(work: Path, table: str) -> list[int]:
    with engine.Database(work / "data") as db:
        return [r[0] for r in db.sql(f"SELECT id FROM {table} ORDER BY id").fetchall()]


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["in"], list(range(len(NAMES)))),  # a directory: each file once (the issue: 5 files → 8 rows)
        (["in/star*.csv"], [0]),  # that file exists: read it, not the pattern
        (["in/glob[1].csv"], [3]),  # could not be ingested at all before
        (["in/q?.csv", "in/b]{1,2}.csv"], [4, 6]),
        (["in/sta?[AB].csv"], [1, 2]),  # no such file: the user's pattern
        (["in/**/star?.csv"], [0, 1, 2]),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) and isinstance(a[0], str) else "",
)
def test_names_are_literal_and_patterns_are_the_users(work: Path, args: list[str], want: list[int]) -> None:
    done = cli("ingest", *args, "--table", "t", "--data", "data", cwd=work)
    assert done.returncode == 0, done.stderr
    assert ids(work, "t") == want


def test_a_pattern_that_matches_nothing_is_one_line(work: Path) -> None:
    done = cli("ingest", "in/zz*.csv", "--table", "t", "--data", "data", cwd=work)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "no files match" in done.stderr
    assert not (work / "data" / "t").exists()


# Any file name a POSIX file system takes (no "/" or NUL), glob and quote characters welcome.
NAME = st.text(alphabet=st.sampled_from(list("abcXYZ019 *?[]{}!^-_.,'\"\\~$`é💡\t")), min_size=1, max_size=24).filter(
    lambda n: n not in (".", "..")
)


@settings(
    max_examples=int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "12")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(NAME, min_size=1, max_size=4, unique=True),
    fmt=st.sampled_from(["csv", "ndjson", "parquet"]),
    quarantine=st.booleans(),
)
def test_any_file_name_is_read_once_by_exact_name(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], fmt: str, quarantine: bool
) -> None:
    work = tmp_path_factory.mktemp("names")
    (work / "in").mkdir()
    for i, name in enumerate(names):
        path = work / "in" / f"{name}.{fmt}"
        if fmt == "csv":
            path.write_text(f"id\n{i}\n")
        elif fmt == "ndjson":
            path.write_text(json.dumps({"id": i}) + "\n")
        else:
            pq.write_table(pa.table({"id": [i]}), path)
    options = {"on_error": f"quarantine={work / 'bad.csv'}"} if quarantine else {}
    with engine.Database(work / "data", create=True) as db:
        summary = db.ingest(str(work / "in"), table="t", **options)
        assert (summary.files, summary.rows) == (len(names), len(names))
        assert db.sql("SELECT id FROM t ORDER BY id").fetchall() == [(i,) for i in range(len(names))]
        first = str(work / "in" / f"{names[0]}.{fmt}")  # and each file alone, by its name
        assert db.ingest(first, table="one").rows == 1


@pytest.mark.parametrize("name", ["glob[1]", "back\\slash*"])
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_bad_rows_name_the_file_as_the_user_did(work: Path, name: str, fmt: str) -> None:
    """Files DuckDB reads through a link are still named by their own path, in errors and in
    the quarantine file."""
    path = work / f"{name}.{fmt}"
    path.write_text("id\n1\nx\n" if fmt == "csv" else '{"id": 1}\n{"id": "x"}\n')
    with engine.Database(work / "data", create=True) as db:
        db.ingest(pa.table({"id": pa.array([0], pa.int64())}), table="t")
        with pytest.raises(engine.ColonnadeError, match=re.escape(f"{path}: line")):
            db.ingest(str(path), table="t")
        db.ingest(str(path), table="t", on_error=f"quarantine={work / 'bad.csv'}")
    assert pa.csv.read_csv(work / "bad.csv").column("file").to_pylist() == [str(path)]
