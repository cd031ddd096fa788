"""The pure functions the request path leans on, each held to a property over generated input
(the end-to-end tests reach them only through a server): content negotiation, sizes, the
ingest's safe widenings (checked against DuckDB's own casts), the result cache (against a
model), the /rows compiler (user text is only ever a bound parameter), and the HTTP status of
every engine error.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.cache import ResultCache
from api.problems import STATUS, problem_of, status_of
from engine.config import parse_size
from engine.errors import ERRORS_BY_CODE, ColonnadeError, ConfigError, NotAcceptable, from_problem
from engine.formats import FORMATS, MEDIA_TYPES, negotiate
from engine.ingest.plan import widens
from engine.rest import compile_rest

# -- negotiate ---------------------------------------------------------------------------------

MEDIA = st.one_of(
    st.sampled_from([*MEDIA_TYPES.values(), "*/*", "text/*", "application/*", "text/plain", "image/png", ""]),
    st.text(max_size=12),
)
QVALUES = st.one_of(
    st.none(),
    st.sampled_from(["0", "0.5", "1", "1.000", "0.001", "nan", "inf", "-1", "2", "1e3", "", "x"]),
    st.text(max_size=5),
)


def accept_header(ranges: list[tuple[str, str | None]]) -> str:
    return ", ".join(media if q is None else f"{media};q={q}" for media, q in ranges)


@settings(max_examples=400, derandomize=True)
@given(st.lists(st.tuples(MEDIA, QVALUES), max_size=6))
def test_negotiate_answers_a_format_or_406_for_any_accept(ranges: list[tuple[str, str | None]]) -> None:
    try:
        assert negotiate(None, accept_header(ranges)) in FORMATS
    except NotAcceptable as exc:
        assert exc.code == "not_acceptable"


@settings(max_examples=200, derandomize=True)
@given(
    st.permutations(list(MEDIA_TYPES.items())),
    st.lists(st.sampled_from(["0.1", "0.2", "0.3", "0.4", "0.5"]), min_size=5, max_size=5, unique=True),
)
def test_negotiate_picks_the_highest_quality_whatever_the_order(
    formats: list[tuple[str, str]], qualities: list[str]
) -> None:
    ranges = [(media, q) for (_, media), q in zip(formats, qualities, strict=True)]
    best = max(zip(formats, qualities, strict=True), key=lambda pair: float(pair[1]))[0][0]
    for order in itertools.islice(itertools.permutations(ranges), 6):
        assert negotiate(None, accept_header(list(order))) == best


@pytest.mark.parametrize("q", ["0", "0.000", "nan", "-1", "2", "inf", "1e3"])
def test_a_range_of_quality_zero_or_invalid_is_never_chosen(q: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(None, f"text/csv;q={q}")
    assert negotiate(None, f"text/csv;q={q}, application/x-ndjson;q=0.1") == "ndjson"


@given(st.sampled_from(FORMATS), st.text(max_size=30))
def test_the_format_parameter_wins_over_accept(fmt: str, accept: str) -> None:
    assert negotiate(fmt.upper(), accept) == fmt


# -- parse_size --------------------------------------------------------------------------------

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@given(st.integers(0, 10**6), st.sampled_from(sorted(UNITS)), st.booleans())
def test_parse_size_scales_by_its_unit(number: int, unit: str, lower: bool) -> None:
    text = f"{number} {unit.lower() if lower else unit}"
    assert parse_size(text) == number * UNITS[unit]


@given(st.integers(0, 100), st.integers(1, 2**40))
def test_parse_size_takes_a_share_of_the_total(percent: int, total: int) -> None:
    assert parse_size(f"{percent}%", total=total) == int(total * percent / 100)


@given(st.text(max_size=12))
def test_parse_size_refuses_what_is_not_a_size_by_name(text: str) -> None:
    try:
        size = parse_size(text, total=1000)
    except ConfigError as exc:
        assert repr(text) in exc.detail
    else:
        assert size >= 0 and isinstance(size, int)


# -- widens: checked against DuckDB's casts ----------------------------------------------------

# The values at the edges of each type: if a widening is safe, DuckDB converts every one of
# them there and back unchanged.
EDGES = {
    "TINYINT": ["-128", "127", "0"],
    "SMALLINT": ["-32768", "32767"],
    "INTEGER": ["-2147483648", "2147483647", "16777217"],
    "BIGINT": ["-9223372036854775808", "9223372036854775807", "9007199254740993"],
    "FLOAT": ["3.4028235e38", "1.0e-45", "-0.1"],
    "DOUBLE": ["1.7976931348623157e308", "4.9e-324", "0.1"],
    "DECIMAL(4,2)": ["99.99", "-99.99", "0.01"],
    "DECIMAL(10,2)": ["99999999.99", "-0.01"],
    "DECIMAL(12,2)": ["9999999999.99"],
    "DECIMAL(10,4)": ["999999.9999", "0.0001"],
    "DECIMAL(18,0)": ["999999999999999999"],
    "DECIMAL(38,10)": ["9999999999999999999999999999.9999999999"],
    "DATE": ["'5877641-06-25'", "'1970-01-01'", "'2024-02-29'"],
    "TIMESTAMP": ["'2024-02-29 23:59:59.999999'", "'1970-01-01 00:00:00'"],
    "VARCHAR": ["'x'", "'12'"],
    "BOOLEAN": ["true"],
}


def round_trips(con: duckdb.DuckDBPyConnection, have: str, want: str) -> bool:
    """Every edge value comes back equal, or the cast refuses it loudly (as the ingest's CAST
    does: a DATE past year 294,247 has no TIMESTAMP) — never a changed value."""
    for v in EDGES[have]:
        try:
            row = con.execute(f"SELECT CAST(CAST(CAST({v} AS {have}) AS {want}) AS {have}) = CAST({v} AS {have})")
        except (duckdb.ConversionException, duckdb.OutOfRangeException):
            continue
        if not row.fetchone()[0]:  # type: ignore[index]
            return False
    return True


@pytest.mark.parametrize(("have", "want"), [(a, b) for a in EDGES for b in EDGES if a != b])
def test_a_widening_keeps_every_value_duckdb_can_hold(have: str, want: str) -> None:
    """Sound: whatever ``widens`` allows converts every edge value exactly."""
    if widens(have, want):
        with duckdb.connect() as con:
            assert round_trips(con, have, want), f"{have} -> {want} is called safe but loses a value"


def test_the_widenings_are_the_expected_ones() -> None:
    """Not vacuous: integers widen up, into wide enough decimals and doubles; dates into timestamps."""
    allowed = {(a, b) for a in EDGES for b in EDGES if a != b and widens(a, b)}
    assert ("INTEGER", "BIGINT") in allowed and ("BIGINT", "INTEGER") not in allowed
    assert ("INTEGER", "DOUBLE") in allowed and ("BIGINT", "DOUBLE") not in allowed
    assert ("DECIMAL(10,2)", "DECIMAL(12,2)") in allowed and ("DECIMAL(10,2)", "DECIMAL(10,4)") not in allowed
    assert ("DATE", "TIMESTAMP") in allowed and ("TIMESTAMP", "DATE") not in allowed
    assert not any(have in ("VARCHAR", "DOUBLE", "BOOLEAN") for have, _ in allowed)


# -- the result cache, against a model ---------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcdef"), st.integers(0, 40)),
        st.tuples(st.just("get"), st.sampled_from("abcdef"), st.just(0)),
        st.tuples(st.just("tick"), st.just(""), st.integers(0, 7)),
    ),
    max_size=60,
)


@settings(max_examples=300, derandomize=True)
@given(OPS, st.integers(8, 120), st.integers(1, 10))
def test_the_result_cache_is_a_byte_bounded_lru_with_a_ttl(
    ops: list[tuple[str, str, int]], max_bytes: int, ttl_s: int
) -> None:
    now = [0.0]
    cache = ResultCache(max_bytes, ttl_s, clock=lambda: now[0])
    model: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key → (body, stored at)
    for op, key, n in ops:
        if op == "tick":
            now[0] += n
        elif op == "put":
            body = bytes([n % 256]) * n
            cache.put(key, body, "text/csv", 1.0)
            if len(body) <= max_bytes // 8:  # larger entries are not cached at all
                model.pop(key, None)
                model[key] = (body, now[0])
                while sum(len(b) for b, _ in model.values()) > max_bytes:
                    model.popitem(last=False)
        else:
            hit = cache.get(key)
            expected = model.get(key)
            if expected is not None and now[0] - expected[1] > ttl_s:
                del model[key]
                expected = None
            if expected is not None:
                model.move_to_end(key)
            assert (hit.body if hit else None) == (expected[0] if expected else None), (op, key)
        assert cache.size_bytes == sum(len(b) for b, _ in model.values()) <= max_bytes


# -- /rows: user text is a parameter, never SQL ------------------------------------------------

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("price", pa.float64())])
OPERATORS = ["eq", "neq", "lt", "lte", "gt", "gte", "like", "ilike"]


@settings(max_examples=300, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(["name", "id", "price"]), st.sampled_from(OPERATORS), st.text(min_size=1)),
        max_size=4,
    )
)
def test_rows_filters_bind_every_value_as_a_parameter(filters: list[tuple[str, str, str]]) -> None:
    """The SQL text does not depend on the values at all: they are only ever parameters."""
    try:
        compiled = compile_rest("t", SCHEMA, [(column, f"{op}.{value}") for column, op, value in filters])
    except ColonnadeError as exc:
        assert exc.client_error, repr(exc)
        return
    plain = compile_rest("t", SCHEMA, [(column, f"{op}.1") for column, op, _ in filters])
    assert compiled.sql == plain.sql
    assert len(compiled.params) == len(filters)


# -- error statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ERRORS_BY_CODE.values(), ids=list(ERRORS_BY_CODE))
def test_every_error_has_a_status_that_agrees_with_whose_fault_it_is(cls: type[ColonnadeError]) -> None:
    status = status_of(cls)
    assert 400 <= status < 600, status
    assert (status < 500) == cls.client_error, f"{cls.__name__}: {status} but client_error={cls.client_error}"


def test_the_status_table_names_only_engine_errors_and_their_base() -> None:
    assert all(issubclass(cls, ColonnadeError) for cls in STATUS)
    assert ColonnadeError in STATUS  # so every class, a future one too, resolves to a status


@pytest.mark.parametrize("cls", ERRORS_BY_CODE.values(), ids=list(ERRORS_BY_CODE))
def test_a_problem_turns_back_into_the_same_error(cls: type[ColonnadeError]) -> None:
    """What the remote client raises for a server's problem+json body: class, detail, extras."""
    error = cls("détail «x»", table="t", position=3)
    again = from_problem(problem_of(error))
    assert type(again) is cls and again.detail == error.detail and again.extra == error.extra


