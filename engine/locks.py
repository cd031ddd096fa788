"""Locks between Colonnade processes on one table, so that no command can leave it unreadable.

Two lock files per table under ``<data_dir>/.colonnade/locks/`` (``flock``):

- ``<table>.writers``: every command that writes data files into the table (ingest, compact)
  holds it *shared*, from before its first file until its commit (or its clean-up). ``vacuum``
  tries to take it *exclusively*: only then may it delete files that no version names (the
  leftovers of crashed ingests); while any writer holds it, those files may be an unfinished
  ingest's, so vacuum deletes only files the log itself removed.
- ``<table>.maintenance``: ``vacuum`` and ``rollback`` hold it exclusively, so a rollback never
  re-adds a file a vacuum is deleting.

The kernel drops a ``flock`` when its process dies, even by SIGKILL: a crashed ingest never
holds a table, and its leftovers become deletable at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import TableBusy
from engine.location import state_path

LOCK_WAIT_S = 600.0  # a vacuum deletes for seconds; a writer waiting longer names the holder
_POLL_S = 0.05


def _lock_file(data_dir: Path, table: str, kind: str) -> int:
    folder = state_path(data_dir, "locks")
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder / f"{table}.{kind}", os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def _flock(data_dir: Path, table: str, kind: str, mode: int, wait_s: float | None) -> Iterator[bool]:
    """Hold ``flock(mode)`` on the table's ``kind`` lock; yield whether it was taken (with
    ``wait_s=None``, one try; otherwise wait up to ``wait_s`` and raise ``TableBusy``)."""
    fd = _lock_file(data_dir, table, kind)
    try:
        deadline = time.monotonic() + (wait_s or 0.0)
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_s is None:
                    yield False
                    return
                if time.monotonic() >= deadline:
                    where = state_path(data_dir, "locks", f"{table}.{kind}")
                    raise TableBusy(
                        f"table {table!r} is busy: another Colonnade process held {where} for {wait_s:.0f} s; try again"
                    ) from None
                time.sleep(_POLL_S)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def writing(data_dir: Path, table: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Held by a command while the data files it writes into ``table`` are not committed yet."""
    with _flock(data_dir, table, "writers", fcntl.LOCK_SH, wait_s):
        yield


@contextmanager
def no_writers(data_dir: Path, table: str) -> Iterator[bool]:
    """Try once to shut writers out; yield True when no writer holds the table (and none can
    start until the block ends), False when one does."""
    with _flock(data_dir, table, "writers", fcntl.LOCK_EX, None) as alone:
        yield alone


@contextmanager
def maintenance(data_dir: Path, table: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Held by vacuum and rollback: one of them at a time per table."""
    with _flock(data_dir, table, "maintenance", fcntl.LOCK_EX, wait_s):
        yield
