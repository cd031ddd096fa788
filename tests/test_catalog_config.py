"""Configuration, data directories and the catalog: managed Delta tables, external tables from
``colonnade.toml``, versions written by other processes, and snapshot pinning."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import engine
from engine.backends.base import QueryControl
from engine.config import load_settings
from engine.errors import ColonnadeError, ConfigError, DataDirError, InvalidTableName, QueryTimeout, TableReadOnly

ENGINES = ("duckdb", "polars")
COLONNADE = str(Path(sys.executable).parent / "colonnade")
HEAVY = "SELECT count(*) FROM lineitem a, lineitem b WHERE hash(a.l_comment, b.l_comment) % 1000 = 7"
SAMPLE = pa.table(
    {
        "id": [1, 2, 3, 4],
        "year": [2023, 2023, 2024, 2024],
        "city": ["a", "b", "c", None],
        "amount": [1.5, 2.5, None, 4.0],
    }
)


def raises_code(error: type[ColonnadeError], fn, *args, **kwargs) -> ColonnadeError:
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    assert type(info.value) is error and info.value.code == error.code
    return info.value


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "colonnade.toml"
    path.write_text(text)
    return path


def count(db: engine.Database, table: str, engine_name: str) -> int:
    return db.sql(f"SELECT count(*) FROM {table}", engine=engine_name).fetchall()[0][0]


# -- configuration ------------------------------------------------------------------------


def test_defaults_are_safe() -> None:
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.limits.query_timeout_s > 0
    assert settings.limits.max_result_rows > 0 and settings.limits.max_result_bytes > 0
    assert not settings.auth_enabled()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[nope]\nx = 1\n", "nope"),
        ("[limits]\nquery_timeout = 3\n", "limits.query_timeout"),
        ("[server]\nhots = '0.0.0.0'\n", "server.hots"),
        ("[limits]\nquery_timeout_s = 'fast'\n", "limits.query_timeout_s"),
        ("[server]\nport = '8000'\n", "server.port"),
        ("[server]\nworkers = true\n", "server.workers"),
        ("[auth]\nenabled = 1\n", "auth.enabled"),
        ("limits = 3\n", "[limits]"),
        ("[[tables]]\nname = 't'\nuri = 'x.parquet'\nformt = 'csv'\n", "formt"),
        ("[[tables]]\nname = 't'\n", "uri"),
        ("[[tables]]\nname = 't'\nuri = 'x.xlsx'\nformat = 'xlsx'\n", "xlsx"),
        ("[limits\nquery_timeout_s = 3\n", "TOML"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, named: str) -> None:
    err = raises_code(ConfigError, load_settings, write_config(tmp_path, text), environ={})
    assert named in err.detail


def test_missing_config_file(tmp_path: Path) -> None:
    raises_code(ConfigError, load_settings, tmp_path / "absent.toml", environ={})
    raises_code(ConfigError, load_settings, environ={"COLONNADE_CONFIG": str(tmp_path / "absent.toml")})


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[limits]\nquery_timeout_s = 10\nmax_result_rows = 7\n")
    settings = load_settings(path, environ={"COLONNADE_LIMITS_QUERY_TIMEOUT_S": "2.5"})
    assert settings.limits.query_timeout_s == 2.5
    assert settings.limits.max_result_rows == 7
    by_env = load_settings(environ={"COLONNADE_CONFIG": str(path), "COLONNADE_SERVER_WORKERS": "3"})
    assert (by_env.limits.query_timeout_s, by_env.server.workers) == (10.0, 3)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("COLONNADE_LIMITS_QUERY_TIMEOUT_S", "soon"),
        ("COLONNADE_SERVER_PORT", "80.5"),
        ("COLONNADE_AUTH_ENABLED", "maybe"),
        ("COLONNADE_LIMITS_NO_SUCH_KEY", "1"),
    ],
)
def test_bad_env_value(var: str, value: str) -> None:
    err = raises_code(ConfigError, load_settings, environ={var: value})
    assert var.split("_", 2)[2].lower() in err.detail.lower() or var in err.detail


def test_env_timeout_reaches_the_engine(tpch_dir: Path) -> None:
    settings = load_settings(environ={"COLONNADE_LIMITS_QUERY_TIMEOUT_S": "0.5"})
    with engine.Database(tpch_dir, settings=settings) as db:
        raises_code(QueryTimeout, lambda: db.sql(HEAVY).arrow())


# -- data directories ---------------------------------------------------------------------


def test_missing_data_dir(tmp_path: Path) -> None:
    raises_code(DataDirError, engine.Database, tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    raises_code(DataDirError, engine.Database, tmp_path / "file")


def copy_table(tpch_dir: Path, tmp_path: Path, table: str = "nation") -> Path:
    data = tmp_path / "data"
    shutil.copytree(tpch_dir / table, data / table)
    return data


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no_commits"])
def test_corrupt_delta_log(tpch_dir: Path, tmp_path: Path, damage: str) -> None:
    data = copy_table(tpch_dir, tmp_path)
    log = data / "nation" / "_delta_log"
    commit = log / "00000000000000000000.json"
    if damage == "garbage":
        commit.write_text("this is not json\n")
    elif damage == "truncated":
        commit.write_text(commit.read_text()[:200])
    else:
        commit.unlink()
    before = sorted(p.name for p in log.iterdir())
    with engine.Database(data) as db:
        for engine_name in ENGINES:
            raises_code(DataDirError, lambda e=engine_name: db.sql("SELECT * FROM nation", engine=e).arrow())
        raises_code(DataDirError, db.schema, "nation")
    assert sorted(p.name for p in log.iterdir()) == before


@pytest.mark.parametrize("name", ["1abc", "a-b", "", "x" * 64, "../evil", "a b", "t;drop", "ñandú", "a.b"])
def test_invalid_table_name(tmp_path: Path, name: str) -> None:
    with engine.Database(tmp_path / "data", create=True) as db:
        raises_code(InvalidTableName, db.ingest, SAMPLE, table=name)
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_longest_valid_table_name(tmp_path: Path) -> None:
    name = "T" + "x" * 62
    with engine.Database(tmp_path, create=True) as db:
        db.ingest(SAMPLE, table=name)
        assert count(db, name, "polars") == 4


# -- external tables ----------------------------------------------------------------------


@pytest.fixture
def external_db(tpch_dir: Path, tmp_path: Path) -> Iterator[engine.Database]:
    ext = tmp_path / "ext"
    ext.mkdir()
    pq.write_table(SAMPLE, ext / "flat.parquet")
    partitioning = ds.partitioning(pa.schema([("year", pa.int64())]), flavor="hive")
    ds.write_dataset(SAMPLE, ext / "hive", format="parquet", partitioning=partitioning)
    pacsv.write_csv(SAMPLE, ext / "data.csv")
    config = write_config(
        tmp_path,
        f"""
