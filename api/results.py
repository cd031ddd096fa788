"""Results as files: a bounded on-disk store of materialised exports, served with
``Content-Length``, ``Accept-Ranges``, strong ETags, ``206``/``416`` and ``If-Range``.

A Parquet, Arrow or CSV result is materialised when a request needs its length or a part of
it — a ``HEAD``, a ``Range`` or an ``If-Range`` (what Polars, pandas/fsspec and DuckDB send
when they open a URL as a file) — and then served from the store to every request for the same
query, parameters, format and table versions (its key: ``PreparedQuery.key``). Everything else
streams as before, so the first byte still leaves early.

Files are immutable: each materialisation gets a new random tag, which is its strong ETag, so a
client reading ranges never mixes two runs of a query whose row order is not fixed. The store
lives in the server's runtime directory (shared by the workers, gone when the server stops),
holds at most ``max_bytes`` and evicts the least recently used files. Grants hold by
construction: a request reaches the store only after its query was prepared for its token.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

RANGEABLE = ("parquet", "arrow", "csv")
_NAME = re.compile(r"(?P<key>[0-9a-f]{64})-(?P<tag>[0-9a-f]{16})\.(?P<fmt>\w+)\Z")


@dataclass(frozen=True)
class StoredResult:
    path: Path
    size: int
    etag: str  # strong: "<tag>"


class ResultStore:
    def __init__(self, root: Path | None, max_bytes: int) -> None:
        self.root = root if root is not None else Path(tempfile.mkdtemp(prefix="colonnade-results-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: str, fmt: str) -> StoredResult | None:
        """The stored result for ``key``, marked as just used; None when there is none."""
        for path in self.root.glob(f"{key}-*.{fmt}"):
            match = _NAME.match(path.name)
            if match is None:
                continue
            with contextlib.suppress(FileNotFoundError):  # evicted by another worker meanwhile
                os.utime(path)  # LRU order is mtime order
                return StoredResult(path, path.stat().st_size, f'"{match["tag"]}"')
        return None

    def put(self, key: str, fmt: str, chunks: Iterable[bytes]) -> StoredResult | None:
        """Write ``chunks`` as the result for ``key``. The first writer wins: a racing one gets
        the stored file. None when the result alone is larger than the store."""
        tag = secrets.token_hex(8)
        final = self.root / f"{key}-{tag}.{fmt}"
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".writing-")
        tmp = Path(tmp_name)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        return None
                    out.write(chunk)
            with self._lock:
                existing = self.get(key, fmt)
                if existing is not None:
                    return existing
                os.rename(tmp, final)
            self._evict(keep=final)
            return StoredResult(final, size, f'"{tag}"')
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _evict(self, keep: Path) -> None:
        """Drop the least recently used files until the store is within its bound."""
        files = []
        for path in self.root.iterdir():
            if _NAME.match(path.name):
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    files.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path != keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size


# -- ranges (RFC 9110 §14) ---------------------------------------------------------------------


class Unsatisfiable(Exception):
    """No range of the request overlaps the representation: 416."""


def parse_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """``Range: bytes=…`` as inclusive (first, last) pairs within ``size``; None when the
    header is absent or malformed (the full representation is then sent, as RFC 9110 allows).
    Raises ``Unsatisfiable`` when it is well formed but selects nothing."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    ranges = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            return None
        if first == "":  # a suffix: the last N bytes
            if last == "" or int(last) == 0:
                continue
            ranges.append((max(0, size - int(last)), size - 1))
        else:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return None
            if start < size:
                ranges.append((start, min(end, size - 1)))
    if not ranges:
        raise Unsatisfiable
    return ranges


def read_range(path: Path, first: int, last: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            data = f.read(min(chunk, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


# -- responses ---------------------------------------------------------------------------------

EXTENSIONS = {"parquet": "parquet", "arrow": "arrow", "csv": "csv", "ndjson": "ndjson", "json": "json"}


def content_disposition(name: str, fmt: str) -> str:
    """A download name for a browser: ``orders.parquet``, ``query-3f2a9c1b.csv``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "result"
    return f'attachment; filename="{safe}.{EXTENSIONS.get(fmt, fmt)}"'


@dataclass(frozen=True)
class FileAnswer:
    """How to answer a request from a stored file: status, headers and the byte ranges to send
    (empty for HEAD, 304 and 416)."""

    status: int
    headers: dict[str, str]
    parts: list[tuple[int, int]]
    boundary: str | None = None


def answer_file(
    stored: StoredResult,
    media_type: str,
    *,
    head: bool,
    range_header: str | None,
    if_range: str | None,
    if_none_match: set[str],
) -> FileAnswer:
    """RFC 9110's conditional and range rules for one stored representation."""
    size = stored.size
    headers = {"Accept-Ranges": "bytes", "ETag": stored.etag, "Content-Type": media_type}
    if stored.etag in if_none_match:
        return FileAnswer(304, {"ETag": stored.etag, "Accept-Ranges": "bytes"}, [])
    # If-Range: the ranges only if the client holds this very representation (strong match).
    ranges_wanted = range_header if if_range is None or if_range.strip() == stored.etag else None
    try:
        ranges = parse_ranges(ranges_wanted, size)
    except Unsatisfiable:
        return FileAnswer(416, {**headers, "Content-Range": f"bytes */{size}", "Content-Length": "0"}, [])
    if ranges is None:
        whole = [(0, size - 1)] if size and not head else []
        return FileAnswer(200, {**headers, "Content-Length": str(size)}, whole)
    if len(ranges) == 1:
        first, last = ranges[0]
        headers.update({"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(last - first + 1)})
        return FileAnswer(206, headers, [] if head else ranges)
    boundary = secrets.token_hex(12)
    length = sum(len(_part_head(boundary, media_type, a, b, size)) + (b - a + 1) + 2 for a, b in ranges)
    length += len(_closing(boundary))
    headers.update({"Content-Type": f"multipart/byteranges; boundary={boundary}", "Content-Length": str(length)})
    return FileAnswer(206, headers, [] if head else ranges, boundary)


def file_body(stored: StoredResult, answer: FileAnswer, media_type: str) -> Iterator[bytes]:
    """The bytes of ``answer``: the ranges, as multipart/byteranges when there are several."""
    if answer.boundary is None:
        for first, last in answer.parts:
            yield from read_range(stored.path, first, last)
        return
    for first, last in answer.parts:
        yield _part_head(answer.boundary, media_type, first, last, stored.size)
        yield from read_range(stored.path, first, last)
        yield b"\r\n"
    yield _closing(answer.boundary)


def _part_head(boundary: str, media_type: str, first: int, last: int, size: int) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {media_type}\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n"
    ).encode()


def _closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()
