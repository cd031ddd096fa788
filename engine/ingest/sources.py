"""What to read: paths, globs, directories, stdin, object-store URIs or in-memory data resolved
into one ``Source``, with its format, size and compression checked before DuckDB opens anything.

An object-store source (``s3://bucket/prefix/*.csv``) is downloaded first, file by file, into
the ingest's scratch folder (DuckDB cannot read object storage here): messages name the URI."""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa

from engine.catalog import EXTENSIONS, format_from_path
from engine.config import is_object_store
from engine.errors import EmptySource, SourceNotFound, UnknownFormat

if TYPE_CHECKING:
    from engine.objectstore import ObjectStore

StoreFor = Callable[[str], "ObjectStore"]

FORMATS = ("csv", "ndjson", "parquet", "arrow")
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


@dataclass
class Source:
    """What to read: files of one format, or an in-memory Arrow-compatible object."""

    fmt: str
    files: list[str] = field(default_factory=list)
    data: Any = None
    bytes_in: int = 0
    compression: str | None = None
    spooled: Path | None = None  # stdin copied to a temp file, deleted after the ingest
    # file → a symlink DuckDB reads it by, for a path DuckDB would glob (``*``, ``?``, ``[``) or
    # take apart (a backslash is a separator or an escape to it): escaped, such a path still makes
    # DuckDB list its directory, which fails on a name with a backslash (deleted after the ingest)
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        """The files as DuckDB is to open them."""
        return [self.aliases.get(f, f) for f in self.files]

    def cleanup(self) -> None:
        if self.spooled is not None:
            self.spooled.unlink(missing_ok=True)
        for alias in self.aliases.values():
            Path(alias).unlink(missing_ok=True)
        if self.aliases:
            with contextlib.suppress(OSError):
                Path(next(iter(self.aliases.values()))).parent.rmdir()

    def original(self, text: str) -> str:
        """``text`` (an error message, a file column) with every alias replaced by its file."""
        for file, alias in self.aliases.items():
            text = text.replace(alias, file)
        return text

    @property
    def typed(self) -> bool:
        """Typed sources carry their own schema; text ones (CSV, NDJSON) are cast to the table's."""
        return self.fmt not in ("csv", "ndjson")


