"""Shared engine fixtures: one TPC-H data directory at scale 0.01 for the whole session."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import engine
from engine.demo import create_demo
from engine.processes import stop_detached_group
from tests.breadth_data import corpus_tables, tpcds_parquet

# No property test's verdict may depend on how busy the machine is: Hypothesis' per-example
# deadline and its too-slow health check both measure wall-clock time, so neither applies here.
settings.register_profile("colonnade", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("colonnade")

TPCH_SCALE = 0.01
TPCDS_SCALE = 0.01  # 24 tables, 100k rows in all: ~3 s to generate and ingest


@pytest.fixture(scope="session")
def tpch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the 8 TPC-H tables as Delta tables. Tests must not write to it."""
    path = tmp_path_factory.mktemp("tpch") / "data"
    create_demo(path, TPCH_SCALE)
    return path


# Engine timeouts in tests are sized for a busy machine: a test that wants a timeout sets one.
TEST_QUERY_TIMEOUT_S = "600"


@pytest.fixture(scope="session")
def tpcds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding TPC-DS's 24 tables at a tiny scale (see tests/breadth_data.py)."""
    root = tmp_path_factory.mktemp("tpcds")
    with engine.Database(root / "data", create=True) as database:
        for path in tpcds_parquet(root / "parquet", TPCDS_SCALE):
            database.ingest(str(path), table=path.stem)
    return root / "data"


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the analyst corpus's tables (lists, structs, maps, JSON text, ...)."""
    path = tmp_path_factory.mktemp("corpus") / "data"
    with engine.Database(path, create=True) as database:
        for name, table in corpus_tables().items():
            database.ingest(table, table=name)
    return path


@pytest.fixture(scope="session")
def db(tpch_dir: Path) -> Iterator[engine.Database]:
    from engine.config import load_settings

    settings = load_settings(environ={"COLONNADE_LIMITS_QUERY_TIMEOUT_S": TEST_QUERY_TIMEOUT_S})
    database = engine.Database(tpch_dir, settings=settings)
    yield database
    database.close()


# One Spark Connect server for the whole run, shared by `make test`'s processes (xdist): the
# first test that needs it starts it, the others find it in SPARK_STATE (made by the run's main
# process, handed to the workers in the environment), and the main process stops it at the end.
# One JVM, started and warmed once, instead of one per process competing for the two cores.
SPARK_STATE_ENV = "COLONNADE_TEST_SPARK_STATE"
# The tests' queries read a few thousand rows, where compiling generated Java for each query
# and expression costs more than evaluating it: Spark's interpreted evaluators (its own test
# suites run both) take a third off the Spark tests (41 TPC-H and parity queries, three passes:
# 51, 25, 26 s with code generation; 40, 18, 16 s without). For the same reason the JVM compiles
# with C1 only and collects with one thread: over the first pass of those queries its CPU time
# fell 81 -> 43 s (wall 46 -> 37 s), its start 13.6 -> 7.5 CPU s, the second pass 37.5 -> 32 CPU
# s; that is CPU the other test process gets back. `make bench` keeps Spark's and Java's defaults.
SPARK_TEST_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the main process (also without xdist)
        os.environ[SPARK_STATE_ENV] = tempfile.mkdtemp(prefix="colonnade-test-spark-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and (state := os.environ.pop(SPARK_STATE_ENV, None)):
        server = Path(state) / "server.json"
        if server.exists():
            stop_detached_group(json.loads(server.read_text())["pid"])
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_remote() -> str:
    """The run's Spark Connect server (local[2]), started on first use by whichever process."""
    from engine.backends.spark_local import start_connect_server
    from tests.api.conftest import free_port

    state = Path(os.environ[SPARK_STATE_ENV])
    with open(state / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process starts it; the others wait, then read
        server = state / "server.json"
        if not server.exists():
            port = free_port()
            proc = start_connect_server(port, log=state / "spark-connect.log", conf=SPARK_TEST_CONF)
            server.write_text(json.dumps({"url": f"sc://127.0.0.1:{port}", "pid": proc.pid}))
        return str(json.loads(server.read_text())["url"])


@pytest.fixture(scope="session")
def spark_databases(spark_remote: str) -> Iterator[Callable[[Path], engine.Database]]:
    """Databases on the Spark engine, one per data dir, all closed before the server stops."""
    from engine.config import load_settings

    opened: list[engine.Database] = []

    def open_one(data_dir: Path) -> engine.Database:
        settings = load_settings(environ={"COLONNADE_SPARK_REMOTE": spark_remote})
        opened.append(engine.Database(data_dir, settings=settings))
        return opened[-1]

    yield open_one
    for database in opened:
        database.close()


@pytest.fixture(scope="session")
def spark_db(tpch_dir: Path, spark_remote: str) -> Iterator[engine.Database]:
    from engine.config import load_settings

    settings = load_settings(
        environ={"COLONNADE_SPARK_REMOTE": spark_remote, "COLONNADE_LIMITS_QUERY_TIMEOUT_S": TEST_QUERY_TIMEOUT_S}
    )
    database = engine.Database(tpch_dir, settings=settings)
    yield database
    database.close()


# The longest files first: `make test` hands whole files to two processes (xdist, loadfile), and
# a long file handed out last would run alone at the end.
LONGEST_FILES = ("tests/test_parity.py", "tests/test_column_names.py", "tests/test_types.py", "tests/objectstore/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, prefix in enumerate(LONGEST_FILES) if path.startswith(prefix)), len(LONGEST_FILES))

    items.sort(key=rank)  # stable: the order within a file is kept