# -- the Arrow encoder -------------------------------------------------------------------------

ARROW_SAMPLE = pa.table(
    {
        "d": pa.array(["a", "b", "a", None] * 64).dictionary_encode(),
        "l": pa.array([[1, 2], [], None, [3]] * 64, pa.list_(pa.int32())),
        "s": pa.array(["x" * i + "é" for i in range(256)]),
        "st": pa.array([{"k": i, "v": str(i)} for i in range(256)]),
        "f": pa.array([float("inf"), -0.0, 1e308, None] * 64),
        "b": pa.array([True, None, False, True] * 64),
    }
)


@settings(max_examples=100, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 256), st.integers(1, 300)), min_size=1, max_size=4))
def test_the_arrow_encoder_keeps_buffers_without_changing_a_byte(parts: list[tuple[int, int, int]]) -> None:
    """It keeps the IPC writer's buffers instead of copying them: the stream must be the same
    bytes as the copying sink's, and read back whole after the batches it came from are gone."""
    from engine import formats

    batches = [b for start, n, size in parts for b in ARROW_SAMPLE.slice(start, n).to_batches(max_chunksize=size)]
    expected = pa.Table.from_batches(batches, schema=ARROW_SAMPLE.schema)
    schema = ARROW_SAMPLE.schema

    copying = formats._writer_stream(
        lambda s: pa.ipc.new_stream(s, schema), formats.steps(iter(batches)), None, "Arrow"
    )
    copied = b"".join(copying)
    kept = list(formats.encode_arrow(schema, iter(list(batches)), max_bytes=None))
    assert b"".join(kept) == copied
    del batches
    assert pa.ipc.open_stream(b"".join(kept)).read_all().to_pylist() == expected.to_pylist()


