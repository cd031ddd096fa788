"""Admission (api/query.py): ``max_concurrent`` slots, ``max_queued`` places to wait, then 429.

A property test drives it as the event loop would under any interleaving: queries arrive in
bursts (several before the loop runs anything else), the loop runs some steps, queries finish,
queued ones are cancelled. After every step: a query is refused exactly when every slot and
every queue place is taken, never more are running than there are slots, and no slot is lost.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st

from api.query import Admission
from engine.errors import Overloaded, QueryCancelled

ALIVE = ("waiting", "running")
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(1, 6)),  # a burst of n, before the loop runs
        st.tuples(st.just("step"), st.integers(1, 4)),  # the loop runs n times
        st.tuples(st.just("finish"), st.integers(0, 9)),  # a running query ends (its index)
        st.tuples(st.just("cancel"), st.integers(0, 9)),  # an operator cancels a queued query
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(slots=st.integers(1, 3), queue=st.integers(0, 4), events=EVENTS)
def test_refused_exactly_when_slots_and_queue_are_full(slots: int, queue: int, events: list) -> None:
    # A thread of its own: an earlier test (Playwright's sync API) may leave this thread's event
    # loop running, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drive(slots, queue, events)).result()


async def drive(slots: int, queue: int, events: list[tuple[str, int]]) -> None:
    admission = Admission(slots, queue, lambda busy, waiting: None)
    tasks: list[tuple[asyncio.Task, asyncio.Event]] = []

    def outcome(task: asyncio.Task) -> str:
        if not task.done():
            return "waiting"
        error = task.exception()
        return "running" if error is None else type(error).__name__

    async def settle() -> None:  # long enough for a release to reach the next waiter
        for _ in range(20):
            await asyncio.sleep(0)

    finished: set[int] = set()
    for kind, n in events:
        if kind == "arrive":
            # What holds a slot or a queue place when the burst lands, finished queries aside.
            holding = sum(1 for i, (t, _) in enumerate(tasks) if i not in finished and outcome(t) in ALIVE)
            burst = [(asyncio.ensure_future(admission.enter(e)), e) for e in [asyncio.Event() for _ in range(n)]]
            tasks += burst
            await asyncio.sleep(0)  # the burst's first steps, in order, before anything else runs
            refused = [t.done() and isinstance(t.exception(), Overloaded) for t, _ in burst]
            free = max(0, slots + queue - holding)
            assert refused == [i >= free for i in range(n)], (holding, slots, queue, refused)
        elif kind == "step":
            for _ in range(n):
                await asyncio.sleep(0)
        elif kind == "finish":
            running = [i for i, (t, _) in enumerate(tasks) if i not in finished and outcome(t) == "running"]
            if running:
                finished.add(running[n % len(running)])
                admission.leave()
        else:
            waiting = [i for i, (t, _) in enumerate(tasks) if outcome(t) == "waiting"]
            if waiting:
                task, cancelled = tasks[waiting[n % len(waiting)]]
                cancelled.set()
                await asyncio.wait({task})  # out of the queue before the next event
        running = [i for i, (t, _) in enumerate(tasks) if i not in finished and outcome(t) == "running"]
        assert len(running) <= slots
    await settle()
    states = [outcome(t) for i, (t, _) in enumerate(tasks) if i not in finished]
    running, waiting = states.count("running"), states.count("waiting")
    # Once the loop has settled, nobody waits while a slot is free, and the counts are true.
    assert running == min(slots, running + waiting)
    assert (admission.busy, admission.waiting) == (running, waiting)
    assert all(s in ("running", "waiting", "Overloaded", QueryCancelled.__name__) for s in states)
    for _, cancelled in tasks:  # let the queue go
        cancelled.set()
    await settle()
