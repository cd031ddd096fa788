"""Prometheus metrics, correct with several workers.

``colonnade serve`` gives the workers one directory (``PROMETHEUS_MULTIPROC_DIR``, inside the
runtime directory) before any of them imports ``prometheus_client``; each worker writes its
samples there and ``/metrics``, whichever worker answers it, adds them up (prometheus_client's
multiprocess mode). Without that directory (one process) the metrics are the process's own.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets from a cached point query (~1 ms) to a long analytical one.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        # Imported here, not at the top: prometheus_client picks its storage when first imported,
        # which must happen after `colonnade serve` has set MULTIPROC_ENV.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        registry = None if self.multiprocess else CollectorRegistry()
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self._registry = registry
        self.queries = Counter(
            "colonnade_queries", "Queries answered, by engine and outcome (ok or the error code)",
            ["engine", "outcome"], **kw,
        )  # fmt: skip
        self.latency = Histogram(
            "colonnade_query_seconds", "Time from arrival to the last byte", ["engine"], buckets=_BUCKETS, **kw
        )
        self.rows = Counter("colonnade_result_rows", "Rows sent", ["engine"], **kw)
        self.bytes = Counter("colonnade_result_bytes", "Bytes sent", ["engine", "format"], **kw)
        self.cache = Counter("colonnade_cache_requests", "Result-cache lookups by result (hit, miss, not_modified)",
                             ["result"], **kw)  # fmt: skip
        self.busy = Gauge("colonnade_busy_slots", "Query slots in use", multiprocess_mode="livesum", **kw)
        self.queued = Gauge("colonnade_queued_queries", "Queries waiting for a slot", multiprocess_mode="livesum", **kw)
        self.rss = Gauge("colonnade_worker_rss_bytes", "Resident memory of each worker", ["worker"],
                         multiprocess_mode="liveall", **kw)  # fmt: skip
        self._finished: collections.deque[tuple[Any, ...]] = collections.deque()  # thread-safe appends
        self._slots = (0, 0)
        self._flush_lock = threading.Lock()

    def query_finished(self, engine: str, fmt: str, outcome: str, line: dict[str, Any]) -> None:
        """Record one query. Called on the event loop for every request, so it only queues
        the numbers; ``flush`` (the operations watcher, and every scrape) applies them."""
        self._finished.append((engine, fmt, outcome, line["ms"] / 1000, line.get("rows"), line.get("bytes"),
                               line.get("cache")))  # fmt: skip

    def slots(self, busy: int, queued: int) -> None:
        self._slots = (busy, queued)

    def flush(self) -> None:
        with self._flush_lock:
            busy, queued = self._slots
            self.busy.set(busy)
            self.queued.set(queued)
            # Summed first: each increment of a multiprocess counter is a locked write to its
            # file, and under load a flush takes hundreds of queries. Latencies stay one each.
            queries: collections.Counter[tuple[str, str]] = collections.Counter()
            rows_by: collections.Counter[str] = collections.Counter()
            bytes_by: collections.Counter[tuple[str, str]] = collections.Counter()
            cache_by: collections.Counter[str] = collections.Counter()
            while self._finished:
                engine, fmt, outcome, seconds, rows, sent, cache = self._finished.popleft()
                queries[engine, outcome] += 1
                self.latency.labels(engine).observe(seconds)
                rows_by[engine] += rows or 0
                bytes_by[engine, fmt] += sent or 0
                if cache:
                    cache_by[cache] += 1
            for (engine, outcome), n in queries.items():
                self.queries.labels(engine, outcome).inc(n)
            for engine, n in rows_by.items():
                if n:
                    self.rows.labels(engine).inc(n)
            for (engine, fmt), n in bytes_by.items():
                if n:
                    self.bytes.labels(engine, fmt).inc(n)
            for cache, n in cache_by.items():
                self.cache.labels(cache).inc(n)

    def worker_rss(self, pid: int) -> None:
        self.rss.labels(str(pid)).set(_rss_bytes())

    def worker_exits(self, pid: int) -> None:
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        self.flush()
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
