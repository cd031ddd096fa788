"""Ingestion: files or in-memory data → one Delta commit, streamed by DuckDB.

The data path is one DuckDB ``COPY (SELECT … FROM read_csv/read_json/read_parquet/arrow) TO
<table dir> (FORMAT parquet, PARTITION_BY …, RETURN_STATS)``: DuckDB parses, casts, partitions
and encodes in parallel, batch by batch, within its memory limit; Python never touches rows.
The files it returns are then committed as ONE Delta version (``storage.commit_files``). Until
that commit no reader can see them; on any failure they are deleted, and after a crash
``vacuum`` removes them. Measured alternatives (bench/ingest.py): pyarrow/Polars readers feeding
delta-rs's writer were ~1.3x slower than this at the same memory.

Bad CSV rows are found by DuckDB's reject tables (``store_rejects``): the ingest either fails
naming file, line and column, or writes them to a quarantine file and commits the rest.

The package follows the data flow: ``sources`` (what to read) → ``scan`` (how DuckDB reads it)
→ ``plan`` (the table's columns and the schema policy) → ``job`` (COPY, check, commit), with
``rejects`` for bad rows and ``summary`` for what was done.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import locks
from engine.catalog import Catalog
from engine.errors import IngestError
from engine.ingest.duck import BATCH_ROWS, connect
from engine.ingest.job import TARGET_FILE_BYTES, Job, ProgressFn
from engine.ingest.plan import Plan, plan_columns, widens
from engine.ingest.sources import FORMATS, Source, estimate_rows, open_source
from engine.ingest.summary import IngestSummary
from engine.ingest.types import TYPE_TABLE
from engine.location import state_path
from engine.storage import WriteMode, writable_location

__all__ = [
    "BATCH_ROWS",
    "FORMATS",
    "TARGET_FILE_BYTES",
    "TYPE_TABLE",
    "IngestSummary",
    "Plan",
    "ProgressFn",
    "Source",
    "estimate_rows",
    "ingest",
    "open_source",
    "plan_columns",
    "widens",
]


def ingest(
    catalog: Catalog,
    source: Any,
    table: str,
    *,
    format: str | None = None,
    partition_by: Sequence[str] | None = None,
    mode: WriteMode = "append",
    schema_evolution: str = "strict",
    on_error: str = "fail",
    progress: ProgressFn | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> IngestSummary:
    """Write ``source`` (paths, globs, directories, ``"-"`` for stdin, a pyarrow Table or
    RecordBatchReader, a Polars or pandas frame) into managed ``table`` as one Delta commit."""
    started = time.perf_counter()
    location = writable_location(catalog, table)  # refuse a bad or read-only name before reading any input
    _check_options(mode, schema_evolution)
    quarantine = _parse_on_error(on_error)
    spool = state_path(catalog.data_dir, "tmp")
    src = open_source(source, format, spool_dir=spool, stores=catalog.store_for)
    try:
        # The writers lock, from before the first file is written until the commit: vacuum never
        # takes this ingest's uncommitted files for a crashed ingest's leftovers.
        with locks.writing(catalog.data_dir, table), connect(catalog.data_dir, threads, memory_limit) as con:
            staging = state_path(catalog.data_dir, "staging") if location.remote else None
            job = Job(con, src, location, table, mode, schema_evolution, quarantine, progress, staging)
            version, rows, rejected, written = job.run(partition_by)
    finally:
        src.cleanup()
        catalog.forget_names()
    return IngestSummary(
        table=table,
        version=version,
        rows=rows,
        files=len(src.files),
        bytes_in=src.bytes_in,
        seconds=time.perf_counter() - started,
        rejected=rejected,
        bytes_out=sum(f.size for f in written),
        files_written=len(written),
        quarantine=str(quarantine) if quarantine else None,
    )


def _check_options(mode: str, schema_evolution: str) -> None:
    if mode not in ("append", "overwrite"):
        raise IngestError(f"unknown mode {mode!r} (append or overwrite)")
    if schema_evolution not in ("strict", "add-columns"):
        raise IngestError(f"unknown schema evolution {schema_evolution!r} (strict or add-columns)")


def _parse_on_error(on_error: str) -> Path | None:
    if on_error == "fail":
        return None
    kind, _, target = on_error.partition("=")
    if kind != "quarantine" or not target:
        raise IngestError(f"--on-error must be 'fail' or 'quarantine=PATH', not {on_error!r}")
    return Path(target).expanduser().resolve()
