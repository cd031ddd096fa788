"""A bounded, least-recently-used, read-through local cache of object-store data files.

Engines read object-store tables from local copies: DuckDB's sandbox may then read local
table directories only (its ``httpfs`` extension cannot be installed offline anyway), and a
warm query reads at local-disk speed (bench/objectstore.py measured the alternatives). Delta
data files are immutable, so an entry keyed by the object's URI and size is always right;
external files may change, so their key adds the modification time.

Each process has its own folder (``<local_dir>/.colonnade/cache/<pid>-<n>``, the budget split between the
workers like memory): one process never deletes a file another is reading. A query leases the
files it reads until it ends; eviction skips leased files, so a query never loses one mid-read
(a single query larger than the budget still runs, and the cache shrinks after it). Every
file lands under its table's folder by its path inside the table, checked never to climb out.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import StorageUnavailable
from engine.processes import pid_alive

if TYPE_CHECKING:
    from engine.catalog import TableSnapshot
    from engine.objectstore import ObjectStore

_instances = itertools.count(1)  # two caches of one process never share a folder
DOWNLOAD_THREADS = 8  # object stores answer many requests at once; one file at a time wastes the link


@dataclass
class _Entry:
    path: Path
    size: int
    leases: int = 0


@dataclass
class Lease:
    """The files one query reads; ``release`` when it ends."""

    cache: FileCache
    keys: list[str] = field(default_factory=list)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.cache._release(self.keys)


class FileCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.base = root
        self.root = root / f"{os.getpid()}-{next(_instances)}"
        self.max_bytes = max(0, max_bytes)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="colonnade-download")
        self._remove_dead_siblings()
        shutil.rmtree(self.root, ignore_errors=True)  # a reused pid's leftovers: nothing of ours

    def table_dir(self, name: str, kind: str = "managed") -> Path:
        return self.root / kind / name

    @property
    def bytes(self) -> int:
        return self._bytes

    def localize(
        self, snap: TableSnapshot, store: ObjectStore, sizes: dict[str, int], lease: Lease, check: Callable[[], None]
    ) -> TableSnapshot:
        """``snap`` with every file a local copy, downloaded (in parallel) when not cached.
        ``sizes`` are the files' sizes when known (Delta's add actions): a copy of another
        size is stale. ``check`` raises when the query was cancelled or timed out."""
        folder = self.table_dir(snap.name, snap.kind)
        wanted: list[tuple[str, str, Path, int | None]] = []
        for uri in snap.files:
            local = _inside(folder, _relative(uri, snap.root))
            wanted.append((self._key(uri, sizes.get(uri), snap), uri, local, sizes.get(uri)))
        missing = self._take(wanted, lease)
        if missing:
            self._download(missing, store, snap, lease, check)
        self._evict()
        return replace(snap, files=tuple(str(local) for _, _, local, _ in wanted), root=str(folder))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _key(uri: str, size: int | None, snap: TableSnapshot) -> str:
        # External files can change in place: their fingerprint (sizes and mtimes) joins the key.
        extra = "" if snap.kind == "managed" else snap.fingerprint
        return f"{uri}\0{size}\0{extra}"

    def _take(
        self, wanted: list[tuple[str, str, Path, int | None]], lease: Lease
    ) -> list[tuple[str, str, Path, int | None]]:
        """Lease the cached files among ``wanted``; return the others."""
        missing = []
        with self._lock:
            for item in wanted:
                entry = self._entries.get(item[0])
                if entry is not None and entry.path == item[2] and entry.path.exists():
                    entry.leases += 1
                    lease.keys.append(item[0])
                    self._entries.move_to_end(item[0])
                else:
                    missing.append(item)
        return missing

    def _download(
        self,
        missing: list[tuple[str, str, Path, int | None]],
        store: ObjectStore,
        snap: TableSnapshot,
        lease: Lease,
        check: Callable[[], None],
    ) -> None:
        what = f"table {snap.name!r}" + (f" version {snap.version}" if snap.version is not None else "")
        futures = {
            self._pool.submit(store.download, item[1], item[2], what=f"cannot read {what}"): item for item in missing
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                check()
                for future in done:
                    size = future.result()
                    key, _uri, local, expected = futures[future]
                    if expected is not None and size != expected:
                        local.unlink(missing_ok=True)
                        raise StorageUnavailable(
                            f"cannot read {what}: a data file has {size} bytes instead of {expected}"
                        )
                    self._add(key, local, size, lease)
        finally:
            for future in pending:
                future.cancel()

    def _add(self, key: str, path: Path, size: int, lease: Lease) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = _Entry(path, size, (old.leases if old else 0) + 1)
            self._bytes += size
            lease.keys.append(key)

    def _release(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and entry.leases > 0:
                    entry.leases -= 1
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used files nobody reads until the cache fits its budget."""
        doomed = []
        with self._lock:
            for key in list(self._entries):
                if self._bytes <= self.max_bytes:
                    break
                entry = self._entries[key]
                if entry.leases == 0:
                    del self._entries[key]
                    self._bytes -= entry.size
                    doomed.append(entry.path)
        for path in doomed:
            path.unlink(missing_ok=True)

    def _remove_dead_siblings(self) -> None:
        """Folders of processes that are gone (a crashed worker's cache)."""
        with contextlib.suppress(OSError):
            for folder in self.base.iterdir():
                pid = folder.name.split("-", 1)[0]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(folder, ignore_errors=True)


def _relative(uri: str, root: str) -> str:
    """A file's path inside its table (or an external table's base)."""
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise StorageUnavailable(f"a data file lies outside its table's prefix: {uri}")
    return uri[len(prefix) :]


def _inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused when a crafted key (``../``) would leave ``folder``."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") for p in parts):
        raise StorageUnavailable(f"refusing a data file whose key would leave its table's folder: {relative!r}")
    return folder.joinpath(*parts)
