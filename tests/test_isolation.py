"""``engine.backends.isolation``: worker processes that can be killed, with real children.

The handlers in ``tests/isolation_handlers.py`` stand in for an engine, so each guarantee is
checked on its own: batches round-trip exactly (hypothesis), a kill stops a worker at once and
a new one takes its place, a crash or an allocation failure becomes the right error, the
address-space cap is really set, and a worker whose parent dies does not run on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.backends.base import QueryControl
from engine.backends.isolation import MAX_FRAME_BYTES, WorkerConfig, WorkerDied, WorkerPool
from engine.errors import (
    EngineError,
    QueryCancelled,
    QueryError,
    ResourceExhausted,
    UnsupportedQuery,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "25"))
MEMORY = 2 * 1024**3


def config(handler: str, **kwargs) -> WorkerConfig:
    return WorkerConfig(
        run=f"tests.isolation_handlers:{handler}",
        translate="tests.isolation_handlers:translate",
        memory_bytes=kwargs.pop("memory_bytes", MEMORY),
        size=kwargs.pop("size", 2),
        env={"PYTHONPATH": str(ROOT), "POLARS_MAX_THREADS": "3"},
        **kwargs,
    )


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        pool.close()


def make(pools: list[WorkerPool], handler: str, **kwargs) -> WorkerPool:
    pool = WorkerPool(config(handler, **kwargs))
    pools.append(pool)
    return pool


def run(pool: WorkerPool, request: dict | None = None) -> tuple[pa.Table, int]:
    lease = pool.lease(QueryControl())
    try:
        schema = lease.start(request or {})
        try:
            return pa.Table.from_batches(list(lease.batches()), schema=schema), lease.worker.pid
        except WorkerDied as exc:
            raise lease.translate(exc) from None
    except WorkerDied as exc:
        raise lease.translate(exc) from None
    finally:
        lease.release()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# -- data ---------------------------------------------------------------------------------------

_VALUES = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats(allow_nan=False)),
    "text": (pa.string(), st.text(max_size=200)),
    "wide": (pa.string(), st.text(min_size=0, max_size=20_000)),
    "bytes": (pa.binary(), st.binary(max_size=100)),
    "list": (pa.list_(pa.int32()), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5)),
}


@st.composite
def tables(draw: st.DrawFn) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    kinds = draw(st.lists(st.sampled_from(sorted(_VALUES)), min_size=1, max_size=4))
    schema = pa.schema([pa.field(f"c{i}", _VALUES[k][0]) for i, k in enumerate(kinds)])
    batches = []
    for _ in range(draw(st.integers(0, 4))):
        rows = draw(st.integers(0, 30))
        columns = [
            pa.array(draw(st.lists(st.one_of(st.none(), _VALUES[k][1]), min_size=rows, max_size=rows)), _VALUES[k][0])
            for k in kinds
        ]
        batches.append(pa.record_batch(columns, schema=schema))
    return schema, batches


@pytest.fixture(scope="module")
def echo_pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(config("echo", size=1))
    yield pool
    pool.close()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables())
def test_batches_round_trip_exactly(echo_pool: WorkerPool, data: tuple[pa.Schema, list[pa.RecordBatch]]) -> None:
    schema, batches = data
    table, _ = run(echo_pool, {"schema": schema, "batches": batches})
    assert table.schema == schema
    assert table.equals(pa.Table.from_batches(batches, schema=schema))


def test_big_batches_cross_in_pieces_and_dictionaries_decode(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo", size=1)
    wide = pa.record_batch({"s": pa.array(["x" * 1_000_000] * 40), "i": pa.array(range(40))})
    table, _ = run(pool, {"schema": wide.schema, "batches": [wide]})
    assert table.equals(pa.Table.from_batches([wide]))
    assert max(b.nbytes for b in table.to_batches()) <= MAX_FRAME_BYTES
    coded = pa.record_batch({"d": pa.array(["a", "b", None, "a"]).dictionary_encode()})
    table, _ = run(pool, {"schema": coded.schema, "batches": [coded]})
    assert table.schema.field("d").type == pa.string()
    assert table.column("d").to_pylist() == ["a", "b", None, "a"]


def test_worker_runs_under_its_address_space_cap(pools: list[WorkerPool]) -> None:
    pool = make(pools, "limits", memory_bytes=3 * 1024**3)
    row = run(pool)[0].to_pylist()[0]
    assert row["soft"] == row["hard"] == 3 * 1024**3
    assert row["threads"] == "3"


def test_allocation_past_the_cap_is_resource_exhausted_and_the_worker_is_replaced(pools: list[WorkerPool]) -> None:
    pool = make(pools, "hog", memory_bytes=1024**3, size=1)
    with pytest.raises(ResourceExhausted):
        run(pool)
    with pytest.raises(ResourceExhausted):  # an engine that aborts on a failed allocation
        run(make(pools, "abort"), {"message": "memory allocation of 4096 bytes failed"})
    assert run(pool, {"chunks": 1})[0].to_pylist() == [{"n": 1}]


def test_a_crash_is_named_and_the_pool_goes_on(pools: list[WorkerPool]) -> None:
    pool = make(pools, "abort", size=1)
    with pytest.raises(UnsupportedQuery, match="crashed"):
        run(pool)
    with pytest.raises(UnsupportedQuery, match="crashed"):  # a fresh worker, the same crash
        run(pool)


def test_errors_keep_the_worker(pools: list[WorkerPool]) -> None:
    pool = make(pools, "fail_midway", size=1)
    lease = pool.lease(QueryControl())
    lease.start({})
    batches = lease.batches()
    assert next(batches).num_rows == 3
    with pytest.raises(QueryError, match="after one batch"):
        next(batches)
    pid = lease.worker.pid
    lease.release()
    lease = pool.lease(QueryControl())
    assert lease.worker.pid == pid  # the worker answered with ERROR: it is healthy and reused
    lease.release()
    with pytest.raises(QueryError, match="refused"):
        run(make(pools, "fail"))


def test_kill_stops_a_spinning_worker_at_once(pools: list[WorkerPool]) -> None:
    pool = make(pools, "spin", size=1)
    lease = pool.lease(QueryControl())
    pid = lease.worker.pid
    threading.Timer(0.5, lease.kill).start()
    with pytest.raises(WorkerDied):
        lease.start({})
    lease.release()
    assert not alive(pid)
    lease = pool.lease(QueryControl())
    assert lease.worker.pid != pid
    lease.kill()
    lease.release()


def test_an_abandoned_stream_kills_the_worker(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo", size=1)
    batch = pa.record_batch({"i": list(range(10))})
    lease = pool.lease(QueryControl())
    lease.start({"schema": batch.schema, "batches": [batch] * 100})
    next(lease.batches())
    pid = lease.worker.pid
    lease.release()  # the reader stopped early: the worker's answer is unread, so it goes
    assert not alive(pid)
    lease.release()  # twice is fine
    table, new_pid = run(pool, {"schema": batch.schema, "batches": [batch]})
    assert new_pid != pid and table.num_rows == 10


def test_kill_after_release_leaves_the_reused_worker_alone(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo", size=1)
    batch = pa.record_batch({"i": [1]})
    lease = pool.lease(QueryControl())
    lease.start({"schema": batch.schema, "batches": [batch]})
    list(lease.batches())
    lease.release()
    lease.kill()  # a late timeout: the worker belongs to the pool again
    table, pid = run(pool, {"schema": batch.schema, "batches": [batch]})
    assert pid == lease.worker.pid and table.num_rows == 1


def test_a_full_pool_waits_and_a_stopped_query_stops_waiting(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo", size=1)
    first = pool.lease(QueryControl())
    control = QueryControl()
    threading.Timer(0.3, control.cancel).start()
    with pytest.raises(QueryCancelled):
        pool.lease(control)
    threading.Timer(0.3, first.release).start()
    second = pool.lease(QueryControl())  # waits for the first to come back
    assert second.worker is first.worker
    second.release()


def test_an_idle_worker_killed_from_outside_is_replaced(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo", size=1)
    batch = pa.record_batch({"i": [1]})
    _, pid = run(pool, {"schema": batch.schema, "batches": [batch]})
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    table, new_pid = run(pool, {"schema": batch.schema, "batches": [batch]})
    assert new_pid != pid and table.num_rows == 1


def test_closed_pool_refuses(pools: list[WorkerPool]) -> None:
    pool = make(pools, "echo")
    pids = pool.pids()
    pool.close()
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(EngineError):
        pool.lease(QueryControl())


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    """kill -9 of the process that owns the pool: its busy worker exits too."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from engine.backends.base import QueryControl
        from engine.backends.isolation import WorkerPool
        from tests.test_isolation import config
        pool = WorkerPool(config("spin", size=1))
        lease = pool.lease(QueryControl())
        threading.Thread(target=lease.start, args=({{}},), daemon=True).start()
        print(lease.worker.pid, flush=True)
        threading.Event().wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=tmp_path)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    time.sleep(1.0)  # the worker is up and spinning
    assert alive(worker)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker)