# -- the query log and the metrics' flush --------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(bursts=st.lists(st.integers(0, 60), min_size=1, max_size=4))
def test_the_query_log_writes_every_line_in_order_in_few_writes(bursts: list[int]) -> None:
    """Lines queued as a server queues them — one per request, a fraction of a millisecond
    apart — all reach stderr, in order, whole, by the time the log closes, in at most one write
    per gathering window: the writer is not woken per line."""
    import io
    import json
    import sys
    import time

    from api.operations import QueryLog

    writes: list[str] = []

    class Capture(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    stderr, sys.stderr = sys.stderr, Capture()
    bound = n = 0
    try:
        log = QueryLog()
        for burst in bursts:
            started = time.monotonic()
            for _ in range(burst):
                log.write({"n": n})
                n += 1
                time.sleep(0.0005)
            # however slow the machine made the burst: one write per window it spanned, at most
            bound += int((time.monotonic() - started) / QueryLog.GATHER_S) + 2
            time.sleep(2 * QueryLog.GATHER_S)
        log.close()
    finally:
        sys.stderr = stderr
    lines = "".join(writes).splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(n))
    assert len(writes) <= bound, (len(writes), bound)


@settings(max_examples=50, deadline=None)
@given(
    finished=st.lists(
        st.tuples(
            st.sampled_from(["duckdb", "polars"]),
            st.sampled_from(["json", "csv"]),
            st.sampled_from(["ok", "query_timeout"]),
            st.integers(0, 5),
            st.integers(0, 10_000),
            st.sampled_from([None, "hit", "miss"]),
        ),
        max_size=40,
    )
)
def test_a_metrics_flush_counts_every_query_once(finished: list[tuple]) -> None:
    """Summing before the counters are touched loses nothing: every counter equals the model's."""
    from api.metrics import Metrics

    metrics = Metrics()  # without PROMETHEUS_MULTIPROC_DIR: a registry of its own
    for engine, fmt, outcome, rows, sent, cache in finished:
        line = {"ms": 1.0, "rows": rows, "bytes": sent, "cache": cache}
        metrics.query_finished(engine, fmt, outcome, line)
    metrics.flush()
    assert metrics._registry is not None

    def sample(name: str, **labels: str) -> float:
        return metrics._registry.get_sample_value(name, labels) or 0.0

    for engine in ("duckdb", "polars"):
        mine = [f for f in finished if f[0] == engine]
        for outcome in ("ok", "query_timeout"):
            want = sum(1 for f in mine if f[2] == outcome)
            assert sample("colonnade_queries_total", engine=engine, outcome=outcome) == want
        assert sample("colonnade_result_rows_total", engine=engine) == sum(f[3] for f in mine)
        for fmt in ("json", "csv"):
            assert sample("colonnade_result_bytes_total", engine=engine, format=fmt) == sum(
                f[4] for f in mine if f[1] == fmt
            )
        assert sample("colonnade_query_seconds_count", engine=engine) == len(mine)
    for cache in ("hit", "miss"):
        assert sample("colonnade_cache_requests_total", result=cache) == sum(1 for f in finished if f[5] == cache)
