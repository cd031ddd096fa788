"""Engine work below the event loop's priority.

On 2 cores, 8 clients' queries keep DuckDB's threads (and the pool threads that drive them)
runnable all the time; at equal priority the event loop waits its turn behind them, and
``/health`` waits with it. Every thread of the worker but the loop's gets a higher niceness,
so the scheduler runs the loop first whenever it has work (it needs little) and the engines
keep the rest. Raising a thread's niceness needs no privilege. New threads are picked up by
``apply``, which the operations watcher calls a few times a second.
"""

from __future__ import annotations

import contextlib
import os
import threading

ENGINE_NICENESS = 10  # CFS weight 110 against the loop's 1024


class EnginePriority:
    def __init__(self, niceness: int = ENGINE_NICENESS) -> None:
        self.loop_thread = threading.get_native_id()  # built on the event loop's thread
        self.niceness = niceness
        self._done: set[int] = {self.loop_thread}

    def apply(self) -> None:
        """Lower every thread of this process not seen before, the loop's excepted."""
        try:
            tids = {int(t) for t in os.listdir("/proc/self/task")}
        except OSError:  # not Linux: nothing to do
            return
        for tid in tids - self._done:
            with contextlib.suppress(OSError):  # it may have ended meanwhile
                os.setpriority(os.PRIO_PROCESS, tid, max(self.niceness, os.getpriority(os.PRIO_PROCESS, tid)))
        self._done = tids | {self.loop_thread}
