"""history, compact, vacuum and rollback through the real CLI on a real Delta table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine.errors import VersionUnavailable

COLONNADE = str(Path(sys.executable).parent / "colonnade")


def cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    return subprocess.run([COLONNADE, *args, "--data", str(data)], env=env, capture_output=True, text=True, timeout=120)


def digest(db: engine.Database) -> tuple[int, int]:
    return db.sql("SELECT count(*), sum(hash(id, s)) FROM t").fetchall()[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Table ``t`` built by five small appends (versions 0..4, 100 rows each)."""
    with engine.Database(tmp_path / "data", create=True) as db:
        for i in range(5):
            ids = pa.array(range(i * 100, (i + 1) * 100), pa.int64())
            db.ingest(pa.table({"id": ids, "s": pa.compute.cast(ids, pa.string())}), table="t")
    return tmp_path / "data"


def test_history_shows_version_time_operation_rows(data: Path) -> None:
    done = cli("history", "t", data=data)
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [f[0] for f in lines] == ["v4", "v3", "v2", "v1", "v0"]
    assert [f[2] for f in lines] == ["WRITE"] * 4 + ["CREATE TABLE"]
    assert all(f[3] == "rows_added=100" and f[1].startswith("20") for f in lines)


def test_compact_is_one_commit_with_the_same_rows(data: Path) -> None:
    with engine.Database(data) as db:
        before, files_before = digest(db), len(db.table("t").files)
        done = cli("compact", "t", data=data)
        assert done.returncode == 0, done.stderr
        snap = db.table("t")
        assert (snap.version, len(snap.files), files_before) == (5, 1, 5)
        assert digest(db) == before
    assert "5 file(s) compacted into 1 → version 5" in done.stdout


def test_vacuum_removes_only_unneeded_files(data: Path) -> None:
    assert cli("compact", "t", data=data).returncode == 0
    table_dir = data / "t"
    assert len(list(table_dir.rglob("*.parquet"))) == 6
    kept = cli("vacuum", "t", data=data)  # default retention: a week, nothing old enough
    assert kept.returncode == 0 and len(list(table_dir.rglob("*.parquet"))) == 6
    done = cli("vacuum", "t", "--retain-hours", "0", "--force", data=data)
    assert done.returncode == 0, done.stderr
    assert "5 file(s) deleted" in done.stdout
    with engine.Database(data) as db:
        live = {Path(f).name for f in db.table("t").files}
        assert {p.name for p in table_dir.rglob("*.parquet")} == live
        assert db.sql("SELECT count(*) FROM t").fetchall() == [(500,)]


def test_rollback_is_a_new_commit(data: Path) -> None:
    done = cli("rollback", "t", "--to-version", "1", data=data)
    assert done.returncode == 0, done.stderr
    assert "restored version 1 → version 5" in done.stdout
    with engine.Database(data) as db:
        assert db.table("t").version == 5
        assert db.sql("SELECT count(*), max(id) FROM t").fetchall() == [(200, 199)]
        assert [h["operation"] for h in db.history("t")][:1] == ["RESTORE"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("rollback", "t", "--to-version", "9"), "versions 0..4"),
        (("history", "nope"), "does not exist"),
        (("compact", "bad-name"), "does not exist"),
        (("vacuum", "t", "--retain-hours", "-1", "--force"), "retain-hours"),
        (("vacuum", "t", "--retain-hours", "nan", "--force"), "retain-hours"),
        (("vacuum", "t", "--retain-hours", "0"), "below the 168-hour retention floor"),
        (("vacuum", "t", "--retain-hours", "167.9", "--dry-run"), "pass --force"),
        (("rollback", "t", "--to-version", "-1"), "versions 0..4"),
        (("vacuum", "nope"), "does not exist"),
    ],
)
def test_maintenance_user_errors(data: Path, args: tuple[str, ...], says: str) -> None:
    before = sorted(str(p.relative_to(data)) for p in (data / "t").rglob("*"))
    done = cli(*args, data=data)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr and done.stdout == ""
    assert sorted(str(p.relative_to(data)) for p in (data / "t").rglob("*")) == before


def test_vacuum_keeps_a_week_unless_forced(data: Path) -> None:
    """Files removed a moment ago are within the 168-hour floor: kept by default; gone with
    --force --retain-hours 0 (and the versions that needed them can no longer be restored)."""
    assert cli("compact", "t", data=data).returncode == 0
    files = lambda: sorted(p.name for p in (data / "t").rglob("*.parquet"))  # noqa: E731
    before = files()
    done = cli("vacuum", "t", data=data)
    assert done.returncode == 0 and "0 file(s) deleted" in done.stdout and files() == before
    dry = cli("vacuum", "t", "--retain-hours", "0", "--force", "--dry-run", data=data)
    assert dry.returncode == 0 and len(dry.stdout.splitlines()) == 5 and files() == before
    assert cli("vacuum", "t", "--retain-hours", "0", "--force", data=data).returncode == 0
    assert len(files()) == 1


def test_rollback_to_a_vacuumed_version_is_version_unavailable(data: Path) -> None:
    assert cli("compact", "t", data=data).returncode == 0
    assert cli("vacuum", "t", "--retain-hours", "0", "--force", data=data).returncode == 0
    log_before = sorted(p.name for p in (data / "t" / "_delta_log").iterdir())
    done = cli("rollback", "t", "--to-version", "2", data=data)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "version 2 cannot be restored" in done.stderr and done.stderr.rstrip().endswith("[version_unavailable]")
    assert sorted(p.name for p in (data / "t" / "_delta_log").iterdir()) == log_before
    with engine.Database(data) as db:
        assert db.sql("SELECT count(*) FROM t").fetchall() == [(500,)]
        with pytest.raises(VersionUnavailable):
            from engine.storage import rollback

            rollback(db.catalog, "t", 0)
    versions = [json.loads(line) for line in cli("history", "t", "--json", data=data).stdout.splitlines()]
    compacted = next(v["version"] for v in versions if v["operation"] == "OPTIMIZE")
    done = cli("rollback", "t", "--to-version", str(compacted), data=data)
    assert done.returncode == 0, done.stderr  # the compacted version is whole
    done = cli("rollback", "t", "--to-version", str(versions[0]["version"] + 1), data=data)
    assert done.returncode == 1 and "is the current version" in done.stderr
