"""The Arrow ⇄ Delta type table (``engine/ingest/types.py``), row by row: every type an input can
bring is ingested from each source that can carry it (Arrow, Parquet, Arrow IPC, pandas, Polars,
CSV, NDJSON), the Delta type is read back from the commit log itself, and the values are read
back through DuckDB and Polars (and Spark, in one batched test) and compared with the input's.
Every type Delta cannot hold is one error naming column and type, and leaves the table as it was.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import engine
from engine.errors import BadRow, ColonnadeError, SchemaMismatch, UnsupportedType
from engine.ingest import TYPE_TABLE

UTC = dt.UTC
PARIS = dt.timezone(dt.timedelta(hours=1))
KATHMANDU = dt.timezone(dt.timedelta(hours=5, minutes=45))
NEW_YORK = dt.timezone(dt.timedelta(hours=-5))
INSTANT = dt.datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
NAIVE = dt.datetime(2026, 11, 30, 10, 0, 0, 123456)


@dataclass(frozen=True)
class Case:
    name: str
    data: pa.Array
    delta: str  # the Delta type, as the commit log spells it
    values: list[Any]  # what a query returns


def ts(unit: str, tz: str | None = None) -> pa.DataType:
    return pa.timestamp(unit, tz)


def at(value: dt.datetime, unit: str) -> int:
    """``value`` as an integer count of ``unit`` since the epoch (exact, no float)."""
    delta = value.replace(tzinfo=None) - dt.datetime(1970, 1, 1)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return {"s": micros // 1_000_000, "ms": micros // 1_000, "us": micros, "ns": micros * 1_000}[unit]


def _timestamp_cases() -> list[Case]:
    out = []
    for unit in ("s", "ms", "us", "ns"):
        cut = {"s": NAIVE.replace(microsecond=0), "ms": NAIVE.replace(microsecond=123000)}.get(unit, NAIVE)
        out.append(Case(f"ts_{unit}", pa.array([at(cut, unit), None], ts(unit)), "timestamp_ntz", [cut, None]))
        for zone in ("UTC", "Europe/Paris", "America/New_York", "+05:45", "Asia/Kathmandu"):
            instant = cut.replace(tzinfo=UTC)
            arr = pa.array([at(instant, unit), None], ts(unit, zone))
            out.append(Case(f"tstz_{unit}_{zone}", arr, "timestamp", [instant, None]))
    return out


TYPED = [
    Case("bool", pa.array([True, None]), "boolean", [True, None]),
    Case("int8", pa.array([-128, 127], pa.int8()), "byte", [-128, 127]),
    Case("int16", pa.array([-(2**15), 2**15 - 1], pa.int16()), "short", [-(2**15), 2**15 - 1]),
    Case("int32", pa.array([-(2**31), 2**31 - 1], pa.int32()), "integer", [-(2**31), 2**31 - 1]),
    Case("int64", pa.array([-(2**63), 2**63 - 1], pa.int64()), "long", [-(2**63), 2**63 - 1]),
    Case("uint8", pa.array([0, 255], pa.uint8()), "short", [0, 255]),
    Case("uint16", pa.array([0, 2**16 - 1], pa.uint16()), "integer", [0, 2**16 - 1]),
    Case("uint32", pa.array([0, 2**32 - 1], pa.uint32()), "long", [0, 2**32 - 1]),
    Case("uint64", pa.array([0, 2**63 - 1], pa.uint64()), "long", [0, 2**63 - 1]),
    Case("float16", pa.array([1.5, None], pa.float16()), "float", [1.5, None]),
    Case("float32", pa.array([1.5, float("inf")], pa.float32()), "float", [1.5, float("inf")]),
    Case("float64", pa.array([float("nan"), -1e308], pa.float64()), "double", [float("nan"), -1e308]),
    Case("decimal32", pa.array([decimal.Decimal("-123.45"), None], pa.decimal32(5, 2)), "decimal(5,2)", None),
    Case(
        "decimal64",
        pa.array([decimal.Decimal("12345678901234.5678"), None], pa.decimal64(18, 4)),
        "decimal(18,4)",
        None,
    ),
    Case(
        "decimal128",
        pa.array([decimal.Decimal("9" * 28 + ".0123456789"), None], pa.decimal128(38, 10)),
        "decimal(38,10)",
        None,
    ),
    Case("decimal256", pa.array([decimal.Decimal(10**37), None], pa.decimal256(38, 0)), "decimal(38,0)", None),
    Case("date32", pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31)], pa.date32()), "date", None),
    Case("date64", pa.array([dt.date(2026, 11, 30), None], pa.date64()), "date", None),
    Case("time32", pa.array([dt.time(10, 30), None], pa.time32("s")), "string", ["10:30:00", None]),
    Case("time64", pa.array([dt.time(10, 30, 0, 500000), None], pa.time64("us")), "string", ["10:30:00.5", None]),
    *_timestamp_cases(),
    Case("string", pa.array(["", "ünï 💡 'x\"\n"]), "string", None),
    Case("large_string", pa.array(["a", None], pa.large_string()), "string", None),
    Case("string_view", pa.array(["a", None], pa.string_view()), "string", None),
    Case("binary", pa.array([b"\x00\xff", None]), "binary", None),
    Case("large_binary", pa.array([b"x", None], pa.large_binary()), "binary", None),
    Case("fixed_binary", pa.array([b"xy", None], pa.binary(2)), "binary", None),
    Case("list", pa.array([[1, None], None]), "array<long>", None),
    Case("large_list", pa.array([["a"], []], pa.large_list(pa.string())), "array<string>", None),
    Case("fixed_list", pa.array([[1, 2], None], pa.list_(pa.int32(), 2)), "array<integer>", None),
    Case("list_uint8", pa.array([[255], None], pa.list_(pa.uint8())), "array<short>", None),
    Case(
        "struct",
        pa.array(
            [{"a": 1, "b c": {"d": "x"}}, None],
            pa.struct([("a", pa.int32()), ("b c", pa.struct([("d", pa.string())]))]),
        ),
        "struct<a: integer, b c: struct<d: string>>",
        None,
    ),
    Case(
        "struct_tz",
        pa.array([{"t": at(INSTANT, "ms")}, None], pa.struct([("t", ts("ms", "Europe/Paris"))])),
        "struct<t: timestamp>",
        [{"t": INSTANT.replace(microsecond=123000)}, None],
    ),
    Case("map", pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())), "map<string, long>", [{"k": 1}, None]),
    Case("dict_string", pa.array(["a", None]).dictionary_encode(), "string", ["a", None]),
    Case("dict_int", pa.array([7, 7]).dictionary_encode(), "long", [7, 7]),
    Case("null", pa.array([None, None], pa.null()), "string", [None, None]),
    Case("uuid", pa.array([uuid.UUID(int=1).bytes, None], pa.uuid()), "string", [str(uuid.UUID(int=1)), None]),
]
REFUSED = [
    ("duration", pa.array([1], pa.duration("s")), "duration"),
    ("interval", pa.array([(1, 2, 3)], pa.month_day_nano_interval()), "interval"),
    ("decimal40", pa.array([decimal.Decimal(1)], pa.decimal256(40, 2)), "decimal256(40, 2)"),
    ("union", pa.UnionArray.from_sparse(pa.array([0], pa.int8()), [pa.array([1]), pa.array(["a"])]), "union"),
    ("list_duration", pa.array([[1]], pa.list_(pa.duration("ms"))), "duration"),
]


def expected(case: Case) -> list[Any]:
    return case.values if case.values is not None else case.data.to_pylist()


def delta_types(path: Path) -> dict[str, str]:
    """Each column's type as the Delta log itself records it (the last metaData action)."""
    schema = None
    for commit in sorted((path / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "metaData" in action:
                schema = json.loads(action["metaData"]["schemaString"])
    assert schema is not None
    return {f["name"]: _type_name(f["type"]) for f in schema["fields"]}


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    if t["type"] == "array":
        return f"array<{_type_name(t['elementType'])}>"
    if t["type"] == "map":
        return f"map<{_type_name(t['keyType'])}, {_type_name(t['valueType'])}>"
    return "struct<" + ", ".join(f"{f['name']}: {_type_name(f['type'])}" for f in t["fields"]) + ">"


def norm(value: Any) -> Any:
    """One spelling per value whatever the engine: maps as dicts, NaN as a marker."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {k: norm(v) for k, v in value}
    if isinstance(value, list) and value and all(isinstance(v, dict) and set(v) == {"key", "value"} for v in value):
        return {v["key"]: norm(v["value"]) for v in value}  # a map read by an engine without maps
    if isinstance(value, list | tuple):
        return [norm(v) for v in value]
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    return value


def read_back(db: Any, table: str, engine_name: str) -> dict[str, list[Any]]:
    rows = db.sql(f"SELECT * FROM {table} ORDER BY _row", engine=engine_name).arrow().to_pylist()
    return {name: [norm(r[name]) for r in rows] for name in rows[0]}


def wide_table(cases: list[Case]) -> pa.Table:
    return pa.table({"_row": pa.array(range(2), pa.int64()), **{c.name: c.data for c in cases}})


SOURCES: dict[str, Callable[[pa.Table, Path], Any]] = {
    "arrow": lambda table, _: table,
    "arrow_stream": lambda table, _: table.to_reader(max_chunksize=1),
    "parquet": lambda table, tmp: (pq.write_table(table, tmp / "in.parquet"), str(tmp / "in.parquet"))[1],
    "arrow_ipc": lambda table, tmp: (feather.write_feather(table, tmp / "in.arrow"), str(tmp / "in.arrow"))[1],
}


@pytest.fixture(scope="module")
def typed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One table per typed source, each holding every row of the type table."""
    work = tmp_path_factory.mktemp("types")
    with engine.Database(work / "data", create=True) as db:
        for source, make in SOURCES.items():
            db.ingest(make(wide_table(TYPED), work), table=f"t_{source}")
    return work / "data"


@pytest.mark.parametrize("source", list(SOURCES))
def test_typed_sources_store_each_type_as_the_table_says(typed_dir: Path, source: str) -> None:
    types = delta_types(typed_dir / f"t_{source}")
    assert types == {"_row": "long"} | {c.name: c.delta for c in TYPED}


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_typed_sources_read_back_the_same_values(typed_dir: Path, source: str, engine_name: str) -> None:
    with engine.Database(typed_dir) as db:
        got = read_back(db, f"t_{source}", engine_name)
    mismatched = {c.name: (got[c.name], norm(expected(c))) for c in TYPED if got[c.name] != norm(expected(c))}
    assert not mismatched


# -- pandas and Polars, with their own dtypes --------------------------------------------------

PANDAS = {
    "u8": (pd.Series([0, 255], dtype="uint8"), "short", [0, 255]),
    "u64": (pd.Series([0, 2**63 - 1], dtype="uint64"), "long", [0, 2**63 - 1]),
    "nullable": (pd.array([1, None], dtype="Int64"), "long", [1, None]),
    "f32": (pd.Series([1.5, float("nan")], dtype="float32"), "float", [1.5, None]),  # pandas' NaN is its null
    "utc": (pd.to_datetime(["2026-11-30T10:00:00.123456Z", None]), "timestamp", [INSTANT, None]),
    "paris_ns": (
        pd.to_datetime(["2026-11-30T11:00:00.123456+01:00", None]).as_unit("ns").tz_convert("Europe/Paris"),
        "timestamp",
        [INSTANT, None],
    ),
    "naive_ns": (pd.to_datetime(["2026-11-30T10:00:00.123456", None]).as_unit("ns"), "timestamp_ntz", [NAIVE, None]),
    "cat": (pd.Categorical(["a", None]), "string", ["a", None]),
    "text": (pd.Series(["x", None], dtype="string"), "string", ["x", None]),
    "obj_date": ([dt.date(2026, 11, 30), None], "date", [dt.date(2026, 11, 30), None]),
    "all_none": ([None, None], "string", [None, None]),
    "flag": ([True, False], "boolean", [True, False]),
}
POLARS = {
    "u32": (pl.Series([0, 2**32 - 1], dtype=pl.UInt32), "long", [0, 2**32 - 1]),
    "i16": (pl.Series([-1, 1], dtype=pl.Int16), "short", [-1, 1]),
    "cat": (pl.Series(["a", None], dtype=pl.Categorical), "string", ["a", None]),
    "enum": (pl.Series(["b", "a"], dtype=pl.Enum(["a", "b"])), "string", ["b", "a"]),
    "time": (pl.Series([dt.time(10, 30), None]), "string", ["10:30:00", None]),
    "ny": (
        pl.Series([NAIVE - dt.timedelta(hours=5), None]).dt.replace_time_zone("America/New_York"),
        "timestamp",
        [INSTANT, None],
    ),
    "ns": (pl.Series([NAIVE, None], dtype=pl.Datetime("ns")), "timestamp_ntz", [NAIVE, None]),
    "ms_tz": (
        pl.Series([NAIVE.replace(microsecond=123000), None], dtype=pl.Datetime("ms", "UTC")),
        "timestamp",
        [INSTANT.replace(microsecond=123000), None],
    ),
    "dec": (pl.Series(["1.25", None]).str.to_decimal(scale=2), "decimal(38,2)", [decimal.Decimal("1.25"), None]),
    "arr": (pl.Series([[1, 2], None], dtype=pl.Array(pl.Int64, 2)), "array<long>", [[1, 2], None]),
    "lst": (pl.Series([["x"], []]), "array<string>", [["x"], []]),
    "st": (pl.Series([{"a": 1}, None]), "struct<a: long>", [{"a": 1}, None]),
    "null": (pl.Series([None, None], dtype=pl.Null), "string", [None, None]),
    "bin": (pl.Series([b"x", None]), "binary", [b"x", None]),
    "date": (pl.Series([dt.date(2026, 11, 30), None]), "date", [dt.date(2026, 11, 30), None]),
}


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("frames")
    with engine.Database(work / "data", create=True) as db:
        db.ingest(pd.DataFrame({"_row": [0, 1], **{k: v[0] for k, v in PANDAS.items()}}), table="t_pandas")
        db.ingest(
            pl.DataFrame([pl.Series("_row", [0, 1]), *(v[0].alias(k) for k, v in POLARS.items())]), table="t_polars"
        )
    return work / "data"


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
@pytest.mark.parametrize(("table", "cases"), [("t_pandas", PANDAS), ("t_polars", POLARS)])
def test_frames_store_and_read_back(frames_dir: Path, table: str, cases: dict, engine_name: str) -> None:
    assert delta_types(frames_dir / table) == {"_row": "long"} | {k: v[1] for k, v in cases.items()}
    with engine.Database(frames_dir) as db:
        got = read_back(db, table, engine_name)
    assert {k: got[k] for k in cases} == {k: norm(v[2]) for k, v in cases.items()}


# -- text: CSV and NDJSON --------------------------------------------------------------------

TEXT = {  # column: (CSV/NDJSON text of the two rows, Delta type, values)
    "i": (["-9223372036854775807", "7"], "long", [-(2**63) + 1, 7]),
    "f": (["1.5", "-2e300"], "double", [1.5, -2e300]),
    "b": (["true", "false"], "boolean", [True, False]),
    "d": (["2026-11-30", "1999-01-31"], "date", [dt.date(2026, 11, 30), dt.date(1999, 1, 31)]),
    "t": (["10:30:00", "23:59:59.5"], "string", ["10:30:00", "23:59:59.5"]),
    "naive": (["2026-11-30 10:00:00.123456", "2026-11-30 10:00:00.123456"], "timestamp_ntz", [NAIVE, NAIVE]),
    "zulu": (["2026-11-30T10:00:00.123456Z", "2026-11-30 10:00:00.123456+00:00"], "timestamp", [INSTANT, INSTANT]),
    "offset": (
        ["2026-11-30T11:00:00.123456+01:00", "2026-11-30T04:15:00.123456-05:45"],
        "timestamp",
        [INSTANT, INSTANT],
    ),
    "s": (["x", "ünï 💡"], "string", ["x", "ünï 💡"]),
}


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("text")
    rows = [{"_row": str(i), **{k: v[0][i] for k, v in TEXT.items()}} for i in range(2)]
    csv = "\n".join(",".join(r.values()) for r in [{k: k for k in rows[0]}, *rows]) + "\n"
    (work / "in.csv").write_text(csv)
    lines = [{**r, "_row": int(r["_row"]), "i": int(r["i"]), "f": float(r["f"]), "b": r["b"] == "true"} for r in rows]
    (work / "in.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with engine.Database(work / "data", create=True) as db:
        db.ingest(str(work / "in.csv"), table="t_csv")
        db.ingest(str(work / "in.ndjson"), table="t_ndjson")
    return work / "data"


@pytest.mark.parametrize("engine_name", ["duckdb", "polars"])
@pytest.mark.parametrize("table", ["t_csv", "t_ndjson"])
def test_text_sources_store_and_read_back(text_dir: Path, table: str, engine_name: str) -> None:
    assert delta_types(text_dir / table) == {"_row": "long"} | {k: v[1] for k, v in TEXT.items()}
    with engine.Database(text_dir) as db:
        got = read_back(db, table, engine_name)
    assert {k: got[k] for k in TEXT} == {k: v[2] for k, v in TEXT.items()}


@pytest.mark.slow
def test_spark_reads_every_stored_type(typed_dir: Path, frames_dir: Path, text_dir: Path, spark_remote: str) -> None:
    """One Spark session for every table above: the values Spark reads equal DuckDB's."""
    from engine.config import load_settings

    settings = load_settings(environ={"COLONNADE_SPARK_REMOTE": spark_remote})
    checked = 0
    for data_dir, table in [
        (typed_dir, "t_parquet"),
        (frames_dir, "t_pandas"),
        (frames_dir, "t_polars"),
        (text_dir, "t_csv"),
    ]:
        with engine.Database(data_dir, settings=settings) as db:
            duck = read_back(db, table, "duckdb")
            spark = read_back(db, table, "spark")
        assert spark == duck, {k: (spark[k], duck[k]) for k in duck if spark.get(k) != duck[k]}
        checked += len(duck)
    assert checked > 60


# -- what Delta cannot hold ------------------------------------------------------------------


def table_files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with engine.Database(tmp_path / "data", create=True) as database:
        database.ingest(
            pa.table({"_row": [0], "naive": pa.array([0], ts("us")), "zoned": pa.array([0], ts("us", "UTC"))}),
            table="t",
        )
        yield database


@pytest.mark.parametrize(("name", "data", "says"), REFUSED, ids=[r[0] for r in REFUSED])
@pytest.mark.parametrize("source", ["arrow", "parquet"])
def test_a_type_delta_cannot_hold_is_refused_naming_column_and_type(
    db: Any, tmp_path: Path, name: str, data: pa.Array, says: str, source: str
) -> None:
    if source == "parquet" and says in ("interval", "union"):
        pytest.skip("pyarrow cannot write this type to Parquet")
    before = table_files(db.catalog.data_dir / "t")
    table = pa.table({"_row": [1], name: data})
    with pytest.raises(UnsupportedType) as err:
        db.ingest(SOURCES[source](table, tmp_path), table="t", schema_evolution="add-columns")
    assert f"column {name!r}" in err.value.detail and says in err.value.detail and "\n" not in err.value.detail
    assert table_files(db.catalog.data_dir / "t") == before
    with pytest.raises(UnsupportedType):
        db.ingest(SOURCES[source](table, tmp_path), table="fresh")
    assert not (db.catalog.data_dir / "fresh").exists()


VALUE_REFUSED = [
    ("u64_above_signed", pa.array([1, 2**63], pa.uint64()), "9223372036854775808"),
    ("ns_with_nanos", pa.array([1_000_000_001], ts("ns")), "1970-01-01 00:00:01.000000001"),
    ("ns_tz_with_nanos", pa.array([1_000_000_001], ts("ns", "Asia/Tokyo")), "00:00:01.000000001"),
    ("list_u64", pa.array([[1], [2**64 - 1]], pa.list_(pa.uint64())), "18446744073709551615"),
]


@pytest.mark.parametrize(("name", "data", "says"), VALUE_REFUSED, ids=[r[0] for r in VALUE_REFUSED])
def test_a_value_that_would_change_refuses_the_ingest(db: Any, name: str, data: pa.Array, says: str) -> None:
    before = table_files(db.catalog.data_dir / "t")
    table = pa.table({"_row": pa.array(range(len(data)), pa.int64()), name: data})
    with pytest.raises(BadRow) as err:
        db.ingest(table, table="t", schema_evolution="add-columns")
    assert f"column {name!r}" in err.value.detail and says in err.value.detail and "\n" not in err.value.detail
    assert table_files(db.catalog.data_dir / "t") == before


ZONE_CLASHES = [  # (column, input column, says)
    ("naive", pa.array([0], ts("us", "Europe/Paris")), "without a time zone (timestamp_ntz) in the table"),
    ("zoned", pa.array([0], ts("ms")), "with a time zone (UTC) in the table"),
    ("naive", pa.array([0], ts("ns", "UTC")), "without a time zone"),
]


@pytest.mark.parametrize(("column", "data", "says"), ZONE_CLASHES)
@pytest.mark.parametrize("source", ["arrow", "parquet"])
def test_zone_aware_and_naive_timestamps_never_mix(
    db: Any, tmp_path: Path, column: str, data: pa.Array, says: str, source: str
) -> None:
    before = table_files(db.catalog.data_dir / "t")
    with pytest.raises(SchemaMismatch, match=re.escape(says)):
        db.ingest(
            SOURCES[source](pa.table({"_row": [1], column: data}), tmp_path), table="t", schema_evolution="add-columns"
        )
    assert table_files(db.catalog.data_dir / "t") == before


@pytest.mark.parametrize(
    ("fmt", "column", "text", "says"),
    [
        (
            "csv",
            "naive",
            "2026-11-30T10:00:00+02:00",
            "has a time zone, but the timestamps of column 'naive' have none",
        ),
        ("csv", "naive", "2026-11-30 10:00:00 Europe/Paris", "has a time zone"),
        ("csv", "zoned", "2026-11-30 10:00:00", "has no time zone, but the timestamps of column 'zoned' have one"),
        (
            "ndjson",
            "naive",
            "2026-11-30T10:00:00Z",
            "line 2: column 'naive': timestamp \"2026-11-30T10:00:00Z\" has a time zone",
        ),
        (
            "ndjson",
            "zoned",
            "2026-11-30 10:00",
            "line 2: column 'zoned': timestamp \"2026-11-30 10:00\" has no time zone",
        ),
    ],
)
@pytest.mark.parametrize("on_error", ["fail", "quarantine"])
def test_text_timestamps_must_match_the_columns_zone(
    db: Any, tmp_path: Path, fmt: str, column: str, text: str, says: str, on_error: str
) -> None:
    """A zone on one late value in a naive column (or none in a zoned one) is found wherever it
    is, not only in the sniffer's sample; DuckDB alone would drop the zone silently."""
    good = {"naive": "2026-11-30 10:00:00", "zoned": "2026-11-30T10:00:00Z"}[column]
    path = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        path.write_text(f"_row,{column}\n" + "".join(f"{i},{good}\n" for i in range(3000)) + f"9,{text}\n")
    else:
        path.write_text(json.dumps({"_row": 1, column: good}) + "\n" + json.dumps({"_row": 2, column: text}) + "\n")
    before = table_files(db.catalog.data_dir / "t")
    options = {"on_error": f"quarantine={tmp_path / 'bad.csv'}"} if on_error == "quarantine" else {}
    if on_error == "quarantine" and fmt == "ndjson":  # NDJSON quarantines the line, with its reason
        summary = db.ingest(str(path), table="t", schema_evolution="add-columns", **options)
        assert (summary.rows, summary.rejected) == (1, 1)
        [bad] = pa.csv.read_csv(tmp_path / "bad.csv").to_pylist()
        assert (bad["line"], bad["column"]) == (2, column) and says.split(": ", 2)[2] in bad["reason"]
        return
    with pytest.raises(BadRow, match=re.escape(says)):
        db.ingest(str(path), table="t", schema_evolution="add-columns", **options)
    assert table_files(db.catalog.data_dir / "t") == before


def test_a_bad_csv_timestamp_still_names_its_line(db: Any, tmp_path: Path) -> None:
    """Text timestamps are parsed after the read (to check their zone); a value that is no
    timestamp at all is still located to its line."""
    (tmp_path / "in.csv").write_text("_row,naive\n1,2026-11-30 10:00:00\n2,not a time\n")
    with pytest.raises(BadRow, match=r"in.csv: line 3: column 'naive'"):
        db.ingest(str(tmp_path / "in.csv"), table="t", schema_evolution="add-columns")


def test_ndjson_mixed_types_are_plain_text(tmp_path: Path) -> None:
    """A field mixing types is a string column holding each plain value, never JSON text."""
    (tmp_path / "in.ndjson").write_text('{"id": 1, "v": "x"}\n{"id": "x", "v": 2.5}\n{"id": true, "v": null}\n')
    with engine.Database(tmp_path / "data", create=True) as db:
        db.ingest(str(tmp_path / "in.ndjson"), table="m")
        assert delta_types(tmp_path / "data" / "m") == {"id": "string", "v": "string"}
        assert db.sql("SELECT id, length(id), v FROM m ORDER BY id").fetchall() == [
            ("1", 1, "x"),
            ("true", 4, None),
            ("x", 1, "2.5"),
        ]
        (tmp_path / "more.ndjson").write_text('{"id": 5, "v": "y"}\n')  # numbers into the text column: text
        db.ingest(str(tmp_path / "more.ndjson"), table="m")
        assert db.sql("SELECT id FROM m WHERE v = 'y'").fetchall() == [("5",)]
        db.ingest(pa.table({"id": pa.array([1], pa.int64())}), table="n")
        with pytest.raises(BadRow, match=r"line 2: column 'id': cannot convert \"x\" to BIGINT"):
            db.ingest(str(tmp_path / "in.ndjson"), table="n", schema_evolution="add-columns")


def test_frames_that_arrow_cannot_take_fail_in_one_line(tmp_path: Path) -> None:
    with engine.Database(tmp_path / "data", create=True) as db:
        with pytest.raises(ColonnadeError) as err:
            db.ingest(pd.DataFrame({"x": [1, "a"]}), table="p")
        assert "\n" not in err.value.detail and "x" in err.value.detail
        with pytest.raises(UnsupportedType, match=r"column 'td' is duration\[us\]"):
            db.ingest(pd.DataFrame({"td": pd.to_timedelta(["1s"])}), table="p")
        with pytest.raises(UnsupportedType, match=r"column 'd' is duration\[us\]"):
            db.ingest(pl.DataFrame({"d": [dt.timedelta(1)]}), table="p")
        with pytest.raises(UnsupportedType, match="Polars frame cannot be converted"):
            db.ingest(pl.DataFrame({"i": pl.Series([1], dtype=pl.Int128)}), table="p")
        assert db.tables() == []


def test_the_documented_table_covers_every_tested_family() -> None:
    """Each row of TYPE_TABLE names types this file ingests (or refuses), and the README shows it."""
    tested = " ".join([f"{c.name} {c.data.type}" for c in TYPED] + [r[2] for r in REFUSED] + ["uuid", "null", "CSV"])
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for rule in TYPE_TABLE:
        first = rule.arrow.split(",")[0].split("(")[0].split("<")[0].split("/")[0].strip()
        assert first.split()[0] in tested, rule
        assert f"| {rule.arrow} | {rule.delta} | {rule.how} |" in readme, rule


CLI_REFUSALS = [  # (input file, what it holds, says)
    ("dur.parquet", pa.table({"_row": [1], "d": pa.array([1], pa.duration("s"))}), "column 'd' is duration[s]"),
    ("big.parquet", pa.table({"_row": [1], "u": pa.array([2**64 - 1], pa.uint64())}), "18446744073709551615"),
    ("nanos.parquet", pa.table({"_row": [1], "naive": pa.array([1], ts("ns"))}), "00:00:00.000000001"),
    ("zoned.parquet", pa.table({"_row": [1], "naive": pa.array([1], ts("us", "UTC"))}), "(timestamp_ntz) in the table"),
    ("naive.parquet", pa.table({"_row": [1], "zoned": pa.array([1], ts("us"))}), "(UTC) in the table but has none"),
]


@pytest.mark.parametrize(("name", "table", "says"), CLI_REFUSALS, ids=[c[0] for c in CLI_REFUSALS])
def test_refusals_are_one_line_from_the_cli(db: Any, tmp_path: Path, name: str, table: pa.Table, says: str) -> None:
    import os
    import subprocess
    import sys

    pq.write_table(table, tmp_path / name)
    before = table_files(db.catalog.data_dir / "t")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    cmd = [str(Path(sys.executable).parent / "colonnade"), "ingest", str(tmp_path / name), "--table", "t"]
    cmd += ["--data", str(db.catalog.data_dir), "--schema-evolution", "add-columns"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr and done.stdout == ""
    assert table_files(db.catalog.data_dir / "t") == before