[[tables]]
name = "flat"
uri = "{ext / "flat.parquet"}"

[[tables]]
name = "hive"
uri = "{ext / "hive"}"
format = "parquet"

[[tables]]
name = "csv_table"
uri = "{ext / "data.csv"}"
""",
    )
    with engine.Database(tpch_dir, settings=load_settings(config, environ={})) as db:
        yield db


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("table", ["flat", "hive", "csv_table"])
def test_external_table(external_db: engine.Database, table: str, engine_name: str) -> None:
    snap = external_db.table(table)
    assert snap.kind == "external" and snap.version is None and snap.files
    result = external_db.sql(
        f"SELECT id, year, city, amount FROM {table} WHERE year = ? ORDER BY id", params=[2024], engine=engine_name
    )
    assert result.fetchall() == [(3, 2024, "c", None), (4, 2024, None, 4.0)]
    whole = external_db.sql(f"SELECT * FROM {table}", engine=engine_name).arrow()
    assert whole.schema == external_db.schema(table)


def test_external_tables_are_listed_beside_managed(external_db: engine.Database) -> None:
    names = external_db.tables()
    assert {"flat", "hive", "csv_table", "lineitem"} <= set(names)
    assert external_db.table("hive").partitions == ("year",)
    assert external_db.sql("SELECT count(*) FROM flat JOIN nation ON id = n_nationkey").fetchall() == [(4,)]


def test_external_table_is_read_only(external_db: engine.Database) -> None:
    before = external_db.table("flat").fingerprint
    raises_code(TableReadOnly, external_db.ingest, SAMPLE, table="flat")
    assert not (external_db.catalog.data_dir / "flat").exists()
    assert external_db.table("flat").fingerprint == before


# -- managed tables: versions, other writers, pinning ---------------------------------------


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[engine.Database]:
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(SAMPLE, table="events", partition_by=["year"])
        yield db


def test_managed_table_metadata(managed: engine.Database) -> None:
    snap = managed.table("events")
    assert (snap.kind, snap.version, snap.partitions, snap.row_count) == ("managed", 0, ("year",), 4)
    assert len(snap.files) == 2 and snap.bytes > 0
    assert all(Path(f).is_file() for f in snap.files)
    for engine_name in ENGINES:
        result = managed.sql("SELECT * FROM events", engine=engine_name)
        assert result.schema == snap.schema
        assert sorted(result.fetchall()) == sorted(zip(*SAMPLE.to_pydict().values(), strict=True))


def test_new_version_from_another_process_is_seen(managed: engine.Database, tmp_path: Path) -> None:
    assert [count(managed, "events", e) for e in ENGINES] == [4, 4]
    pq.write_table(SAMPLE, tmp_path / "more.parquet")
    subprocess.run(
        [
            COLONNADE,
            "ingest",
            str(tmp_path / "more.parquet"),
            "--table",
            "events",
            "--data",
            str(managed.catalog.data_dir),
        ],
        check=True,
        capture_output=True,
    )
    assert managed.table("events").version == 1
    assert [count(managed, "events", e) for e in ENGINES] == [8, 8]
    script = "import engine, pyarrow as pa; engine.Database(__import__('sys').argv[1]).ingest(pa.table({'id': [9], 'year': [2025], 'city': ['z'], 'amount': [0.5]}), table='events')"
    subprocess.run([sys.executable, "-c", script, str(managed.catalog.data_dir)], check=True, capture_output=True)
    assert managed.table("events").version == 2
    assert [count(managed, "events", e) for e in ENGINES] == [9, 9]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_snapshot_is_pinned_to_its_version(managed: engine.Database, engine_name: str) -> None:
    old = managed.table("events")
    managed.ingest(SAMPLE, table="events", mode="overwrite")
    managed.ingest(SAMPLE.slice(0, 1), table="events")
    new = managed.table("events")
    assert new.version == old.version + 2 and new.row_count == 5
    prepared = managed.prepare("SELECT count(*) AS n FROM events", engine=engine_name)
    # As if prepared before the two ingests: pinned to the old version.
    sql = prepared.query.render({"events": old.relation})
    pinned = dataclasses.replace(prepared, tables={"events": old}, sql=sql)
    backend = managed.backend(engine_name)
    rows = [b.to_pylist() for b in backend.execute(pinned, QueryControl(10))]
    assert rows == [[{"n": 4}]]
    assert count(managed, "events", engine_name) == 5


def test_history_lists_versions(managed: engine.Database) -> None:
    managed.ingest(SAMPLE, table="events")
    versions = [h["version"] for h in managed.history("events")]
    assert versions == [1, 0]


def test_every_config_key_is_documented() -> None:
    """Docs are a tested contract: each section and key of the settings appears in README's
    configuration block, under its section."""
    import re

    from engine.config import SECTIONS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    sections = dict(re.findall(r"^\[(\w+)\][^\n]*\n(.*?)(?=^\[|\Z)", block, re.M | re.S))
    for section, cls in SECTIONS.items():
        assert section in sections, section
        for f in dataclasses.fields(cls):
            assert re.search(rf"^#? ?{f.name} = ", sections[section], re.M), f"{section}.{f.name}"
