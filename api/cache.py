"""A bounded in-process cache of encoded responses, keyed by query and table versions.

A key names the normalised SQL, engine, parameters, format and the fingerprint of every table
the query reads, so a new table version changes the key: nothing is ever invalidated by hand,
stale entries just age out of the LRU.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedResponse:
    body: bytes
    media_type: str
    elapsed_ms: float
    stored_at: float
    engine: str = ""  # the engine that answered (engine=auto resolved)


def cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, separators=(",", ":")).encode()).hexdigest()


def etag_for(key: str) -> str:
    return f'"{key[:32]}"'


def weak(etag: str) -> str:
    """A query result's ETag is weak: a query whose row order is not fixed may give other bytes
    when run again, so the tag promises the same answer, not the same bytes (only stored
    files, api/results.py, have strong ones)."""
    return f"W/{etag}"


class ResultCache:
    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.max_entry_bytes = max_bytes // 8
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.clock() - entry.stored_at > self.ttl_s:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, body: bytes, media_type: str, elapsed_ms: float, engine: str = "") -> None:
        if len(body) > self.max_entry_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = CachedResponse(body, media_type, elapsed_ms, self.clock(), engine)
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)

    @property
    def size_bytes(self) -> int:
        return self._bytes
