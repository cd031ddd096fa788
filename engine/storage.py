"""Managed tables: Delta Lake commits and maintenance, one atomic commit each.

Ingestion writes Parquet files itself (DuckDB ``COPY``) straight into the table directory (on
object storage: into a local staging folder, then uploaded beside the table's other files) and
then commits them here with one Delta transaction. Until that commit the files are invisible
to every reader (Delta readers only see files named in ``_delta_log``), so a crash at any point
leaves the previous version intact; ``vacuum`` later deletes such orphans. On object storage
the commit is a conditional PUT of the next log entry: of two writers, the second finds the
version taken and delta-rs either retries (blind appends) or fails (``concurrent_write``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from engine import locks
from engine.catalog import Catalog, check_table_name
from engine.errors import (
    ColonnadeError,
    ConcurrentWrite,
    IngestError,
    SchemaMismatch,
    TableNotFound,
    TableReadOnly,
    VersionUnavailable,
)
from engine.location import TableLocation

WriteMode = Literal["append", "overwrite"]
SchemaMode = Literal["merge", "overwrite"]  # delta-rs: add columns, or replace the schema
DEFAULT_RETAIN_HOURS = 168.0  # Delta's (and Spark's) retention floor: a week of time travel
DEFAULT_TARGET_FILE_BYTES = 128 * 1024**2


def writable_location(catalog: Catalog, table: str) -> TableLocation:
    check_table_name(table)
    if catalog.is_external(table):
        raise TableReadOnly(f"table {table!r} is an external table declared in the config; it cannot be written")
    return catalog.location_of(table)


@dataclass(frozen=True)
class TableState:
    """What an ingest must know about the target before it writes: does it exist, and how."""

    exists: bool
    version: int | None = None
    schema: pa.Schema | None = None
    partitions: tuple[str, ...] = ()


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file written into the table directory, not yet committed."""

    path: str  # relative to the table directory
    size: int
    rows: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any] | None = None  # Delta file statistics; just the row count when None


def table_state(path: Path | TableLocation) -> TableState:
    location = TableLocation.of(path)
    if not location.has_log():
        return TableState(exists=False)
    try:
        dt = location.delta_table()
        schema = pa.schema(dt.schema().to_arrow())
        return TableState(True, dt.version(), schema, tuple(dt.metadata().partition_columns))
    except Exception as exc:  # deltalake raises several unrelated types for a damaged log
        raise _write_error(location, exc, "cannot be read") from exc


def _write_error(location: TableLocation, exc: Exception, what: str) -> ColonnadeError:
    """A delta-rs failure: a storage error on object storage when the store is at fault."""
    if location.store is not None:
        from engine.objectstore import is_storage_failure, storage_error

        if is_storage_failure(exc):
            return storage_error(exc, f"table {location.name!r}")
    return IngestError(f"table {location.name!r} {what}: {exc}")


def commit_files(
    path: Path | TableLocation,
    files: Sequence[WrittenFile],
    *,
    schema: pa.Schema,
    partitions: Sequence[str],
    mode: WriteMode,
    state: TableState,
    metadata: dict[str, str],
) -> int:
    """Commit already-written files as ONE Delta version and return it.

    The transaction is checked against the version ``state`` was read at: another writer that
    committed meanwhile makes delta-rs retry a blind append, or raise a conflict we turn into
    ``ConcurrentWrite`` (nothing of ours becomes visible then).
    """
    from deltalake import Schema
    from deltalake.exceptions import CommitFailedError, DeltaError
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction, create_table_with_add_actions

    location = TableLocation.of(path)
    _check_written(location, files)
    now_ms = int(time.time() * 1000)
    actions = [
        AddAction(f.path, f.size, f.partition_values, now_ms, True, json.dumps(f.stats or {"numRecords": f.rows}))
        for f in files
    ]
    props = CommitProperties(custom_metadata=metadata)
    try:
        if state.exists:
            dt = location.delta_table(state.version)
            dt.create_write_transaction(
                list[AddAction | RemoveAction](actions), mode, schema, list(partitions) or None, commit_properties=props
            )
        else:
            create_table_with_add_actions(
                location.uri,
                Schema.from_arrow(schema),
                actions,
                mode="error",
                partition_by=list(partitions) or None,
                storage_options=location.options,
                commit_properties=props,
            )
    except CommitFailedError as exc:
        raise ConcurrentWrite(
            f"table {location.name!r}: another writer committed first; nothing was written ({exc})"
        ) from None
    except DeltaError as exc:
        if not state.exists and location.has_log():  # another ingest created it first
            raise ConcurrentWrite(
                f"table {location.name!r} was created by another writer meanwhile; nothing was written"
            ) from None
        raise _write_error(location, exc, "cannot be written") from exc
    except (ValueError, TypeError, pa.ArrowException) as exc:  # e.g. a type Delta cannot store
        raise SchemaMismatch(f"table {location.name!r}: {exc}") from None
    except OSError as exc:
        raise _write_error(location, exc, "cannot be written") from exc
    except Exception as exc:  # delta-rs raises its schema checks as a bare Exception
        if "Schema error" not in str(exc):
            raise
        raise SchemaMismatch(f"table {location.name!r}: {exc}; nothing was written") from None
    return location.latest_version()


