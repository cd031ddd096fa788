"""Hosts that scale out over one bucket, with real processes: two servers (separate processes,
separate local caches, as two hosts) see each other's ingests at their next query; a killed
ingest leaves the previous version readable; of two racing writers one wins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import engine
from tests.api.conftest import serve
from tests.objectstore.conftest import s3_env, s3_settings
from tests.objectstore.s3server import CREDENTIALS, S3Server

COLONNADE = str(Path(sys.executable).parent / "colonnade")
PAUSED = str(Path(__file__).parents[1] / "ingest_paused.py")
SECRET = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]


def environ(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | env


def write_csv(path: Path, start: int, count: int) -> Path:
    path.write_text("id,g\n" + "".join(f"{i},{i % 4}\n" for i in range(start, start + count)))
    return path


def ingest(env: dict[str, str], source: Path, uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [COLONNADE, "ingest", str(source), "--table", "t", "--data", uri, *extra]
    return subprocess.run(cmd, env=environ(env), capture_output=True, text=True, timeout=120)


def count(client: httpx.Client) -> int:
    response = client.get("/api/sql", params={"q": "SELECT count(*) AS n FROM t"})
    assert response.status_code == 200, response.text
    return response.json()["rows"][0]["n"]


def test_two_servers_over_one_bucket_see_each_others_ingests(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/lake"
    host_a, host_b = s3_env(s3, tmp_path / "host-a"), s3_env(s3, tmp_path / "host-b")
    assert ingest(host_a, write_csv(tmp_path / "0.csv", 0, 100), uri).returncode == 0
    with (
        serve(uri, env=host_a, log_dir=tmp_path) as a,
        serve(uri, env=host_b, log_dir=tmp_path) as b,
        a.client() as ca,
        b.client() as cb,
    ):
        assert count(ca) == count(cb) == 100
        first = ca.get("/api/sql", params={"q": "SELECT count(*) AS n FROM t"})
        assert first.headers["x-colonnade-cache"] == "hit"  # answered again from the cache, in a thread
        for n, (host, src) in enumerate([(host_a, 100), (host_b, 200), (host_a, 300)], start=1):
            done = ingest(host, write_csv(tmp_path / f"{src}.csv", src, 100), uri)
            assert done.returncode == 0, done.stderr
            assert count(ca) == count(cb) == 100 * (n + 1)  # no restart, no stale cache
        again = ca.get("/api/sql", params={"q": "SELECT count(*) AS n FROM t"})
        assert again.headers["etag"] != first.headers["etag"]
        tables = ca.get("/api/tables").text + cb.get("/api/tables/t").text
        assert SECRET not in tables and "s3://" not in tables
    for log in tmp_path.glob("server-*.log"):
        assert SECRET not in log.read_text(errors="replace")
    assert (tmp_path / "host-a").is_dir() and (tmp_path / "host-b").is_dir()  # separate local state


@pytest.mark.parametrize("stage", ["after_write", "before_commit"])
def test_killed_ingest_leaves_previous_version(s3: S3Server, bucket: str, tmp_path: Path, stage: str) -> None:
    uri = f"s3://{bucket}/lake"
    env = s3_env(s3, tmp_path / "local")
    assert ingest(env, write_csv(tmp_path / "base.csv", 0, 50), uri).returncode == 0
    cmd = [sys.executable, PAUSED, stage, "ingest", str(write_csv(tmp_path / "b.csv", 50, 5000)), "--table", "t",
           "--data", uri]  # fmt: skip
    proc = subprocess.Popen(cmd, env=environ(env), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline().decode().strip() == f"paused:{stage}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    settings = s3_settings(s3, tmp_path / "reader")
    with engine.Database(uri, settings=settings) as db:
        assert db.table("t").version == 0
        for name in ("duckdb", "polars"):
            assert db.sql("SELECT count(*) AS n FROM t", engine=name).arrow().to_pylist() == [{"n": 50}]
        live = set(db.table("t").files)
    objects = {f"s3://{bucket}/{o['Key']}" for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    orphans = {o for o in objects if o.endswith(".parquet")} - live
    assert bool(orphans) == (stage == "before_commit")  # uploaded, invisible
    done = subprocess.run(
        [COLONNADE, "vacuum", "t", "--retain-hours", "0", "--force", "--data", uri],
        env=environ(env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects = {f"s3://{bucket}/{o['Key']}" for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {o for o in objects if o.endswith(".parquet")} == live
    assert ingest(env, tmp_path / "b.csv", uri).returncode == 0  # and the next ingest works
    assert not any((tmp_path / "local" / ".colonnade" / "staging").iterdir())  # the dead one's staging is gone


def test_racing_writers_one_wins_the_other_is_concurrent_write(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """Two overwrites planned against the same version, on two hosts: the conditional PUT of the
    next commit lets one through; the other is refused and leaves nothing visible."""
    uri = f"s3://{bucket}/lake"
    assert ingest(s3_env(s3, tmp_path / "h0"), write_csv(tmp_path / "base.csv", 0, 10), uri).returncode == 0
    procs = []
    for i in range(2):
        src = write_csv(tmp_path / f"w{i}.csv", 1000 * (i + 1), 10 + i)
        cmd = [sys.executable, PAUSED, "before_commit", "ingest", str(src), "--table", "t", "--data", uri,
               "--mode", "overwrite"]  # fmt: skip
        env = environ(s3_env(s3, tmp_path / f"h{i + 1}"))
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.stderr is not None and p.stderr.readline().strip() == "paused:before_commit"
    results = []
    for p in procs:  # one after the other: both planned against version 0
        _, err = p.communicate("go\n", timeout=120)
        results.append((p.returncode, err))
    assert [code for code, _ in results] == [0, 1], results
    assert results[1][1].count("\n") == 1 and results[1][1].rstrip().endswith("[concurrent_write]")
    with engine.Database(uri, settings=s3_settings(s3, tmp_path / "reader")) as db:
        assert db.table("t").version == 1
        assert db.sql("SELECT min(id) AS lo, count(*) AS n FROM t").arrow().to_pylist() == [{"lo": 1000, "n": 10}]
        live = set(db.table("t").files) | set(db.catalog.location_of("t").delta_table(0).file_uris())
    objects = {f"s3://{bucket}/{o['Key']}" for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {o for o in objects if o.endswith(".parquet")} == live  # the loser's uploads are gone


def test_server_answers_storage_errors_as_problems(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """An object deleted under a table is 410 version_unavailable (naming the table, not the
    object); a server over a missing bucket does not start, in one line."""
    uri = f"s3://{bucket}/lake"
    env = s3_env(s3, tmp_path / "host")
    assert ingest(env, write_csv(tmp_path / "0.csv", 0, 100), uri).returncode == 0
    with serve(uri, env=env, log_dir=tmp_path) as srv, srv.client() as client:
        assert count(client) == 100
        assert ingest(env, write_csv(tmp_path / "1.csv", 100, 100), uri).returncode == 0
        with engine.Database(uri, settings=s3_settings(s3, tmp_path / "reader")) as db:
            new = set(db.table("t").files) - set(db.catalog.location_of("t").delta_table(0).file_uris())
        s3.client().delete_object(Bucket=bucket, Key=next(iter(new)).split(f"s3://{bucket}/", 1)[1])
        response = client.get("/api/sql", params={"q": "SELECT sum(id) AS s FROM t"})
        assert response.status_code == 410, response.text
        problem = response.json()
        assert problem["code"] == "version_unavailable" and "'t'" in problem["detail"]
        assert "s3://" not in response.text and bucket not in response.text and SECRET not in response.text
        assert client.get("/health").status_code == 200
    done = subprocess.run(
        [COLONNADE, "serve", "--data", "s3://no-such-bucket-anywhere/lake", "--port", "0"],
        env=environ(env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.rstrip().endswith("[storage_unavailable]") and SECRET not in done.stderr
