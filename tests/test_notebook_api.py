"""The notebook API as SPEC shows it: ``engine.connect`` → tables/schema/sql → arrow/pl/df/reader,
HTML rendering, timeouts that stop DuckDB, and cancellation through ``Result``."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.backends.base import _TIMEOUTS, INTERRUPT_EVERY_S, QueryControl, _Timeouts
from engine.demo import TPCH_TABLES
from engine.errors import ColonnadeError, QueryCancelled, QueryTimeout, ResultConsumed, TableNotFound

ENGINES = ("duckdb", "polars")
# ~3.6 billion row pairs: about 30 s on two cores, so any stop well under that is the engine's doing.
HEAVY = "SELECT count(*) FROM lineitem a, lineitem b WHERE hash(a.l_comment, b.l_comment) % 1000 = 7"
HEAVY_STREAM = (
    "SELECT a.l_orderkey, b.l_partkey FROM lineitem a, lineitem b WHERE hash(a.l_comment, b.l_comment) % 1000 = 7"
)


@pytest.fixture(scope="module")
def nb(tpch_dir: Path) -> Iterator[engine.Database]:
    """A notebook-style connection of its own, so timeouts here never disturb other tests."""
    db = engine.connect(str(tpch_dir))
    yield db
    db.close()


def test_connect_opens_a_data_dir(nb: engine.Database, tpch_dir: Path) -> None:
    assert isinstance(nb, engine.Database)
    assert nb.catalog.data_dir == tpch_dir.resolve()
    assert nb.tables() == sorted(TPCH_TABLES)


def test_schema_is_arrow(nb: engine.Database) -> None:
    schema = nb.schema("orders")
    assert isinstance(schema, pa.Schema)
    assert schema.field("o_orderkey").type == pa.int64()
    assert schema.field("o_orderdate").type == pa.date32()
    assert pa.types.is_decimal(schema.field("o_totalprice").type)
    assert nb.schema("ORDERS") == schema  # SQL names are case-insensitive
    with pytest.raises(TableNotFound):
        nb.schema("no_such_table")


@pytest.mark.parametrize("engine_name", ENGINES)
def test_result_as_arrow_polars_pandas(nb: engine.Database, engine_name: str) -> None:
    sql = "SELECT n_nationkey, n_name FROM nation WHERE n_regionkey = ? ORDER BY n_nationkey"
    table = nb.sql(sql, params=[2], engine=engine_name).arrow()
    frame = nb.sql(sql, params=[2], engine=engine_name).pl()
    pandas = nb.sql(sql, params=[2], engine=engine_name).df()
    assert isinstance(table, pa.Table) and isinstance(frame, pl.DataFrame) and isinstance(pandas, pd.DataFrame)
    assert table.column_names == frame.columns == list(pandas.columns) == ["n_nationkey", "n_name"]
    assert table.num_rows == 5
    assert frame.to_dicts() == table.to_pylist() == pandas.to_dict("records")


@pytest.mark.parametrize("engine_name", ENGINES)
def test_arrow_is_kept_for_later_calls(nb: engine.Database, engine_name: str) -> None:
    result = nb.sql("SELECT r_name FROM region", engine=engine_name)
    first = result.arrow()
    assert result.arrow() is first
    assert result.pl().height == result.df().shape[0] == 5
    assert result.reader().read_all() == first


@pytest.mark.parametrize("engine_name", ENGINES)
def test_reader_streams_batches(nb: engine.Database, engine_name: str) -> None:
    total = nb.sql("SELECT count(*) FROM lineitem").fetchall()[0][0]
    result = nb.execute("SELECT l_orderkey, l_comment FROM lineitem", engine=engine_name, batch_rows=5_000)
    reader = result.reader()
    assert isinstance(reader, pa.RecordBatchReader)
    assert reader.schema == result.schema
    sizes = [batch.num_rows for batch in reader]
    assert sum(sizes) == total
    assert len(sizes) >= total // 5_000 and max(sizes) <= 5_000
    with pytest.raises(ResultConsumed):  # a streamed result is not kept: nothing held in full
        result.arrow()


@pytest.mark.parametrize("engine_name", ENGINES)
def test_repr_html(nb: engine.Database, engine_name: str) -> None:
    result = nb.sql("SELECT n_nationkey, n_name, n_comment FROM nation ORDER BY n_nationkey", engine=engine_name)
    page = result._repr_html_()
    assert page.startswith("<table")
    assert "25 rows × 3 columns" in page and "first 20 of" in page
    assert " ms" in page and engine_name in page
    assert "ALGERIA" in page and "VIETNAM" not in page  # first rows only
    assert page.count("<tr>") == 1 + 20
    small = nb.sql("SELECT '<b>' AS tag, NULL AS nothing", engine=engine_name)._repr_html_()
    assert "&lt;b&gt;" in small and "<b>" not in small and "null" in small and "first" not in small


def test_query_timeout_interrupts_duckdb(nb: engine.Database) -> None:
    started = time.perf_counter()
    with pytest.raises(QueryTimeout) as info:
        nb.sql(HEAVY, timeout_s=0.5).arrow()
    elapsed = time.perf_counter() - started
    assert info.value.code == "query_timeout" and not info.value.client_error
    assert elapsed < 5, f"the timeout took {elapsed:.1f} s to stop the query"
    started = time.perf_counter()
    assert nb.sql("SELECT count(*) FROM nation").fetchall() == [(25,)]
    assert time.perf_counter() - started < 2


def read_in_thread(result: engine.Result) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["rows"] = result.arrow().num_rows
        except ColonnadeError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, outcome


def test_result_cancel_stops_duckdb_from_another_thread(nb: engine.Database) -> None:
    result = nb.sql(HEAVY_STREAM, timeout_s=120)
    started = time.perf_counter()
    thread, outcome = read_in_thread(result)
    time.sleep(0.3)
    result.cancel()
    thread.join(10)
    assert not thread.is_alive() and time.perf_counter() - started < 5
    assert isinstance(outcome.get("error"), QueryCancelled), outcome
    assert outcome["error"].code == "query_cancelled"
    result.close()
    assert nb.sql("SELECT count(*) FROM region").fetchall() == [(5,)]


@settings(max_examples=30, derandomize=True)
@given(engine_name=st.sampled_from(ENGINES), delay_s=st.floats(0, 0.05))
def test_a_cancel_at_any_moment_stops_the_query(nb: engine.Database, engine_name: str, delay_s: float) -> None:
    """Whenever the cancel lands — before the engine runs the query (DuckDB then forgets an
    interrupt as the query begins), while it binds, or while it runs — the query stops."""
    control = QueryControl(timeout_s=120)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["rows"] = nb.execute(HEAVY, engine=engine_name, control=control).arrow().num_rows
        except ColonnadeError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(delay_s)
    control.cancel()
    thread.join(20)  # the query runs ~30 s when nothing stops it
    assert not thread.is_alive(), f"a cancel {delay_s * 1000:.1f} ms after the start was lost"
    assert isinstance(outcome.get("error"), QueryCancelled), outcome


def test_cancelled_queries_share_one_reinterrupting_thread() -> None:
    """A burst of cancels starts no thread each; each query is interrupted again until it
    finishes, then no more, and the thread ends when none is left."""
    calls = [0] * 50
    controls = [QueryControl() for _ in calls]
    for i, control in enumerate(controls):
        control.on_cancel(lambda i=i: calls.__setitem__(i, calls[i] + 1))
    before = threading.active_count()
    for control in controls:
        control.cancel()
    assert threading.active_count() <= before + 1
    deadline = time.monotonic() + 30
    while min(calls) < 3 and time.monotonic() < deadline:  # the cancel's own call, then repeats
        time.sleep(0.05)
    assert min(calls) >= 3, calls
    for control in controls:
        control.finish()
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
    settled = list(calls)
    time.sleep(3 * INTERRUPT_EVERY_S)
    assert calls == settled  # a finished query is not interrupted again


def test_query_timeouts_share_one_thread_and_fire_in_deadline_order() -> None:
    """Many queries under a timeout start no thread each; a short deadline added behind long
    ones still fires (the thread sleeps towards the earliest); a finished query, a restarted
    query's old deadline and a query nobody holds any more are never timed out, and a deadline
    does not keep its query alive. Nothing here depends on the machine's speed: the checks
    wait for a later deadline to fire, and deadlines fire in order."""
    QueryControl(60).finish()  # the shared thread exists from the first timed query on
    before = threading.active_count()
    long = [QueryControl(60) for _ in range(300)]
    assert threading.active_count() <= before

    with _TIMEOUTS._cond:  # no deadline fires while the queries are set up, however slow the machine
        finished = QueryControl(0.2)
        finished.finish()
        restarted = QueryControl(0.2)
        restarted.timeout_s = 60
        restarted.restart()  # its first deadline (0.2 s) no longer applies
        dropped = weakref.ref(QueryControl(0.2))
        gc.collect()
        assert dropped() is None  # its deadline holds it weakly
    short = QueryControl(0.4)  # behind 300 later deadlines: must wake the thread
    deadline = time.monotonic() + 30
    while short.reason is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert short.reason == "timeout"
    assert finished.reason is None and restarted.reason is None  # their 0.2 s deadlines came first
    assert all(c.reason is None for c in long)
    for control in [*long, restarted]:
        control.finish()


@settings(max_examples=15, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.sampled_from(["running", "finished", "restarted", "dropped"])),
        max_size=30,
    )
)
def test_timeouts_fire_exactly_the_running_queries_in_deadline_order(queries: list[tuple[int, str]]) -> None:
    """Model check of the shared timeout thread: deadlines added in any order fire in deadline
    order (ties: first added first), and exactly for the queries still running under the start
    the deadline was set for. Nothing fires while the queries are set up (the test holds the
    thread's lock), and the check waits for a sentinel due after every other deadline: no
    clock in the verdict (a slow machine only moves the deadlines, and the model reads them)."""
    timeouts = _Timeouts()
    fired: list[int] = []
    controls = []
    with timeouts._cond:  # nothing fires until every query is set up, however slow the machine
        for i, (delay_ms, state) in enumerate(queries):
            control = QueryControl()  # no timeout of its own: only `timeouts` may cancel it
            # A cancelled query is interrupted again until it finishes: its first interrupt is the cancel.
            control.on_cancel(lambda i=i: i in fired or fired.append(i))
            if state == "finished":
                control.finish()
            timeouts.add(control, delay_ms / 1000)
            if state == "restarted":  # started again: the deadline just added no longer applies
                control.restart()
            controls.append(control if state != "dropped" else None)
            del control  # a dropped query is held by nothing but its deadline, which holds it weakly
        gc.collect()
        sentinel = QueryControl()
        timeouts.add(sentinel, 0.15)
        # Deadlines are absolute (added at different moments): the order they fall due in, by
        # the order of adding (query i was added i-th), is what the firing must follow.
        due_order = [order for _, order, _, _ in sorted(timeouts._heap) if order < len(queries)]
    deadline = time.monotonic() + 30
    while sentinel.reason is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sentinel.reason == "timeout"
    assert fired == [i for i in due_order if queries[i][1] == "running"]
    assert all(
        c.reason == ("timeout" if state == "running" else None)
        for c, (_, state) in zip(controls, queries, strict=True)
        if c
    )
    for control in [*controls, sentinel]:
        if control is not None:
            control.finish()  # no more re-interrupts


def test_result_close_stops_a_stream(nb: engine.Database) -> None:
    result = nb.execute(HEAVY_STREAM, timeout_s=120, batch_rows=1_000)
    reader = result.reader()
    assert reader.read_next_batch().num_rows > 0
    started = time.perf_counter()
    result.close()
    with pytest.raises(QueryCancelled):
        reader.read_next_batch()
    assert time.perf_counter() - started < 2
    assert nb.sql("SELECT count(*) FROM region").fetchall() == [(5,)]


def test_context_manager_closes(tpch_dir: Path) -> None:
    with engine.connect(tpch_dir) as db, db.sql("SELECT * FROM region") as result:
        assert result.columns == ["r_regionkey", "r_name", "r_comment"]
        assert repr(result).startswith("<Result engine=duckdb")


def test_unknown_engine(nb: engine.Database) -> None:
    with pytest.raises(ColonnadeError) as info:
        nb.sql("SELECT 1", engine="spark-on-toaster")
    assert info.value.code == "invalid_request"
