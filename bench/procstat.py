"""CPU and memory of a server and its worker processes, read from /proc (Linux only).

``ProcessSampler`` samples a process tree (the server and every descendant, e.g. uvicorn's
workers) every ``interval`` seconds: cores busy (utime+stime ticks over wall time) and RSS.
``reset_peak``/``peak_rss`` use the kernel's high-water mark (``VmHWM``, reset by writing 5 to
``/proc/<pid>/clear_refs``), so a short spike between samples is not missed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

TICKS = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 first)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime ticks) of ``pid``."""
    fields = _fields(pid)
    return None if fields is None else (int(fields[1]), int(fields[11]) + int(fields[12]))


def tree_ticks(root: int) -> int:
    """CPU ticks of ``root``'s whole tree so far, children that already exited and were waited
    for included (cutime + cstime), so short-lived helpers (curl, wrk) are not lost between
    two readings."""
    total = 0
    for pid in tree(root):
        fields = _fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    return sum(st[1] for pid in pids if (st := _stat(pid)) is not None)


def _status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss(pids: list[int]) -> int:
    return sum(_status(pid, "VmRSS") for pid in pids)


def reset_peak(pids: list[int]) -> bool:
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def peak_rss(pids: list[int]) -> int:
    """The largest high-water mark of any one process (each worker streams its own response)."""
    return max((_status(pid, "VmHWM") for pid in pids), default=0)


class ProcessSampler:
    """Samples cores busy and RSS of a process tree on a background thread."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []  # (t, cores, rss bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pids = tree(root)

    def _run(self) -> None:
        t0 = last_t = last_tree = time.monotonic()
        last = cpu_ticks(self._pids)
        while not self._stop.wait(self.interval):
            if time.monotonic() - last_tree > 2:  # walking all of /proc is not free: rarely
                self._pids, last_tree = tree(self.root), time.monotonic()
            now, ticks = time.monotonic(), cpu_ticks(self._pids)
            self.samples.append((round(now - t0, 3), (ticks - last) / TICKS / (now - last_t), rss(self._pids)))
            last, last_t = ticks, now

    def __enter__(self) -> ProcessSampler:
        self._t0 = time.monotonic()
        self._ticks0 = cpu_ticks(self._pids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(ZeroDivisionError):
            self.mean_cores = (cpu_ticks(self._pids) - self._ticks0) / TICKS / (time.monotonic() - self._t0)

    def summary(self) -> dict:
        cores = [c for _, c, _ in self.samples]
        return {
            "mean_cores": round(getattr(self, "mean_cores", 0.0), 3),
            "max_cores": round(max(cores, default=0.0), 3),
            "peak_rss_mb": round(max((r for _, _, r in self.samples), default=0) / 1e6, 1),
            "timeline": [(t, round(c, 3)) for t, c, _ in self.samples],
        }
