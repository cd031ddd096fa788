"""Managed and external tables on a real S3-compatible server (moto, tests/objectstore/s3server.py):
the same results as on local disk, other processes' commits seen at the next query, and every
bad input one stable error with nothing half-written."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import engine
from engine.config import Settings
from engine.errors import AccessDenied, ColonnadeError, StorageUnavailable, VersionUnavailable
from engine.filecache import _inside
from tests.objectstore.conftest import s3_env, s3_settings
from tests.objectstore.s3server import CREDENTIALS, S3Server

COLONNADE = str(Path(sys.executable).parent / "colonnade")
SECRET = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]


def frame(n: int, offset: int = 0) -> pa.Table:
    ids = list(range(offset, offset + n))
    return pa.table({"id": pa.array(ids, pa.int64()), "g": [f"g {i % 3}" for i in ids], "x": [i * 0.5 for i in ids]})


def rows(db: engine.Database, sql: str, engine_name: str = "duckdb") -> list[dict]:
    return db.sql(sql, engine=engine_name).arrow().to_pylist()


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")} | env
    return subprocess.run([COLONNADE, *args], env=environ, capture_output=True, text=True, timeout=timeout)


def test_conditional_put_is_honoured(s3: S3Server, bucket: str) -> None:
    """delta-rs's commits rely on it: a second create-only PUT of one key must fail with 412."""
    from botocore.exceptions import ClientError

    client = s3.client()
    client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


def test_managed_table_lifecycle_matches_local_disk(settings: Settings, bucket: str, tmp_path: Path) -> None:
    """Create, append, overwrite, partition, compact, vacuum and roll back on S3 and on disk;
    every step reads the same on DuckDB and Polars."""
    from engine import storage

    remote = engine.Database(f"s3://{bucket}/lake", settings=settings)
    local = engine.Database(tmp_path / "disk", create=True)
    query = "SELECT g, count(*) AS n, sum(id) AS s, avg(x) AS a FROM t GROUP BY g ORDER BY g"
    steps = [
        lambda db: db.ingest(frame(50), table="t", partition_by=["g"]),
        lambda db: db.ingest(frame(30, 50), table="t"),
        lambda db: storage.compact(db.catalog, "t"),
        lambda db: db.ingest(frame(20, 100), table="t", mode="overwrite"),
        lambda db: storage.rollback(db.catalog, "t", 1),
        lambda db: storage.vacuum(db.catalog, "t", 0, force=True),
    ]
    for step in steps:
        step(remote), step(local)
        assert remote.table("t").version == local.table("t").version
        for name in ("duckdb", "polars"):
            assert rows(remote, query, name) == rows(local, query, name), name
    assert remote.table("t").row_count == 80
    assert [h["operation"] for h in remote.history("t")] == [h["operation"] for h in local.history("t")]
    remote.close(), local.close()


def test_other_process_commit_seen_at_next_query(settings: Settings, bucket: str, tmp_path: Path, s3: S3Server) -> None:
    db = engine.Database(f"s3://{bucket}/lake", settings=settings)
    db.ingest(frame(10), table="t")
    assert rows(db, "SELECT count(*) AS n FROM t") == [{"n": 10}]
    (tmp_path / "more.csv").write_text("id,g,x\n" + "".join(f"{i},g {i % 3},{i * 0.5}\n" for i in range(100, 105)))
    done = cli(
        s3_env(s3, tmp_path / "other-host"),
        "ingest",
        str(tmp_path / "more.csv"),
        "--table",
        "t",
        "--data",
        f"s3://{bucket}/lake",
    )
    assert done.returncode == 0, done.stderr
    for name in ("duckdb", "polars"):  # no restart: the next query sees the other host's commit
        assert rows(db, "SELECT count(*) AS n FROM t", name) == [{"n": 15}]
    assert db.table("t").version == 1
    db.close()


def test_deleted_object_is_version_unavailable(settings: Settings, bucket: str, s3: S3Server) -> None:
    db = engine.Database(f"s3://{bucket}/lake", settings=settings)
    db.ingest(frame(10), table="t")
    db.ingest(frame(10, 10), table="t")
    key = db.table("t").files[0].split(f"s3://{bucket}/", 1)[1]
    s3.client().delete_object(Bucket=bucket, Key=key)
    with pytest.raises(VersionUnavailable) as err:
        db.sql("SELECT count(*) FROM t").arrow()
    assert "s3://" not in err.value.detail and key not in err.value.detail  # names the table, not the object
    db.close()


