"""What tables exist: managed Delta tables under the data dir, external files from the config.

The catalog hands out immutable ``TableSnapshot``s. A managed table's snapshot is pinned to one
Delta version (its live file list), so a query reads one version even while an ingest commits
the next; a new version written by another process is noticed on the next lookup, by reading
the latest commit number in ``_delta_log`` (a directory listing, no JSON parsing).
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from engine.config import EXTERNAL_FORMATS, ExternalTable
from engine.errors import DataDirError, InvalidTableName, TableNotFound

TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
DELTA_LOG = "_delta_log"
_COMMIT_FILE = re.compile(r"(\d{20})\.json\Z")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
}
EXTERNAL_FINGERPRINT_TTL_S = 1.0
RACY_MTIME_NS = 1_000_000_000  # an mtime this recent may hide a commit made in the same tick


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise InvalidTableName(
            f"{name!r} is not a valid table name: use letters, digits and _, "
            "start with a letter or _, at most 63 characters"
        )
    return name


def format_from_path(path: str) -> str | None:
    return EXTENSIONS.get(Path(path.rstrip("/*")).suffix.lower())


@dataclass(frozen=True)
class TableSnapshot:
    """One table at one version: everything an engine needs to read it."""

    name: str
    kind: Literal["managed", "external"]
    format: str  # "delta" for managed tables, else the external file format
    uri: str
    schema: pa.Schema
    files: tuple[str, ...]
    partitions: tuple[str, ...] = ()
    version: int | None = None  # the Delta version; None for external tables
    fingerprint: str = ""  # what caches and ETags key on
    bytes: int = 0
    row_count: int | None = None  # when known without a scan
    options: dict[str, Any] = field(default_factory=dict)
    root: str = ""  # the directory holding every file of the table: all an engine may read for it

    @property
    def hive(self) -> bool:
        return bool(self.partitions)

    @property
    def relation(self) -> str:
        """The name engines register this version under. Generated, never written by a client:
        every relation in the SQL an engine runs is one of these or a generated CTE name."""
        # The digest tells apart names that differ in case only, and the same name in another
        # data directory (one process may open several; engines' sessions may be shared).
        digest = hashlib.sha1(f"{self.uri}\0{self.name}".encode()).hexdigest()[:8]
        return f"rel_{self.name.lower()}_{digest}_{self.fingerprint.lower()}"


class Catalog:
    """Thread-safe registry of tables; cheap to ask, refreshes itself on change."""

    def __init__(self, data_dir: str | Path, external: Iterable[ExternalTable] = (), *, create: bool = False):
        self.data_dir = Path(data_dir).expanduser().resolve()
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise DataDirError(f"data directory {self.data_dir} is not a directory")
        if not self.data_dir.exists():
            if not create:
                raise DataDirError(f"data directory {self.data_dir} does not exist")
            self.data_dir.mkdir(parents=True)
        self._external = {}
        for table in external:
            check_table_name(table.name)
            self._external[table.name.lower()] = table
        self._lock = threading.Lock()
        self._data_dir_str = str(self.data_dir)  # the hit path stats a log dir per request: no pathlib
        self._managed: dict[str, tuple[int, TableSnapshot]] = {}  # name -> (log dir mtime, snapshot)
        self._external_cache: dict[str, tuple[float, TableSnapshot]] = {}

    # -- listing ---------------------------------------------------------------------------

    def managed_names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.data_dir))
        except OSError as exc:
            raise DataDirError(f"cannot read data directory {self.data_dir}: {exc.strerror}") from None
        return sorted(
            e.name
            for e in entries
            if e.is_dir() and TABLE_NAME.match(e.name) and os.path.isdir(os.path.join(e.path, DELTA_LOG))
        )

    def names(self) -> list[str]:
        external = [t.name for t in self._external.values()]
        return sorted({*self.managed_names(), *external}, key=str.lower)

    def table_dirs(self) -> list[str]:
        """The directories holding table files: each managed table's and each external table's
        base. Engines may read these and nothing else (not the data dir's ``.colonnade``)."""
        dirs = {str(self.data_dir / name) for name in self.managed_names()}
        dirs.update(str(_base_dir(table.uri)) for table in self._external.values())
        return sorted(dirs)

    def resolve(self, name: str) -> str:
        """The catalog's spelling of ``name`` (SQL identifiers are case-insensitive)."""
        lowered = name.lower()
        for candidate in self.names():
            if candidate.lower() == lowered:
                return candidate
        raise TableNotFound(f"table {name!r} does not exist", table=name)

    def is_external(self, name: str) -> bool:
        return name.lower() in self._external

    def table_path(self, name: str) -> Path:
        return self.data_dir / check_table_name(name)

    # -- snapshots -------------------------------------------------------------------------

    def get(self, name: str) -> TableSnapshot:
        name = self.resolve(name)
        if name.lower() in self._external:
            return self._external_snapshot(self._external[name.lower()])
        return self._managed_snapshot(name)

    def snapshot(self, names: Iterable[str]) -> dict[str, TableSnapshot]:
        return {n: self.get(n) for n in names}

    def pin(self, canonical: Iterable[str]) -> dict[str, TableSnapshot]:
        """Snapshots of tables named by their catalog spellings (a validated query's tables).

        Skips ``resolve``, which lists and stats the data directory once per table (a quarter
        of a worker's CPU on the cached path). A table dropped since validation still raises
        TableNotFound: its Delta log is gone."""
        return {
            n: self._external_snapshot(self._external[n.lower()])
            if n.lower() in self._external
            else self._managed_snapshot(n)
            for n in canonical
        }

    def _managed_snapshot(self, name: str) -> TableSnapshot:
        """The table at its latest version. A commit adds a file to ``_delta_log``, which moves
        the directory's mtime: while the mtime is the one seen with the cached version, one
        ``stat`` proves nothing was committed since. An mtime from the last second proves
        nothing (a second commit in the same clock tick leaves it equal: "racy git"), so then
        the log is listed."""
        try:
            mtime = os.stat(f"{self._data_dir_str}/{name}/{DELTA_LOG}").st_mtime_ns
        except FileNotFoundError:
            raise TableNotFound(f"table {name!r} does not exist", table=name) from None
        with self._lock:
            cached = self._managed.get(name)
        if cached is not None and cached[0] == mtime and time.time_ns() - mtime > RACY_MTIME_NS:
            return cached[1]
        path = self.data_dir / name
        latest = latest_delta_version(path)
        fresh = cached is not None and cached[1].version == latest
        snap = cached[1] if fresh and cached is not None else load_delta_snapshot(name, path)
        with self._lock:
            self._managed[name] = (mtime, snap)
        return snap

    def _external_snapshot(self, table: ExternalTable) -> TableSnapshot:
        now = time.monotonic()
        with self._lock:
            hit = self._external_cache.get(table.name)
            if hit is not None and now - hit[0] < EXTERNAL_FINGERPRINT_TTL_S:
                return hit[1]
        snap = load_external_snapshot(table)
        with self._lock:
            self._external_cache[table.name] = (now, snap)
        return snap


def latest_delta_version(table_dir: Path) -> int:
    try:
        names = os.listdir(table_dir / DELTA_LOG)
    except FileNotFoundError:
        raise TableNotFound(f"table {table_dir.name!r} does not exist", table=table_dir.name) from None
    versions = [int(m.group(1)) for n in names if (m := _COMMIT_FILE.match(n))]
    if not versions:
        raise DataDirError(f"table {table_dir.name!r} has no commits in {table_dir / DELTA_LOG}")
    return max(versions)


def load_delta_snapshot(name: str, path: Path, version: int | None = None) -> TableSnapshot:
    from deltalake import DeltaTable

    try:
        dt = DeltaTable(str(path), version=version)
        actions = pa.table(dt.get_add_actions(flatten=True))
        schema = pa.schema(dt.schema().to_arrow())
        partitions = tuple(dt.metadata().partition_columns)
        files = tuple(_local_path(u) for u in dt.file_uris())
    except Exception as exc:  # deltalake raises several unrelated types for a damaged log
        raise DataDirError(f"table {name!r} at {path} cannot be read: {exc}") from None
    sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
    counts = actions.column("num_records").to_pylist() if actions.num_rows else []
    return TableSnapshot(
        name=name,
        kind="managed",
        format="delta",
        uri=str(path),
        schema=_strip_metadata(schema),
        files=files,
        partitions=partitions,
        version=dt.version(),
        fingerprint=f"v{dt.version()}",
        bytes=int(sum(sizes)),
        row_count=int(sum(counts)) if None not in counts else None,
        root=str(path),
    )


def load_external_snapshot(table: ExternalTable) -> TableSnapshot:
    fmt = table.format or format_from_path(table.uri)
    if fmt not in EXTERNAL_FORMATS:
        raise DataDirError(f"external table {table.name!r}: cannot tell the format of {table.uri!r}; set format=")
    files = _expand(table.uri, fmt)
    if not files:
        raise DataDirError(f"external table {table.name!r}: no files match {table.uri!r}")
    stats = [(f, os.stat(f)) for f in files]
    digest = hashlib.sha1(repr([(f, s.st_size, s.st_mtime_ns) for f, s in stats]).encode()).hexdigest()[:16]
    root = _base_dir(table.uri)
    partitions = _hive_keys(files[0], root)
    return TableSnapshot(
        name=table.name,
        kind="external",
        format=fmt,
        uri=table.uri,
        schema=_external_schema(files, fmt, root, partitions, table.options),
        files=tuple(files),
        partitions=partitions,
        fingerprint=f"x{digest}",
        bytes=sum(s.st_size for _, s in stats),
        options=dict(table.options),
        root=str(root),
    )


def _external_schema(files: list[str], fmt: str, root: Path, partitions: tuple[str, ...], options: dict) -> pa.Schema:
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(flavor="hive") if partitions else None
    if fmt == "ndjson":
        import pyarrow.json as pj

        return pj.read_json(files[0]).schema
    dataset = ds.dataset(
        files, format={"arrow": "ipc"}.get(fmt, fmt), partitioning=partitioning, partition_base_dir=str(root)
    )
    return _strip_metadata(dataset.schema)


def _expand(uri: str, fmt: str) -> list[str]:
    path = Path(uri).expanduser()
    if any(ch in uri for ch in "*?["):
        return sorted(p for p in globlib.glob(str(path), recursive=True) if os.path.isfile(p))
    if path.is_dir():
        suffixes = {ext for ext, f in EXTENSIONS.items() if f == fmt}
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return [str(path.resolve())] if path.is_file() else []


def _base_dir(uri: str) -> Path:
    """The directory above any glob characters (hive keys are read below it)."""
    parts = Path(uri).expanduser().parts
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return Path(*parts[:i]).resolve()
    path = Path(uri).expanduser().resolve()
    return path if path.is_dir() else path.parent


def _hive_keys(file: str, root: Path) -> tuple[str, ...]:
    rel = Path(file).resolve().relative_to(root).parts[:-1]
    return tuple(p.split("=", 1)[0] for p in rel if "=" in p)


def _local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _strip_metadata(schema: pa.Schema) -> pa.Schema:
    """Drop Parquet field ids and pandas metadata: clients want the logical schema."""
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])
