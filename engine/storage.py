"""Managed tables on disk: Delta Lake writes and maintenance, one atomic commit each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa

from engine.catalog import Catalog, check_table_name, latest_delta_version
from engine.errors import ConcurrentWrite, IngestError, SchemaMismatch, TableNotFound, TableReadOnly

WriteMode = Literal["append", "overwrite"]


def writable_path(catalog: Catalog, table: str):
    check_table_name(table)
    if catalog.is_external(table):
        raise TableReadOnly(f"table {table!r} is an external table declared in the config; it cannot be written")
    return catalog.table_path(table)


def write_table(
    catalog: Catalog,
    table: str,
    data: pa.RecordBatchReader | pa.Table,
    *,
    mode: WriteMode = "append",
    partition_by: Sequence[str] | None = None,
    add_columns: bool = False,
) -> int:
    """Write ``data`` as one Delta commit and return the new version."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError

    path = writable_path(catalog, table)
    try:
        write_deltalake(
            str(path),
            data,
            mode=mode,
            partition_by=list(partition_by) if partition_by else None,
            schema_mode="merge" if add_columns else ("overwrite" if mode == "overwrite" else None),
        )
    except SchemaMismatchError as exc:
        raise SchemaMismatch(f"table {table!r}: {exc}") from None
    except CommitFailedError as exc:
        raise ConcurrentWrite(f"table {table!r}: another writer committed first ({exc})") from None
    except DeltaError as exc:
        raise IngestError(f"table {table!r}: {exc}") from None
    return latest_delta_version(path)


def _delta(catalog: Catalog, table: str):
    from deltalake import DeltaTable

    name = catalog.resolve(table)
    if catalog.is_external(name):
        raise TableReadOnly(f"table {name!r} is external: it has no Delta history")
    return DeltaTable(str(catalog.table_path(name)))


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
                "rows_added": metrics.get("num_added_rows"),
                "files_added": metrics.get("num_added_files"),
                "files_removed": metrics.get("num_removed_files"),
            }
        )
    return out


def table_exists(catalog: Catalog, table: str) -> bool:
    try:
        catalog.get(table)
        return True
    except TableNotFound:
        return False