def test_bad_locations_are_one_stable_error(s3: S3Server, tmp_path: Path) -> None:
    """A missing bucket, an unreachable endpoint, an endpoint that never answers: one error each,
    within the configured timeouts, through the notebook and the CLI, never a secret."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(16)], daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    cases = [
        (s3.endpoint, "s3://no-such-bucket-here/lake"),
        (f"http://127.0.0.1:{dead}", "s3://any-bucket/lake"),
        (f"http://127.0.0.1:{silent.getsockname()[1]}", "s3://any-bucket/lake"),
    ]
    (tmp_path / "x.csv").write_text("a\n1\n")
    commands = (("tables",), ("query", "SELECT 1"), ("ingest", str(tmp_path / "x.csv"), "--table", "t"))
    runs = []
    # The CLI calls run side by side: each waits out its own timeouts (the silent endpoint's 2 s).
    with concurrent.futures.ThreadPoolExecutor(len(cases) * len(commands)) as pool:
        for endpoint, uri in cases:
            env = s3_env(s3, tmp_path / "local") | {
                "COLONNADE_STORAGE_ENDPOINT_URL": endpoint,
                "COLONNADE_STORAGE_REQUEST_TIMEOUT_S": "2",
                "COLONNADE_STORAGE_MAX_RETRIES": "0",
            }
            runs += [pool.submit(cli, env, *args, "--data", uri, timeout=60) for args in commands]
            with pytest.raises(StorageUnavailable):
                engine.Database(uri, settings=s3_settings(s3, tmp_path / "local", **env))
        for run in runs:
            done = run.result()
            assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
            assert done.stderr.rstrip().endswith("[storage_unavailable]"), done.stderr
            assert SECRET not in done.stderr and "Traceback" not in done.stderr
    silent.close()


def test_wrong_credentials_and_foreign_prefix_are_access_denied(tmp_path: Path) -> None:
    """moto with IAM checks on: a wrong key, and a key whose policy covers another prefix."""
    import json

    from tests.objectstore.s3server import s3_server

    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with s3_server(tmp_path / "moto-iam.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as server:
            iam = server.iam()
            iam.create_user(UserName="admin")
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(policy))
            admin = iam.create_access_key(UserName="admin")["AccessKey"]
            keys = {"key": admin["AccessKeyId"], "secret": admin["SecretAccessKey"]}
            server.client(**keys).create_bucket(Bucket="guarded")
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = keys["key"], keys["secret"]
            limited = {"Effect": "Allow", "Action": "s3:*", "Resource": ["arn:aws:s3:::guarded/mine/*"]}
            iam_admin = __import__("boto3").client(
                "iam",
                endpoint_url=server.endpoint,
                aws_access_key_id=keys["key"],
                aws_secret_access_key=keys["secret"],
                region_name="us-east-1",
            )
            iam_admin.create_user(UserName="limited")
            iam_admin.put_user_policy(
                UserName="limited",
                PolicyName="p",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [limited]}),
            )
            other = iam_admin.create_access_key(UserName="limited")["AccessKey"]
            base = s3_settings(server, tmp_path / "local")
            with engine.Database("s3://guarded/mine", settings=base) as db:
                db.ingest(frame(5), table="t")
            for key, secret, uri in [
                ("AKIAWRONGKEY0000", "wrong-secret-value-123", "s3://guarded/mine"),
                (other["AccessKeyId"], other["SecretAccessKey"], "s3://guarded/theirs"),
            ]:
                os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = key, secret
                with pytest.raises(AccessDenied) as err, engine.Database(uri, settings=base) as db:
                    db.ingest(frame(5), table="t")
                assert secret not in err.value.detail and key not in err.value.detail
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = keys["key"], keys["secret"]
            listed = server.client(**keys).list_objects_v2(Bucket="guarded")
            assert not any(o["Key"].startswith("theirs/") for o in listed.get("Contents", []))  # nothing half-written
            with engine.Database("s3://guarded/mine", settings=base) as db:
                assert db.table("t").version == 0
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_external_tables_and_sources_on_s3(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """External Parquet with hive partitions and CSV globs on S3; ingest from an S3 glob."""
    import pyarrow.parquet as pq

    client = s3.client()
    for year in (2023, 2024):
        path = tmp_path / f"{year}.parquet"
        pq.write_table(frame(10, year), path)
        client.upload_file(str(path), bucket, f"events/year={year}/part.parquet")
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"raw/day{i}.csv", Body=f"id,g,x\n{i},g {i},{i * 0.5}\n".encode())
    client.put_object(Bucket=bucket, Key="raw/notes.txt", Body=b"not data")
    client.put_object(Bucket=bucket, Key="lines/a.ndjson", Body='{"k": 1, "v": "é"}\n{"k": 2, "v": null}\n'.encode())
    config = tmp_path / "colonnade.toml"
    config.write_text(
        f'[[tables]]\nname = "events"\nuri = "s3://{bucket}/events/"\nformat = "parquet"\n\n'
        f'[[tables]]\nname = "raw"\nuri = "s3://{bucket}/raw/*.csv"\n\n'
        f'[[tables]]\nname = "lines"\nuri = "s3://{bucket}/lines/"\nformat = "ndjson"\n'
    )
    from engine.config import load_settings

    conf = load_settings(config, environ=s3_env(s3, tmp_path / "local"))
    with engine.Database(f"s3://{bucket}/lake", settings=conf) as db:
        for name in ("duckdb", "polars"):
            got = rows(db, "SELECT year, count(*) AS n FROM events GROUP BY year ORDER BY year", name)
            assert got == [{"year": 2023, "n": 10}, {"year": 2024, "n": 10}], name
            assert rows(db, "SELECT count(*) AS n FROM raw", name) == [{"n": 3}]
            assert rows(db, "SELECT k, v FROM lines ORDER BY k", name) == [{"k": 1, "v": "é"}, {"k": 2, "v": None}]
        summary = db.ingest(f"s3://{bucket}/raw/day*.csv", table="copied")
        assert summary.rows == 3 and summary.files == 3
        assert rows(db, "SELECT sum(id) AS s FROM copied") == [{"s": 3}]
        with pytest.raises(ColonnadeError) as err:
            db.ingest(f"s3://{bucket}/raw/nothing*.csv", table="copied")
        assert err.value.code == "source_not_found"


def test_cache_is_bounded_and_queries_stay_right(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    """A cache smaller than one table: every query still reads whole versions, and the cache
    shrinks back under its budget once no query holds its files."""
    conf = s3_settings(s3, tmp_path / "local", COLONNADE_STORAGE_CACHE_BYTES="2000")
    with engine.Database(f"s3://{bucket}/lake", settings=conf) as db:
        for k in range(4):
            db.ingest(frame(25, 25 * k), table="t")
        for name in ("duckdb", "polars", "duckdb"):
            assert rows(db, "SELECT count(*) AS n, sum(id) AS s FROM t", name) == [{"n": 100, "s": 4950}]
        assert db.catalog.files.bytes <= 2000


def test_keys_that_climb_out_of_the_cache_are_refused(tmp_path: Path) -> None:
    for bad in ("../x.parquet", "a/../../x", "/etc/passwd", "a//b", "."):
        with pytest.raises(StorageUnavailable):
            _inside(tmp_path, bad)
    assert _inside(tmp_path, "g=a%20b/part.parquet") == tmp_path / "g=a%20b" / "part.parquet"


OPS = st.lists(
    st.tuples(st.sampled_from(["append", "overwrite"]), st.integers(0, 40), st.integers(-5, 5)), min_size=1, max_size=4
)


@hsettings(
    max_examples=int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "4")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_differential_local_vs_s3(ops: list, s3: S3Server, tmp_path: Path) -> None:
    """Any sequence of appends and overwrites leaves the S3 table and the local one equal, at
    the same version, on both engines."""
    import uuid

    bucket = f"diff-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    work = tmp_path / uuid.uuid4().hex
    remote = engine.Database(f"s3://{bucket}/lake", settings=s3_settings(s3, work / "local"))
    local = engine.Database(work / "disk", create=True)
    for mode, n, offset in ops:
        for db in (remote, local):
            db.ingest(frame(n, offset), table="t", partition_by=["g"], mode=mode)
    query = "SELECT id, g, x FROM t ORDER BY id, g, x"
    for name in ("duckdb", "polars"):
        assert rows(remote, query, name) == rows(local, query, name)
    assert remote.table("t").version == local.table("t").version
    remote.close(), local.close()


@pytest.mark.slow
def test_spark_reads_object_store_tables(s3: S3Server, bucket: str, tmp_path: Path, spark_remote: str) -> None:
    """A Spark Connect server on the same host reads the same local copies DuckDB reads."""
    conf = s3_settings(s3, tmp_path / "local", COLONNADE_SPARK_REMOTE=spark_remote)
    with engine.Database(f"s3://{bucket}/lake", settings=conf) as db:
        db.ingest(frame(30), table="t", partition_by=["g"])
        query = "SELECT g, count(*) AS n, sum(id) AS s FROM t GROUP BY g ORDER BY g"
        assert rows(db, query, "spark") == rows(db, query, "duckdb")
