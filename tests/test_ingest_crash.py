"""Crash safety and concurrency with real processes: SIGKILL an ingest at several points, race
two writers, and count rows through ``engine.Database`` while another process ingests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import engine

COLONNADE = str(Path(sys.executable).parent / "colonnade")
BASE_ROWS = 1_000
BATCH_ROWS = 100_000


def env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | extra


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """Data dir with table ``t`` (BASE_ROWS rows, version 0) and a BATCH_ROWS-row CSV to add."""
    con = duckdb.connect()
    for name, rows in (("base.csv", BASE_ROWS), ("batch.csv", BATCH_ROWS)):
        con.execute(
            f"COPY (SELECT range AS id, range % 7 AS g, 'row ' || range AS s FROM range({rows})) "
            f"TO '{tmp_path / name}' (HEADER)"
        )
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(str(tmp_path / "base.csv"), table="t", partition_by=["g"])
    return tmp_path


def ingest_cmd(work: Path) -> list[str]:
    return [COLONNADE, "ingest", str(work / "batch.csv"), "--table", "t", "--data", str(work / "data")]


def committed(work: Path) -> tuple[int, int, set[str]]:
    """(version, rows, live files) as a fresh reader sees them."""
    with engine.Database(work / "data") as db:
        snap = db.table("t")
        rows = db.sql("SELECT count(*) FROM t").fetchall()[0][0]
        return snap.version or 0, rows, {os.path.relpath(f, work / "data" / "t") for f in snap.files}


def parquet_files(work: Path) -> set[str]:
    root = work / "data" / "t"
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


@pytest.mark.parametrize("stage", ["before_write", "after_write", "before_commit"])
def test_sigkill_leaves_previous_version(table: Path, stage: str) -> None:
    paused = [sys.executable, str(Path(__file__).parent / "ingest_paused.py"), stage, *ingest_cmd(table)[1:]]
    proc = subprocess.Popen(paused, env=env(), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline().decode().strip() == f"paused:{stage}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    version, rows, live = committed(table)
    assert (version, rows) == (0, BASE_ROWS)
    orphans = parquet_files(table) - live
    assert bool(orphans) == (stage != "before_write")  # written but invisible
    done = subprocess.run(
        [COLONNADE, "vacuum", "t", "--retain-hours", "0", "--force", "--data", str(table / "data")],
        env=env(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    after, rows, still_live = committed(table)  # delta-rs logs VACUUM START/END as commits
    assert parquet_files(table) == live == still_live and rows == BASE_ROWS
    subprocess.run(ingest_cmd(table), env=env(), check=True, capture_output=True, timeout=60)
    assert committed(table)[:2] == (after + 1, BASE_ROWS + BATCH_ROWS)


def test_sigkill_at_random_moments_never_corrupts(table: Path) -> None:
    """Kill mid-COPY at growing delays: the table is always at one version with its exact rows."""
    expected = {0: BASE_ROWS}
    for delay in (0.3, 0.6, 0.9, 1.2):
        proc = subprocess.Popen(ingest_cmd(table), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        version, rows, _ = committed(table)
        expected.setdefault(version, max(expected.values()) + BATCH_ROWS)
        assert rows == expected[version], (delay, version, rows)


def test_concurrent_writers_both_commit_or_one_fails_cleanly(table: Path) -> None:
    procs = [
        subprocess.Popen(ingest_cmd(table), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]  # type: ignore[union-attr]
    ok = sum(code == 0 for code, _ in results)
    for code, stderr in results:
        assert code == 0 or (code == 1 and "another writer" in stderr and stderr.count("\n") == 1), stderr
    assert ok >= 1
    version, rows, _ = committed(table)
    assert (version, rows) == (ok, BASE_ROWS + ok * BATCH_ROWS)


def test_readers_see_whole_versions_during_ingest(table: Path) -> None:
    """Readers poll while a writer commits three times. The writer waits, after each commit,
    until a reader has seen it (a file per commit), so the readers run across every commit
    however fast the machine is, and never see a partial one."""
    seen_dir = table / "seen"
    seen_dir.mkdir()
    script = (
        "import os, sys, time, engine\n"
        "db = engine.Database(sys.argv[1])\n"
        "for k in (1, 2, 3):\n"
        "    db.ingest(sys.argv[2], table='t')\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not os.path.exists(os.path.join(sys.argv[3], str(k))):\n"
        "        if time.monotonic() > deadline: sys.exit(3)\n"
        "        time.sleep(0.01)\n"
    )
    args = [str(table / "data"), str(table / "batch.csv"), str(seen_dir)]
    writer = subprocess.Popen([sys.executable, "-c", script, *args], env=env())
    valid = {BASE_ROWS + k * BATCH_ROWS for k in range(4)}
    seen = set()
    with engine.Database(table / "data") as db:
        while writer.poll() is None:
            for engine_name in ("duckdb", "polars"):
                n = db.sql("SELECT count(*) FROM t", engine=engine_name).fetchall()[0][0]
                assert n in valid, n  # a whole number of commits, never a partial one
                seen.add(n)
                (seen_dir / str((n - BASE_ROWS) // BATCH_ROWS)).touch()
        assert writer.wait(timeout=120) == 0
        assert db.sql("SELECT count(*) FROM t").fetchall() == [(BASE_ROWS + 3 * BATCH_ROWS,)]
    assert seen >= {BASE_ROWS + k * BATCH_ROWS for k in (1, 2, 3)}  # every commit, seen whole


# -- vacuum racing ingests -----------------------------------------------------------------


def vacuum_now(work: Path) -> subprocess.CompletedProcess[str]:
    """``vacuum --retain-hours 0 --force``: the most a vacuum may delete."""
    cmd = [COLONNADE, "vacuum", "t", "--retain-hours", "0", "--force", "--data", str(work / "data")]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)


def every_version_readable(work: Path) -> int:
    """Read every version the log names, whole (delta-rs opens each of its files), and return
    how many there are: a commit naming a deleted file fails here."""
    from deltalake import DeltaTable

    path = str(work / "data" / "t")
    latest = DeltaTable(path).version()
    for version in range(latest + 1):
        DeltaTable(path, version=version).to_pyarrow_table()
    return latest + 1


@pytest.mark.parametrize("stage", ["before_write", "after_write", "before_commit"])
def test_vacuum_never_deletes_a_running_ingests_files(table: Path, stage: str) -> None:
    """The ingest is held at each stage while vacuum runs to completion; then it commits, and
    every version is whole (before the lock, vacuum deleted the files and the commit named them)."""
    paused = [sys.executable, str(Path(__file__).parent / "ingest_paused.py"), stage, *ingest_cmd(table)[1:]]
    proc = subprocess.Popen(paused, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline().decode().strip() == f"paused:{stage}"
    done = vacuum_now(table)
    assert done.returncode == 0 and "a writer was running" in done.stdout, done.stderr
    _, err = proc.communicate(b"go\n", timeout=120)
    assert proc.returncode == 0, err.decode()
    assert committed(table)[1] == BASE_ROWS + BATCH_ROWS
    assert every_version_readable(table) >= 2
    done = vacuum_now(table)  # nobody writing now: the crashed-ingest sweep runs, and keeps what is live
    assert done.returncode == 0 and "writer" not in done.stdout
    assert parquet_files(table) == committed(table)[2]


def sweep_while(proc: subprocess.Popen[bytes], work: Path, after_s: float) -> int:
    """``vacuum --retain-hours 0 --force`` (in this process: no start-up time between sweeps),
    over and over from ``after_s`` into ``proc`` until it exits; how many sweeps ran."""
    from engine.catalog import Catalog
    from engine.storage import vacuum

    catalog, sweeps = Catalog(work / "data"), 0
    time.sleep(after_s)
    while proc.poll() is None:
        vacuum(catalog, "t", 0, force=True)
        sweeps += 1
    return sweeps


@pytest.mark.parametrize("path", ["add-files", "schema-change"])
def test_ingests_racing_vacuum_at_many_moments_leave_every_version_readable(table: Path, path: str) -> None:
    """Ingests (through DuckDB's COPY, and through delta-rs's writer, which a new column needs)
    swept by vacuum again and again from growing delays on: each commits, and every version the
    log names stays readable."""
    delays = (0.0, 0.3, 0.6, 1.0)
    rows, sweeps = BASE_ROWS, 0
    for i, delay in enumerate(delays):
        cmd = ingest_cmd(table)
        if path == "schema-change":
            extra = table / f"extra{i}.csv"
            duckdb.execute(
                f"COPY (SELECT range AS id, range % 7 AS g, 'x' AS s, range AS extra{i} FROM range({BATCH_ROWS})) "
                f"TO '{extra}' (HEADER)"
            )
            cmd = [*cmd[:2], str(extra), *cmd[3:], "--schema-evolution", "add-columns"]
        ingest = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sweeps += sweep_while(ingest, table, delay)
        assert ingest.wait(timeout=120) == 0, ingest.stderr.read().decode()  # type: ignore[union-attr]
        rows += BATCH_ROWS
        assert committed(table)[1] == rows
    assert sweeps >= 2 * len(delays)  # the sweeps really overlapped the ingests
    assert every_version_readable(table) > len(delays)


def test_compact_racing_vacuum_keeps_the_latest_version_whole(table: Path) -> None:
    for _ in range(3):
        subprocess.run(ingest_cmd(table), env=env(), check=True, capture_output=True, timeout=120)
    compact = subprocess.Popen(
        [COLONNADE, "compact", "t", "--data", str(table / "data")], env=env(), stderr=subprocess.PIPE
    )
    for _ in range(3):
        assert vacuum_now(table).returncode == 0
    assert compact.wait(timeout=120) == 0, compact.stderr.read().decode()  # type: ignore[union-attr]
    assert vacuum_now(table).returncode == 0
    _, rows, live = committed(table)
    assert rows == BASE_ROWS + 3 * BATCH_ROWS and parquet_files(table) == live
    from deltalake import DeltaTable

    assert DeltaTable(str(table / "data" / "t")).to_pyarrow_table().num_rows == rows


def test_a_commit_whose_file_vanished_is_refused(table: Path) -> None:
    """The last line of defence: a file deleted between the write and the commit (by anything
    that ignores the lock) makes the commit fail cleanly instead of naming a missing file."""
    paused = [sys.executable, str(Path(__file__).parent / "ingest_paused.py"), "before_commit", *ingest_cmd(table)[1:]]
    proc = subprocess.Popen(paused, env=env(), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline().decode().strip() == "paused:before_commit"
    live = committed(table)[2]
    victim = sorted(parquet_files(table) - live)[0]
    (table / "data" / "t" / victim).unlink()
    _, err = proc.communicate(b"go\n", timeout=120)
    assert proc.returncode == 1 and err.decode().count("\n") == 1, err.decode()
    assert "is gone before its commit" in err.decode() and "[concurrent_write]" in err.decode()
    assert committed(table)[:2] == (0, BASE_ROWS) and parquet_files(table) == live