def test_a_dropped_polars_result_frees_its_worker(tpch_dir: Path) -> None:
    """One Polars worker: a result dropped unread (a notebook) must hand it back, or the next
    Polars query would wait for it until its timeout."""
    import engine
    from engine.config import load_settings

    settings = load_settings(environ={"COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "1"})
    with engine.Database(tpch_dir, settings=settings) as db:
        assert db.backend("polars").workers == 1
        for _ in range(3):
            result = db.sql("SELECT * FROM lineitem, region", engine="polars")
            del result
            assert db.sql("SELECT 1 AS x", engine="polars", timeout_s=30).fetchall() == [(1,)]


def test_a_worker_that_dies_while_planning_says_why(tpch_dir: Path) -> None:
    """The diagnosis reads the dead worker's stderr before the pool reaps it."""
    import engine
    from engine.config import load_settings

    settings = load_settings(environ={"COLONNADE_LIMITS_MEMORY_LIMIT": "2GB"})
    with engine.Database(tpch_dir, settings=settings) as db:
        with pytest.raises(ResourceExhausted, match="more memory"):
            db.sql("SELECT sum(range) FROM range(2000000000)", engine="polars").arrow()
        assert db.sql("SELECT 2 AS x", engine="polars").fetchall() == [(2,)]


def test_a_crash_is_diagnosed_from_its_own_request_only(pools: list[WorkerPool]) -> None:
    pool = make(pools, "noisy", size=1)
    assert run(pool)[0].num_rows == 1  # leaves an out-of-memory line in the worker's stderr
    with pytest.raises(UnsupportedQuery, match="crashed"):  # not ResourceExhausted
        run(pool, {"crash": True})
