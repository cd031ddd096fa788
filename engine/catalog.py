"""What tables exist: managed Delta tables under the data dir, external files from the config.

The catalog hands out immutable ``TableSnapshot``s. A managed table's snapshot is pinned to one
Delta version (its live file list), so a query reads one version even while an ingest commits
the next; a new version written by another process is noticed on the next lookup, by reading
the latest commit number in ``_delta_log`` (a directory listing, no JSON parsing).

The data directory may be an object-store prefix (``s3://bucket/prefix``): tables are then
listed from the bucket, a new version written by another host is noticed at the next lookup
by one request for the next commit's object, and engines read local copies of the pinned
version's files (``localize``, through ``engine.filecache``).
"""

from __future__ import annotations

import functools
import glob as globlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from engine.config import EXTERNAL_FORMATS, ExternalTable, Settings, StorageSettings, is_object_store
from engine.errors import ColonnadeError, DataDirError, InvalidTableName, TableNotFound
from engine.location import DELTA_LOG, TableLocation, state_path

if TYPE_CHECKING:
    from engine.filecache import FileCache, Lease
    from engine.objectstore import ObjectStore

TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
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
PROBE_THREADS = 8  # version checks of one query's object-store tables, in parallel
REMOTE_NAMES_TTL_S = 1.0  # how long a listing of an object-store data directory's tables is reused
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
    file_sizes: tuple[int, ...] = ()  # each file's size, when known without a stat (Delta's log)

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

    def __init__(
        self,
        data_dir: str | Path,
        external: Iterable[ExternalTable] = (),
        *,
        create: bool = False,
        storage: StorageSettings | None = None,
    ):
        self.storage = storage if storage is not None else StorageSettings()
        self.store: ObjectStore | None = None
        if is_object_store(data_dir):
            from engine.objectstore import ObjectStore, local_dir

            self.store = ObjectStore(str(data_dir), self.storage)
            self.store.check()  # a missing bucket or refused credentials: one clear error now
            self.location = self.store.uri
            self.data_dir = local_dir(self.location, self.storage)  # local state: locks, spill, cache
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.data_dir = Path(data_dir).expanduser().resolve()
            self.location = str(self.data_dir)
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
        self._stores: dict[str, ObjectStore] = {}  # by bucket: external tables on object storage
        self._remote_names: tuple[float, list[str]] | None = None
        self._remote_known: set[str] = set()  # tables seen with a log: not probed again
        self._files: FileCache | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = False) -> Catalog:
        return cls(settings.data_location, settings.tables, create=create, storage=settings.storage)

    @property
    def remote(self) -> bool:
        """Whether the data directory is on object storage."""
        return self.store is not None

    # -- listing ---------------------------------------------------------------------------

    def managed_names(self) -> list[str]:
        if self.store is not None:
            return self._list_remote()
        try:
            entries = list(os.scandir(self.data_dir))
        except OSError as exc:
            raise DataDirError(f"cannot read data directory {self.data_dir}: {exc.strerror}") from exc
        return sorted(
            e.name
            for e in entries
            if e.is_dir() and TABLE_NAME.match(e.name) and os.path.isdir(os.path.join(e.path, DELTA_LOG))
        )

    def _list_remote(self) -> list[str]:
        """The tables under the object-store prefix: its "directories" holding a Delta log (one
        listing, reused for ``REMOTE_NAMES_TTL_S``; a table seen once is not probed again)."""
        assert self.store is not None
        now = time.monotonic()
        with self._lock:
            if self._remote_names is not None and now - self._remote_names[0] < REMOTE_NAMES_TTL_S:
                return self._remote_names[1]
            known = set(self._remote_known)
        names = [
            d
            for d in self.store.list_dirs(self.store.root)
            if TABLE_NAME.match(d) and (d in known or self.location_of(d).has_log())
        ]
        with self._lock:
            self._remote_names = (now, names)
            self._remote_known = set(names)
        return names

    def names_stamp(self) -> object:
        """Changes whenever a table is created or dropped (what validation depends on)."""
        if self.store is not None:
            return tuple(self._list_remote())
        try:
            return os.stat(self.data_dir).st_mtime_ns
        except OSError:
            return -1

    def forget_names(self) -> None:
        """A table was just created here: list again at the next lookup."""
        with self._lock:
            self._remote_names = None

    def names(self) -> list[str]:
        external = [t.name for t in self._external.values()]
        return sorted({*self.managed_names(), *external}, key=str.lower)

    def table_dirs(self) -> list[str]:
        """The directories holding table files: each managed table's and each external table's
        base. Engines may read these and nothing else (not the data dir's ``.colonnade``)."""
        if self.store is not None:
            dirs = {str(self.files.table_dir(name)) for name in self.managed_names()}
        else:
            dirs = {str(self.data_dir / name) for name in self.managed_names()}
        for table in self._external.values():
            if is_object_store(table.uri):
                dirs.add(str(self.files.table_dir(table.name, "external")))
            else:
                dirs.add(str(_base_dir(table.uri)))
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

    def location_of(self, name: str) -> TableLocation:
        """Where managed table ``name`` lives (a directory, or a prefix in object storage)."""
        check_table_name(name)
        if self.store is not None:
            return TableLocation(name, self.store.table_uri(name), self.store)
        return TableLocation(name, str(self.data_dir / name))

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
        TableNotFound: its Delta log is gone. On object storage each table's check is a
        request: they go out together, so a query waits for one round trip, not one per table."""
        names = list(canonical)
        if self.store is not None and len(names) > 1:
            return dict(zip(names, self._probe_pool.map(self._snapshot_of, names), strict=True))
        return {n: self._snapshot_of(n) for n in names}

    def _snapshot_of(self, name: str) -> TableSnapshot:
        if name.lower() in self._external:
            return self._external_snapshot(self._external[name.lower()])
        return self._managed_snapshot(name)

    @functools.cached_property
    def _probe_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="colonnade-probe")

    def _managed_snapshot(self, name: str) -> TableSnapshot:
        if self.store is not None:
            return self._remote_snapshot(name)
        return self._local_snapshot(name)

    def _remote_snapshot(self, name: str) -> TableSnapshot:
        """The table at its latest version. Delta commits are numbered without gaps, so while
        the commit after the cached version does not exist (one HEAD request) nothing was
        committed since, by this host or any other."""
        location = self.location_of(name)
        with self._lock:
            cached = self._managed.get(name)
        if cached is not None and not location.has_commit((cached[1].version or 0) + 1):
            return cached[1]
        snap = load_delta_snapshot(name, location)
        with self._lock:
            self._managed[name] = (0, snap)
        return snap

    def _local_snapshot(self, name: str) -> TableSnapshot:
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
        snap = cached[1] if fresh and cached is not None else load_delta_snapshot(name, TableLocation(name, str(path)))
        with self._lock:
            self._managed[name] = (mtime, snap)
        return snap

    def _external_snapshot(self, table: ExternalTable) -> TableSnapshot:
        now = time.monotonic()
        with self._lock:
            hit = self._external_cache.get(table.name)
            if hit is not None and now - hit[0] < EXTERNAL_FINGERPRINT_TTL_S:
                return hit[1]
        store = self.store_for(table.uri) if is_object_store(table.uri) else None
        snap = load_external_snapshot(table, store)
        with self._lock:
            self._external_cache[table.name] = (now, snap)
        return snap

    # -- object storage --------------------------------------------------------------------

    def store_for(self, uri: str) -> ObjectStore:
        """The client of the bucket ``uri`` names (the data directory's, or one per bucket)."""
        from engine.objectstore import ObjectStore, ObjectURI

        bucket = ObjectURI.parse(uri).bucket
        if self.store is not None and self.store.root.bucket == bucket:
            return self.store
        with self._lock:
            if bucket not in self._stores:
                self._stores[bucket] = ObjectStore(f"s3://{bucket}", self.storage)
            return self._stores[bucket]

    @property
    def files(self) -> FileCache:
        """This process's read cache of object-store files."""
        from engine.filecache import FileCache

        with self._lock:
            if self._files is None:
                workers = max(1, int(os.environ.get("COLONNADE_SERVER_WORKERS", "1") or 1))
                self._files = FileCache(state_path(self.data_dir, "cache"), self.storage.cache_bytes // workers)
            return self._files

    def localize(
        self, tables: dict[str, TableSnapshot], check: Callable[[], None]
    ) -> tuple[dict[str, TableSnapshot], Lease | None]:
        """``tables`` with object-store files replaced by local copies, and the lease that keeps
        them until the query ends (None when every table is local already)."""
        remote = {n: s for n, s in tables.items() if is_object_store(s.root) and s.files}
        if not remote:
            return tables, None
        from engine.filecache import Lease

        lease = Lease(self.files)
        try:
            local = dict(tables)
            for name, snap in remote.items():
                sizes = dict(zip(snap.files, snap.file_sizes, strict=True)) if snap.file_sizes else {}
                local[name] = self.files.localize(snap, self.store_for(snap.root), sizes, lease, check)
        except BaseException:
            lease.release()
            raise
        return local, lease

    def close(self) -> None:
        if self._files is not None:
            self._files.close()
        if "_probe_pool" in self.__dict__:
            self._probe_pool.shutdown(wait=False)


def latest_delta_version(table_dir: Path | TableLocation) -> int:
    return TableLocation.of(table_dir).latest_version()


def load_delta_snapshot(name: str, path: Path | TableLocation, version: int | None = None) -> TableSnapshot:
    from urllib.parse import unquote

    location = TableLocation.of(path)
    try:
        dt = location.delta_table(version)
        actions = add_actions(dt)
        schema = pa.schema(dt.schema().to_arrow())
        partitions = tuple(dt.metadata().partition_columns)
        files = tuple(_local_path(u) for u in dt.file_uris())
    except Exception as exc:  # deltalake raises several unrelated types for a damaged log
        raise _unreadable(name, location, exc) from None
    paths = actions.column("path").to_pylist() if actions.num_rows else []
    sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
    counts = actions.column("num_records").to_pylist() if actions.num_rows else []
    by_path = {location.file_uri(unquote(p)): int(size) for p, size in zip(paths, sizes, strict=True)}
    return TableSnapshot(
        name=name,
        kind="managed",
        format="delta",
        uri=location.uri,
        schema=_strip_metadata(schema),
        files=files,
        partitions=partitions,
        version=dt.version(),
        fingerprint=f"v{dt.version()}",
        bytes=int(sum(sizes)),
        row_count=int(sum(counts)) if None not in counts else None,
        root=location.uri,
        file_sizes=tuple(by_path[f] for f in files) if set(files) <= by_path.keys() else (),
    )


def _unreadable(name: str, location: TableLocation, exc: Exception) -> ColonnadeError:
    if location.store is None:
        return DataDirError(f"table {name!r} at {location.uri} cannot be read: {exc}")
    from deltalake.exceptions import TableNotFoundError

    from engine.objectstore import storage_error

    if isinstance(exc, TableNotFoundError):
        return TableNotFound(f"table {name!r} does not exist", table=name)
    return storage_error(exc, f"cannot read table {name!r} in {location.store.uri}", missing_is_version=True)


def load_external_snapshot(table: ExternalTable, store: ObjectStore | None = None) -> TableSnapshot:
    fmt = table.format or format_from_path(table.uri)
    if fmt not in EXTERNAL_FORMATS:
        raise DataDirError(f"external table {table.name!r}: cannot tell the format of {table.uri!r}; set format=")
    if store is not None:
        root, stats = store.match(table.uri, {ext for ext, f in EXTENSIONS.items() if f == fmt})
    else:
        root = str(_base_dir(table.uri))
        stats = [(f, (st := os.stat(f)).st_size, st.st_mtime_ns) for f in _expand(table.uri, fmt)]
    files = [f for f, _, _ in stats]
    if not files:
        raise DataDirError(f"external table {table.name!r}: no files match {table.uri!r}")
    digest = hashlib.sha1(repr(stats).encode()).hexdigest()[:16]
    partitions = _hive_keys(files[0], root)
    return TableSnapshot(
        name=table.name,
        kind="external",
        format=fmt,
        uri=table.uri,
        schema=_external_schema(files, fmt, root, partitions, store),
        files=tuple(files),
        partitions=partitions,
        fingerprint=f"x{digest}",
        bytes=sum(size for _, size, _ in stats),
        options=dict(table.options),
        root=root,
        file_sizes=tuple(size for _, size, _ in stats),
    )


def _external_schema(
    files: list[str], fmt: str, root: str, partitions: tuple[str, ...], store: ObjectStore | None
) -> pa.Schema:
    import pyarrow.dataset as ds

    filesystem = None
    if store is not None:  # pyarrow reads footers (or a first line) over its S3 client
        from engine.objectstore import ObjectURI

        filesystem = store.fs
        files = [ObjectURI.parse(f).path for f in files]
        root = ObjectURI.parse(root).path
    partitioning = ds.partitioning(flavor="hive") if partitions else None
    try:
        if fmt == "ndjson":
            import pyarrow.json as pj

            if filesystem is None:
                return pj.read_json(files[0]).schema
            with filesystem.open_input_stream(files[0]) as stream:
                return pj.read_json(stream).schema
        dataset = ds.dataset(
            files,
            format={"arrow": "ipc"}.get(fmt, fmt),
            partitioning=partitioning,
            partition_base_dir=root,
            filesystem=filesystem,
        )
        return _strip_metadata(dataset.schema)
    except (OSError, pa.ArrowException) as exc:
        if store is None:
            raise
        from engine.objectstore import storage_error

        raise storage_error(exc, "cannot read an external table's files") from None


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


def _hive_keys(file: str, root: str | Path) -> tuple[str, ...]:
    if is_object_store(file):
        rel = tuple(file[len(str(root).rstrip("/")) + 1 :].split("/")[:-1])
    else:
        rel = Path(file).resolve().relative_to(root).parts[:-1]
    return tuple(p.split("=", 1)[0] for p in rel if "=" in p)


def add_actions(dt: Any) -> pa.Table:
    """A Delta table's add actions (one row per data file) as a pyarrow Table. Read through the
    Arrow C stream: ``pa.table()`` on deltalake's arro3 table first imports pandas to rule out a
    DataFrame, 0.3 s in every process that reads a catalog (each CLI command)."""
    return pa.RecordBatchReader.from_stream(dt.get_add_actions(flatten=True)).read_all()


def _local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _strip_metadata(schema: pa.Schema) -> pa.Schema:
    """Drop Parquet field ids and pandas metadata: clients want the logical schema."""
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])
