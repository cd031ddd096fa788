"""The benchmark's method: every comparison is a set of interleaved rounds.

A round runs each contender once for one phase (a few seconds of the same work); the order
alternates between rounds (A B, B A, A B, ...), so a drift in the machine's speed during the run
hits both sides of every pair alike. A ratio is taken per round, and the report quotes the
median with the min–max of the rounds. Each phase also records the machine around it: the
1-minute load average at its start, the cores that processes outside the benchmark kept busy
during it ("others") and the hypervisor's steal, so a noisy pair can be told from a slow product.

SQL text never repeats across phases: each phase gets a nonce, and ``with_nonce`` names it as a
subquery alias, which reaches the text every cache keys on but not the plan (DuckDB flattens
the subquery: same plan, same rows, same order — checked for all 22 TPC-H queries). Only a
comparison that measures the cache itself sends the same text again.
"""

from __future__ import annotations

import itertools
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench import procstat

Phase = Callable[[str], dict]  # nonce -> {"value": float, ...anything the section keeps}

_RUN = secrets.token_hex(3)  # nonces differ between runs too, whatever a server still holds
_COUNTER = itertools.count()


def nonce() -> str:
    return f"bench_{_RUN}_{next(_COUNTER)}"


def with_nonce(sql: str, tag: str) -> str:
    """``sql`` under a new text that does the same work: ``SELECT * FROM (sql) AS tag``."""
    return f"SELECT * FROM (\n{sql.strip().rstrip(';')}\n) AS {tag}"


@dataclass(frozen=True)
class Machine:
    """One reading of the machine: monotonic time, busy and steal ticks of all CPUs, ticks of
    the benchmark's own process tree, the 1-minute load average."""

    t: float
    busy: int
    steal: int
    own: int
    load1: float

    @classmethod
    def read(cls) -> Machine:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]
        steal = cpu[7] if len(cpu) > 7 else 0
        return cls(time.monotonic(), busy, steal, procstat.tree_ticks(os.getpid()), os.getloadavg()[0])

    def since(self, before: Machine) -> dict:
        wall = max(self.t - before.t, 1e-9)
        others = (self.busy - before.busy) - (self.own - before.own)
        return {
            "others_cores": round(max(0.0, others / procstat.TICKS / wall), 3),
            "steal_cores": round((self.steal - before.steal) / procstat.TICKS / wall, 3),
        }


def interleave(contenders: dict[str, Phase], rounds: int, *, log: Callable[[str], None] | None = None) -> dict:
    """Run ``rounds`` rounds of one phase per contender, the order reversed every other round.

    Returns the comparison: its contenders, the load average before it, and every phase with
    the section's own figures plus ``contender``, ``round``, ``position``, ``nonce``,
    ``started``/``ended`` (monotonic, to slice samples taken meanwhile), ``seconds``, ``load1``,
    ``others_cores``, ``steal_cores``.
    """
    names = list(contenders)
    phases = []
    load_before = os.getloadavg()
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for position, name in enumerate(order):
            tag = nonce()
            before = Machine.read()
            started = time.monotonic()
            record = contenders[name](tag)
            ended = time.monotonic()
            record.update(
                contender=name,
                round=r,
                position=position,
                nonce=tag,
                started=started,
                ended=ended,
                seconds=round(ended - started, 3),
                load1=before.load1,
                **Machine.read().since(before),
            )
            phases.append(record)
            if log is not None:
                log(f"  round {r + 1}/{rounds} {name}: {record['value']:.4g}")
    return {"contenders": names, "rounds": rounds, "load_before": list(load_before), "phases": phases}


def values(comparison: dict, contender: str, key: str = "value") -> list[float]:
    """``key`` of ``contender``'s phases, in round order."""
    return [p[key] for p in comparison["phases"] if p["contender"] == contender and p.get(key) is not None]


def spread(xs: Iterable[float], digits: int = 3) -> dict:
    """Median, min and max of ``xs`` (and the values themselves)."""
    xs = list(xs)
    if not xs:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": round(statistics.median(xs), digits),
        "min": round(min(xs), digits),
        "max": round(max(xs), digits),
        "values": [round(x, digits) for x in xs],
    }


def ratio(comparison: dict, num: str, den: str | list[str], key: str = "value") -> dict:
    """Per round, ``num``'s ``key`` divided by ``den``'s (several: the smallest of them, e.g.
    the faster of two anchors in that same round); the spread of those ratios."""
    dens = [den] if isinstance(den, str) else den
    by_round: dict[int, dict[str, float]] = {}
    for p in comparison["phases"]:
        if p.get(key) is not None:
            by_round.setdefault(p["round"], {})[p["contender"]] = p[key]
    out = []
    for r in sorted(by_round):
        row = by_round[r]
        peers = [row[d] for d in dens if d in row]
        if num in row and peers and min(peers) > 0:
            out.append(row[num] / min(peers))
    return spread(out)


def machine(comparison: dict, phases: Iterable[dict] | None = None) -> dict:
    """The machine around a comparison: load average before it, the 1-minute load at each
    phase's start (min–max), others' cores (median, max) and steal (max)."""
    ps = list(comparison["phases"] if phases is None else phases)
    load1 = [p["load1"] for p in ps]
    others = [p["others_cores"] for p in ps]
    return {
        "load_before": round(comparison["load_before"][0], 2),
        "load_min": round(min(load1), 2) if load1 else None,
        "load_max": round(max(load1), 2) if load1 else None,
        "others_median": round(statistics.median(others), 2) if others else None,
        "others_max": round(max(others), 2) if others else None,
        "steal_max": round(max((p["steal_cores"] for p in ps), default=0.0), 2),
    }


def repeat_for(seconds: float, unit: Callable[[], object]) -> tuple[int, float, list[object]]:
    """Call ``unit`` until ``seconds`` have passed (at least once): (calls, elapsed, results)."""
    outs = []
    started = time.perf_counter()
    while True:
        outs.append(unit())
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return len(outs), elapsed, outs