def _check_written(location: TableLocation, files: Sequence[WrittenFile]) -> None:
    """Every file about to be committed is still there, whole: a commit naming a missing file
    would make every later read of the table fail. (The writers lock keeps this host's vacuum
    away; this catches anything else that deleted or truncated one, another host included.)"""
    for f in files:
        size = location.file_size(f.path)
        if size != f.size:
            what = "is gone" if size is None else f"has {size} bytes instead of {f.size}"
            raise ConcurrentWrite(
                f"table {location.name!r}: {f.path}, written by this ingest, {what} before its commit "
                "(deleted by another process?); nothing was committed"
            )


def write_stream(
    path: Path | TableLocation,
    reader: pa.RecordBatchReader,
    *,
    partitions: Sequence[str],
    mode: WriteMode,
    schema_mode: SchemaMode | None,
    metadata: dict[str, str],
) -> int:
    """Write a stream with delta-rs's own writer, as one commit. Used when the commit must also
    change the table's schema (``add-columns``), which a plain add-files transaction cannot."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError
    from deltalake.transaction import CommitProperties

    location = TableLocation.of(path)
    try:
        write_deltalake(
            location.uri,
            reader,
            mode=mode,
            partition_by=list(partitions) or None,
            schema_mode=schema_mode,
            storage_options=location.options,
            commit_properties=CommitProperties(custom_metadata=metadata),
        )
    except SchemaMismatchError as exc:
        raise SchemaMismatch(f"table {location.name!r}: {exc}") from None
    except CommitFailedError as exc:
        raise ConcurrentWrite(
            f"table {location.name!r}: another writer committed first; nothing was written ({exc})"
        ) from None
    except (DeltaError, OSError) as exc:
        raise _write_error(location, exc, "cannot be written") from exc
    return location.latest_version()


def write_table(
    catalog: Catalog,
    table: str,
    data: pa.RecordBatchReader | pa.Table,
    *,
    mode: WriteMode = "append",
    partition_by: Sequence[str] | None = None,
    add_columns: bool = False,
) -> int:
    """Write Arrow data as one Delta commit and return the new version (delta-rs writer)."""
    location = writable_location(catalog, table)
    reader = data.to_reader() if isinstance(data, pa.Table) else data
    schema_mode: SchemaMode | None = "merge" if add_columns else ("overwrite" if mode == "overwrite" else None)
    with locks.writing(catalog.data_dir, table):
        version = write_stream(
            location, reader, partitions=partition_by or (), mode=mode, schema_mode=schema_mode, metadata={}
        )
    catalog.forget_names()
    return version


def remove_uncommitted(path: Path, files: Iterable[Path]) -> None:
    """Delete files an aborted ingest wrote, and the partition directories it left empty."""
    for file in files:
        file.unlink(missing_ok=True)
        parent = file.parent
        while parent != path and parent.is_relative_to(path):
            try:
                parent.rmdir()  # only succeeds when empty: never removes committed data
            except OSError:
                break
            parent = parent.parent
    if path.is_dir() and not TableLocation.of(path).has_log():
        with contextlib.suppress(OSError):  # not empty: someone else is writing there
            path.rmdir()  # a brand-new table that never committed leaves nothing behind


# -- maintenance ---------------------------------------------------------------------------


def _delta(catalog: Catalog, table: str) -> Any:
    return _managed(catalog, table)[1]


def _managed(catalog: Catalog, table: str) -> tuple[str, Any]:
    """(the table's name as the catalog spells it, its DeltaTable)."""
    name = catalog.resolve(table)
    if catalog.is_external(name):
        raise TableReadOnly(f"table {name!r} is external: it has no Delta history")
    location = catalog.location_of(name)
    try:
        return name, location.delta_table()
    except Exception as exc:
        raise _write_error(location, exc, "cannot be read") from exc


def _rows_added(entry: dict[str, Any]) -> int | None:
    metrics = entry.get("operationMetrics") or {}
    for value in (entry.get("colonnade.rows"), metrics.get("num_added_rows"), metrics.get("numOutputRows")):
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def history(catalog: Catalog, table: str) -> list[dict[str, Any]]:
    """Versions of a managed table, newest first."""
    out = []
    for entry in _delta(catalog, table).history():
        metrics = entry.get("operationMetrics") or {}
        out.append(
            {
                "version": entry.get("version"),
                "timestamp": entry.get("timestamp"),
                "operation": entry.get("operation"),
                "parameters": entry.get("operationParameters") or {},
                "rows_added": _rows_added(entry),
                "files_added": metrics.get("num_added_files", metrics.get("numFiles")),
                "files_removed": metrics.get("num_removed_files"),
            }
        )
    return out


def compact(catalog: Catalog, table: str, target_bytes: int = DEFAULT_TARGET_FILE_BYTES) -> dict[str, Any]:
    """Rewrite small files into ``target_bytes`` files: one commit, same rows. delta-rs marks the
    commit ``dataChange=false``, so readers and caches see the same data at the new version. Its
    new files are uncommitted until then: it holds the writers lock, as an ingest does."""
    name, dt = _managed(catalog, table)
    with locks.writing(catalog.data_dir, name):
        before = dt.version()
        metrics = dt.optimize.compact(target_size=target_bytes)
    return {
        "table": table,
        "version_before": before,
        "version": dt.version(),
        "files_added": metrics.get("numFilesAdded", 0),
        "files_removed": metrics.get("numFilesRemoved", 0),
    }


@dataclass(frozen=True)
class Vacuumed:
    files: list[str]  # deleted, or that would be with dry_run
    writers: bool  # a writer held the table: files no version names were kept (they may be its own)


def vacuum(
    catalog: Catalog,
    table: str,
    retain_hours: float = DEFAULT_RETAIN_HOURS,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> Vacuumed:
    """Delete the files no version of the last ``retain_hours`` needs, and the leftovers of
    crashed ingests (files no version names) — never those of an ingest still running.

    Below Delta's 168-hour floor only with ``force``: a reader (or a rollback) of an older
    version could find its files gone. Leftovers are listed from the directory (``full``) only
    while no writer holds the table, and no writer can start until the files are deleted."""
    if not retain_hours >= 0:  # also refuses NaN
        raise IngestError(f"--retain-hours must be a number >= 0, not {retain_hours}")
    if retain_hours < DEFAULT_RETAIN_HOURS and not force:
        raise IngestError(
            f"--retain-hours {retain_hours:g} is below the {DEFAULT_RETAIN_HOURS:g}-hour retention floor: "
            "readers and rollbacks of the versions in between would find their files gone (pass --force to go lower)"
        )
    name, dt = _managed(catalog, table)
    with locks.maintenance(catalog.data_dir, name), locks.no_writers(catalog.data_dir, name) as alone:
        dt.update_incremental()  # the latest version, now that no rollback can commit
        files = dt.vacuum(
            retention_hours=int(retain_hours), dry_run=dry_run, enforce_retention_duration=False, full=alone
        )
    return Vacuumed(files, writers=not alone)


def rollback(catalog: Catalog, table: str, version: int) -> int:
    """A NEW commit whose contents equal ``version`` (history is kept; it is not a reset).
    A version whose files were vacuumed cannot come back: ``VersionUnavailable``."""
    name, dt = _managed(catalog, table)
    if not 0 <= version <= dt.version():
        raise IngestError(f"table {table!r} has versions 0..{dt.version()}; cannot roll back to {version}")
    with locks.maintenance(catalog.data_dir, name):  # no vacuum deletes its files meanwhile
        missing = _missing_files(catalog.location_of(name), version)
        if missing:
            raise VersionUnavailable(
                f"table {table!r}: version {version} cannot be restored: {missing} of its data files are gone "
                "(vacuumed); `colonnade history` lists the versions, later ones may still be whole"
            )
        dt.update_incremental()
        if version == dt.version():
            raise IngestError(f"table {table!r}: version {version} is the current version; nothing to roll back")
        try:
            dt.restore(version)
        except Exception as exc:  # deltalake raises several unrelated types
            if "missing file" in str(exc).lower():
                raise VersionUnavailable(
                    f"table {table!r}: version {version} cannot be restored: its data files are gone (vacuumed)"
                ) from None
            raise IngestError(f"table {table!r}: cannot restore version {version}: {exc}") from None
    return dt.version()


def _missing_files(location: TableLocation, version: int) -> int:
    """How many data files of ``version`` are gone (all of them when its log entry is)."""
    try:
        files = location.delta_table(version).file_uris()
    except Exception:  # the log of that version was cleaned up
        return 1
    return sum(not location.exists(f) for f in files)


def table_exists(catalog: Catalog, table: str) -> bool:
    try:
        catalog.get(table)
        return True
    except TableNotFound:
        return False


def file_size(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_size