def open_source(
    source: Any, format: str | None = None, *, spool_dir: Path | None = None, stores: StoreFor | None = None
) -> Source:
    """Resolve paths, globs, directories, stdin, object-store URIs or in-memory data into one
    ``Source``; ``stores`` gives the client of an object-store URI's bucket."""
    if format is not None and format not in FORMATS:
        raise UnknownFormat(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    if isinstance(source, (pa.Table, pa.RecordBatchReader)):
        return Source("arrow", data=source, bytes_in=source.nbytes if isinstance(source, pa.Table) else 0)
    if type(source).__module__.split(".")[0] in ("polars", "pandas"):
        return Source("arrow", data=source, bytes_in=int(getattr(source, "estimated_size", lambda: 0)()))
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    if not paths:
        raise SourceNotFound("no input given")
    files: list[tuple[str, str]] = []
    remote: dict[str, int] = {}  # object-store URI -> size
    spooled = None
    for p in map(str, paths):
        if is_object_store(p):
            found = _expand_remote(p, format, _store(stores, p))
            remote.update({uri: size for uri, _, size in found})
            files += [(uri, fmt) for uri, fmt, _ in found]
            continue
        if p == "-":
            if format is None:
                raise UnknownFormat("reading stdin needs --format (csv, ndjson, parquet or arrow)")
            spooled = _spool_stdin(sys.stdin.buffer, spool_dir or Path(tempfile.gettempdir()))
            files.append((str(spooled), format))
            continue
        files += _expand_one(p, format)
    formats = {fmt for _, fmt in files}
    if len(formats) > 1:
        raise UnknownFormat(f"one ingest takes one format; got {', '.join(sorted(formats))} (pass --format)")
    names = [f for f, _ in files]
    src = Source(formats.pop(), files=names, spooled=spooled)
    try:
        src.aliases = _aliases(names, src.fmt, spool_dir or Path(tempfile.gettempdir()), remote, stores)
        src.bytes_in = sum(_check_file(src.aliases.get(f, f), f) for f in names)
        src.compression = _compression(src)
    except BaseException:
        src.cleanup()
        raise
    return src


def _store(stores: StoreFor | None, uri: str) -> ObjectStore:
    if stores is None:
        from engine.config import StorageSettings
        from engine.objectstore import ObjectStore

        return ObjectStore(uri, StorageSettings())
    return stores(uri)


def _expand_remote(arg: str, format: str | None, store: ObjectStore) -> list[tuple[str, str, int]]:
    """An object-store source as (URI, format, size): one object, a prefix's objects of the
    format, or a glob's matches."""
    fmt = format or format_from_path(arg)
    if fmt is None and not any(ch in arg for ch in "*?["):  # a prefix: its files' one format
        listed = [uri for uri, _, _ in store.match(arg, set(EXTENSIONS))[1]]
        found = {f for uri in listed if (f := format_from_path(uri))}
        if len(found) != 1:
            raise UnknownFormat(f"cannot tell the format of {arg}; pass --format ({', '.join(FORMATS)})")
        fmt = found.pop()
    if fmt is None:
        raise UnknownFormat(f"cannot tell the format of {arg}; pass --format ({', '.join(FORMATS)})")
    suffixes = {ext for ext, f in EXTENSIONS.items() if f == fmt}
    matched = store.match(arg, suffixes)[1]
    if not matched:
        raise SourceNotFound(f"{arg}: no objects match")
    return [(uri, fmt, size) for uri, size, _ in matched]


def _aliases(
    files: list[str], fmt: str, spool_dir: Path, remote: dict[str, int], stores: StoreFor | None
) -> dict[str, str]:
    """Local names for the files DuckDB cannot open by theirs (see ``Source.aliases``):
    symlinks to awkward paths, downloads of object-store ones."""
    awkward = [f for f in files if f in remote or any(ch in f for ch in "*?[\\")]
    if not awkward:
        return {}
    folder = Path(tempfile.mkdtemp(prefix="names-", dir=_mkdir(spool_dir)))
    out = {}
    for i, f in enumerate(awkward):
        alias = folder / f"{i}.{fmt}"
        out[f] = str(alias)
        if f in remote:
            if remote[f] == 0:
                raise EmptySource(f"{f}: file is empty")
            _store(stores, f).download(f, alias, what=f"cannot read {f}")
        else:
            alias.symlink_to(f)
    return out


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _expand_one(arg: str, format: str | None) -> list[tuple[str, str]]:
    """One command-line source as files: a file by its exact name (whatever characters it holds),
    a directory's files of the format, or — only when no file or directory has this name — a
    glob pattern the user wrote (``*``, ``?``, ``[…]``, ``**``)."""
    path = Path(arg).expanduser()
    if path.is_dir():
        in_dir = format or _directory_format(path)
        return [(f, in_dir) for f in _files_in(path, in_dir)] or _not_found(arg, "no files of that format")
    fmt = format or format_from_path(arg)
    if fmt is None:
        raise UnknownFormat(f"cannot tell the format of {arg}; pass --format ({', '.join(FORMATS)})")
    if path.is_file() or path.exists():
        return [(str(path.resolve()), fmt)]
    if any(ch in arg for ch in "*?["):
        matched = sorted(p for p in globlib.glob(str(path), recursive=True) if os.path.isfile(p))
        return [(str(Path(f).resolve()), fmt) for f in matched] or _not_found(arg, "no files match")
    return _not_found(arg, "no such file")


def _directory_format(path: Path) -> str:
    """A directory given without --format: the one format its files have."""
    found = {fmt for p in path.rglob("*") if p.is_file() and (fmt := format_from_path(p.name))}
    if len(found) != 1:
        raise UnknownFormat(f"cannot tell the format of {path}; pass --format ({', '.join(FORMATS)})")
    return found.pop()


def _files_in(path: Path, fmt: str) -> list[str]:
    """Every file of format ``fmt`` under ``path``, by its exact name, sorted."""
    suffixes = {ext for ext, f in EXTENSIONS.items() if f == fmt}
    return sorted(str(p.resolve()) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _not_found(arg: str, what: str) -> list[tuple[str, str]]:
    raise SourceNotFound(f"{arg}: {what}")


def _check_file(path: str, name: str) -> int:
    """The size of ``path`` (``name`` is what messages call it)."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise SourceNotFound(f"{name}: {exc.strerror}") from None
    if size == 0:
        raise EmptySource(f"{name}: file is empty")
    if not os.access(path, os.R_OK):
        raise SourceNotFound(f"{name}: permission denied")
    return size


def _compression(src: Source) -> str | None:
    """Detect gzip/zstd by magic bytes, whatever the name says (a ``.csv`` that is gzip)."""
    found = set()
    for f in src.files:
        with open(src.aliases.get(f, f), "rb") as fh:
            head = fh.read(4)
        kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
        if kind and src.typed:
            raise UnknownFormat(f"{f}: is {kind}-compressed; {src.fmt} files cannot be; decompress it first")
        if src.fmt == "parquet" and head != b"PAR1":
            raise UnknownFormat(f"{f}: is not a Parquet file")
        found.add(kind)
    if len(found) > 1:
        raise UnknownFormat("the input files mix compressed and uncompressed data; ingest them separately")
    return found.pop() if found else None


def estimate_rows(src: Source, sample_bytes: int = 1 << 20) -> int | None:
    """How many rows ``src`` holds, for a progress bar: exact for Parquet, Arrow and in-memory
    tables (from metadata), extrapolated from the first MiB of text inputs, None when unknown
    (zstd input, a stream of batches)."""
    if src.data is not None:
        rows = getattr(src.data, "num_rows", None)
        return rows if isinstance(rows, int) else (len(src.data) if hasattr(src.data, "__len__") else None)
    if src.typed:
        import pyarrow.dataset as ds

        return ds.dataset(src.paths, format="ipc" if src.fmt == "arrow" else "parquet").count_rows()
    if src.compression not in (None, "gzip"):
        return None
    with open(src.paths[0], "rb") as raw:
        if src.compression == "gzip":
            import gzip

            text = gzip.GzipFile(fileobj=raw).read(sample_bytes)
        else:
            text = raw.read(sample_bytes)
        consumed = raw.tell()  # bytes of the file (compressed, if it is) that gave ``text``
    lines = text.count(b"\n") or 1
    header = len(src.files) if src.fmt == "csv" else 0
    return max(0, int(src.bytes_in * lines / max(consumed, 1)) - header)


def _spool_stdin(stream: IO[bytes], spool_dir: Path) -> Path:
    """Copy stdin to a temp file in chunks: the readers need to seek (sniffing, Parquet footers)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="stdin-", dir=spool_dir)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    return Path(name)
