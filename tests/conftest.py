"""Shared engine fixtures: one TPC-H data directory at scale 0.01 for the whole session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import engine
from engine.demo import create_demo
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


@pytest.fixture(scope="session")
def spark_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Spark Connect server (local[2]) for the whole session, started on first use."""
    from engine.backends.spark_local import local_connect_server
    from tests.api.conftest import free_port

    log = tmp_path_factory.mktemp("spark") / "spark-connect.log"
    with local_connect_server(free_port(), log=log) as url:
        yield url


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


# How `make test` shares the work between its two processes (xdist, --dist loadgroup): each
# test file is one unit (its module fixtures are built once), except that every test on Spark is
# in one unit of its own, so one process starts the Spark server and warms its JIT, and the
# other never does. The longest units go first: one handed out last would run alone at the end.
SPARK_GROUP = "spark"
LONGEST_FILES = ("tests/test_parity.py", "tests/test_column_names.py", "tests/test_types.py", "tests/objectstore/")


def uses_spark(item: pytest.Item) -> bool:
    return "spark_remote" in getattr(item, "fixturenames", ()) or item.get_closest_marker("spark") is not None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = SPARK_GROUP if uses_spark(item) else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))

    def rank(item: pytest.Item) -> int:
        if uses_spark(item):
            return -1
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, prefix in enumerate(LONGEST_FILES) if path.startswith(prefix)), len(LONGEST_FILES))

    items.sort(key=rank)  # stable: the order within a file is kept
