"""One ingest against one DuckDB connection: plan the SELECT, COPY it into the table directory,
check for bad rows, and hand the written files to ``storage`` as one Delta commit.

A table on object storage is written the same way through a local staging folder: DuckDB's
COPY writes there, the files are uploaded beside the table's (in parallel), and only then is
the commit made; on any failure the uploaded objects are deleted again.

A commit that changes the table's schema or partition layout is streamed through delta-rs's
writer instead: only it can change metadata in the same commit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.catalog import add_actions
from engine.errors import BadRow, IngestError, PartitionMismatch
from engine.ingest.duck import BATCH_ROWS, engine_error
from engine.ingest.plan import Plan, plan_columns
from engine.ingest.rejects import collect, fail_on_rejects, first_reject, write_quarantine
from engine.ingest.scan import Scan, scan
from engine.ingest.sources import Source, estimate_rows
from engine.ingest.stats import delta_stats
from engine.location import TableLocation
from engine.processes import pid_alive
from engine.sqltext import quote_ident, quote_str
from engine.storage import (
    SchemaMode,
    TableState,
    WriteMode,
    WrittenFile,
    commit_files,
    remove_uncommitted,
    table_state,
    write_stream,
)

TARGET_FILE_BYTES = "256MB"  # DuckDB starts a new Parquet file past this size
UPLOAD_THREADS = 8
_NULL_TEXT = (
    "partition column {!r} holds the text 'NULL', which a hive-style partition path cannot tell from a "
    "null (partition by another column, or map it to another value first)"
)

# (input bytes read so far, input bytes in all, rows read so far: an estimate, None when unknown)
ProgressFn = Callable[[int, int, int | None], None]
Outcome = tuple[int, int, int, list[WrittenFile]]  # (version, rows, rejected rows, files written)


class Job:
    """One ingest against one DuckDB connection: plan the SELECT, COPY, check, commit."""

    def __init__(
        self,
        con: Any,
        src: Source,
        location: Path | TableLocation,
        table: str,
        mode: WriteMode,
        evolution: str,
        quarantine: Path | None,
        progress: ProgressFn | None,
        staging: Path | None = None,
    ) -> None:
        self.location = TableLocation.of(location)
        self.con, self.src, self.table = con, src, table
        self.mode, self.evolution, self.quarantine, self.progress = mode, evolution, quarantine, progress
        self.txn = uuid.uuid4().hex[:12]
        # Where COPY writes: the table's directory, or (object storage) a staging folder of this ingest.
        self.staged = staging is not None and self.location.remote
        if self.staged:
            assert staging is not None
            _remove_dead_staging(staging)
            self.path = staging / f"{os.getpid()}-{self.txn}"
        else:
            self.path = self.location.path
        self.scan = Scan("")
        self.wrote_quarantine = False

    def run(self, partition_by: Sequence[str] | None) -> Outcome:
        try:
            return self._run(partition_by)
        finally:
            if self.staged:
                shutil.rmtree(self.path, ignore_errors=True)

    def _run(self, partition_by: Sequence[str] | None) -> Outcome:
        state = table_state(self.location)
        target = state if state.exists and self.mode == "append" else TableState(exists=False)
        partitions = _partitions(self.table, target, partition_by)
        if state.exists and self.mode == "overwrite" and not partition_by:
            partitions = state.partitions  # an overwrite keeps the table's layout unless told otherwise
        # Changing partition columns needs a metadata action that an add-files commit cannot carry.
        relayout = state.exists and self.mode == "overwrite" and partitions != state.partitions
        self.scan = scan(self.con, self.src, target, self.quarantine is not None)
        plan = plan_columns(self.con, self.scan, self.src, target, self.evolution, self.table)
        for col in partitions:
            if col not in plan.schema.names:
                raise PartitionMismatch(f"partition column {col!r} is not a column of the input")
        plan = _refuse_null_text(plan, partitions)
        self._check_zones()
        if plan.changes_schema or relayout:  # only delta-rs's writer changes metadata in the same commit
            return self._stream(plan, partitions, "overwrite" if relayout else "merge")
        return self._add_files(plan, partitions, state)

    def _add_files(self, plan: Plan, partitions: Sequence[str], state: TableState) -> Outcome:
        """COPY into the table directory, then commit exactly those files; on failure, delete them."""
        written: list[WrittenFile] = []
        uploaded: list[str] = []
        try:
            written = self._copy(plan.select, partitions, plan.schema)
            rows = sum(f.rows for f in written)
            rejected = self._settle_rejects()
            if self.staged:
                self._upload(written, uploaded)
            meta = {"colonnade.rows": str(rows), "colonnade.rejected": str(rejected)}
            version = commit_files(
                self.location,
                written,
                schema=plan.schema,
                partitions=partitions,
                mode=self.mode,
                state=state,
                metadata=meta,
            )
        except BaseException:
            remove_uncommitted(self.path, self._own_files())
            if uploaded and self.location.store is not None:
                with contextlib.suppress(Exception):  # the store may be what failed: vacuum mops up
                    self.location.store.delete(uploaded)
            self._drop_quarantine()
            raise
        return version, rows, rejected, written

    def _upload(self, written: list[WrittenFile], uploaded: list[str]) -> None:
        """Put the staged files beside the table's, in parallel; ``uploaded`` grows as they land
        (what to delete if the ingest fails)."""
        from concurrent.futures import ThreadPoolExecutor

        store = self.location.store
        assert store is not None

        def put(f: WrittenFile) -> str:
            uri = self.location.file_uri(f.path)
            uploaded.append(uri)  # before the PUT: a half-finished one is deleted too
            store.upload(self.path / f.path, uri)
            return uri

        with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="colonnade-upload") as pool:
            list(pool.map(put, written))

    def _copy(self, select: str, partitions: Sequence[str], schema: pa.Schema) -> list[WrittenFile]:
        self.path.mkdir(parents=True, exist_ok=True)
        opts = [
            "FORMAT parquet",
            "RETURN_STATS true",
            "APPEND",
            f"FILENAME_PATTERN {quote_str(f'part-{self.txn}-{{uuid}}')}",
            f"FILE_SIZE_BYTES {quote_str(TARGET_FILE_BYTES)}",
        ]
        if partitions:
            opts.append("PARTITION_BY (" + ", ".join(map(quote_ident, partitions)) + ")")
        sql = f"COPY ({select}) TO {quote_str(str(self.path))} ({', '.join(opts)})"
        with _watch(self.con, self.progress, self.src):
            try:
                rows = self.con.execute(sql).fetchall()
            except Exception as exc:
                raise self._read_error(exc) from None
        return [_written(self.path, r, partitions, schema) for r in rows]

    def _stream(self, plan: Plan, partitions: Sequence[str], schema_mode: SchemaMode) -> Outcome:
        if self.location.remote:
            return self._stream_remote(plan, partitions, schema_mode)
        before = {p.name for p in self.path.rglob("*.parquet")}
        try:
            reader = self.con.sql(plan.select).to_arrow_reader(BATCH_ROWS)  # DuckDB reads the first chunk here
        except Exception as exc:
            raise self._read_error(exc) from None
        counter = _Counter(self._settle_rejects)  # runs once the input is drained, before delta-rs commits
        counted = pa.RecordBatchReader.from_batches(plan.schema, counter.count(reader, plan.schema))
        try:
            version = write_stream(
                self.path, counted, partitions=partitions, mode=self.mode, schema_mode=schema_mode, metadata={}
            )
        except Exception:
            remove_uncommitted(self.path, [p for p in self.path.rglob("*.parquet") if p.name not in before])
            self._drop_quarantine()
            if isinstance(counter.error, IngestError):  # raised inside delta-rs's writer, which wraps it
                raise counter.error from None
            if counter.error is not None:
                raise self._read_error(counter.error) from None
            raise
        new = [p for p in self.path.rglob("*.parquet") if p.name not in before]
        written = [WrittenFile(str(p), p.stat().st_size, 0, {}) for p in new]
        return version, counter.rows, counter.rejected, written

    def _stream_remote(self, plan: Plan, partitions: Sequence[str], schema_mode: SchemaMode) -> Outcome:
        """delta-rs's writer straight to object storage (files it wrote before a failure stay
        invisible, for ``vacuum``)."""
        try:
            reader = self.con.sql(plan.select).to_arrow_reader(BATCH_ROWS)
        except Exception as exc:
            raise self._read_error(exc) from None
        counter = _Counter(self._settle_rejects)
        counted = pa.RecordBatchReader.from_batches(plan.schema, counter.count(reader, plan.schema))
        try:
            version = write_stream(
                self.location, counted, partitions=partitions, mode=self.mode, schema_mode=schema_mode, metadata={}
            )
        except Exception:
            self._drop_quarantine()
            if isinstance(counter.error, IngestError):
                raise counter.error from None
            if counter.error is not None:
                raise self._read_error(counter.error) from None
            raise
        before = set(self.location.delta_table(version - 1).file_uris()) if version > 0 else set()
        fresh = [
            WrittenFile(uri[len(self.location.uri) + 1 :], size, 0, {})
            for uri, size in zip(*_files_and_sizes(self.location, version), strict=True)
            if uri not in before
        ]
        return version, counter.rows, counter.rejected, fresh

    def _check_zones(self) -> None:
        """Under quarantine, CSV timestamps are parsed by the reader (so that a bad one is a bad
        row with its line), which would drop a zone: one pass over their text refuses a value
        whose zone does not match its column first."""
        if self.scan.zone_check is None:
            return
        from engine.ingest.types import zone_reason

        try:
            found = self.con.execute(self.scan.zone_check).fetchall()
        except Exception as exc:
            raise self._read_error(exc) from None
        if found:
            name, kind, value = found[0]
            where = f"{self.src.files[0]}: " if len(self.src.files) == 1 else ""
            raise BadRow(f"{where}timestamp {value} {zone_reason(name, kind)}; nothing was written")

    def _settle_rejects(self) -> int:
        """Once the input is read and before the commit: fail on bad rows, or write them to the
        quarantine file (so a failure to write it still commits nothing). CSV's were recorded by
        the reader; NDJSON's need their own pass over the lines, made only when quarantining (when
        failing, a bad line stops the read itself)."""
        bad_lines = self.scan.bad_lines if self.quarantine is not None else None
        rejected = fail_on_rejects(self.con, self.src, self.quarantine, bad_lines)
        write_quarantine(self.con, self.quarantine)
        self.wrote_quarantine = self.quarantine is not None
        return rejected

    def _drop_quarantine(self) -> None:
        """The ingest failed: its quarantine file describes rows of a commit that never happened."""
        if self.wrote_quarantine and self.quarantine is not None:
            self.quarantine.unlink(missing_ok=True)

    def _read_error(self, exc: Exception) -> IngestError:
        """A read that failed, as an ingest error; for NDJSON, located to the first bad line."""
        import duckdb

        error = engine_error(exc, self.src)
        if isinstance(exc, duckdb.OutOfMemoryException):
            return error
        # Read errors come as DuckDB's exceptions, or as OSError through an Arrow stream.
        if self.scan.bad_lines is not None:
            rejected = collect(self.con, self.src, self.scan.bad_lines)
            if rejected:
                return BadRow(first_reject(self.con, rejected))
        if self.scan.diagnose is not None:  # CSV timestamps read as text: re-read to locate the bad row
            rejected = self._diagnose()
            if rejected:
                return BadRow(first_reject(self.con, rejected))
        return error

    def _diagnose(self) -> int:
        """Read the CSV again with its timestamps parsed by the reader, which records each row
        that does not parse (with its line) in the reject tables; return how many there are."""
        assert self.scan.diagnose is not None
        try:
            for table in ("reject_errors", "reject_scans"):  # forget the failed read's own rejects
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
            self.con.execute(f"SELECT count(COLUMNS(*)) FROM {self.scan.diagnose}").fetchall()  # reads every column
            return collect(self.con, self.src)
        except Exception:  # the diagnosis is a courtesy: the read's own error stands
            return 0

    def _own_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return list(self.path.rglob(f"part-{self.txn}-*"))


class _Counter:
    """Counts the rows of a stream, runs ``settle`` once it is drained (it returns the number of
    rejected rows), and keeps any error raised while reading: delta-rs's writer wraps exceptions
    from the stream it consumes."""

    def __init__(self, settle: Callable[[], int]) -> None:
        self.settle, self.rows, self.rejected = settle, 0, 0
        self.error: Exception | None = None

    def count(self, reader: pa.RecordBatchReader, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                self.rows += batch.num_rows
                yield batch.cast(schema) if batch.schema != schema else batch
            self.rejected = self.settle()
        except Exception as exc:
            self.error = exc
            raise


def _files_and_sizes(location: TableLocation, version: int) -> tuple[list[str], list[int]]:
    dt = location.delta_table(version)
    sizes = add_actions(dt).column("size_bytes").to_pylist()
    return dt.file_uris(), [int(s) for s in sizes]


def _remove_dead_staging(staging: Path) -> None:
    """Staging folders of ingests whose process is gone (killed): their files were never committed."""
    with contextlib.suppress(OSError):
        for folder in staging.iterdir():
            pid = folder.name.split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _partitions(table: str, target: TableState, requested: Sequence[str] | None) -> tuple[str, ...]:
    wanted = tuple(c.strip() for c in requested or () if c.strip())
    if not target.exists:
        return wanted
    if wanted and wanted != target.partitions:
        have = ", ".join(target.partitions) or "nothing"
        raise PartitionMismatch(
            f"table {table!r} is partitioned by {have}; cannot append with --partition-by "
            f"{','.join(wanted)} (use --mode overwrite to change it)"
        )
    return target.partitions


def _refuse_null_text(plan: Plan, partitions: Sequence[str]) -> Plan:
    """Make the read fail on the text 'NULL' in a text partition column.

    Hive-style paths name a null partition ``col=NULL`` (DuckDB's writer) and readers take that
    directory for a null: the text would come back as null. DuckDB raises the error mid-read, so
    it costs a comparison per row and no extra pass."""
    guarded = [c for c in partitions if pa.types.is_string(plan.schema.field(c).type)]
    if not guarded:
        return plan
    checks = ", ".join(
        f"CASE WHEN {quote_ident(c)} = 'NULL' THEN error({quote_str(_NULL_TEXT.format(c))}) ELSE {quote_ident(c)} END AS {quote_ident(c)}"
        for c in guarded
    )
    return replace(plan, select=f"SELECT * REPLACE ({checks}) FROM ({plan.select})")


def _written(root: Path, row: tuple[Any, ...], partitions: Sequence[str], schema: pa.Schema) -> WrittenFile:
    """One row of ``COPY … RETURN_STATS`` as a file to commit."""
    filename, count, size, _footer, column_stats, keys = row[:6]
    values: dict[str, str | None] = {}
    for col in partitions:
        value = (keys or {}).get(col)
        values[col] = None if value in (None, "NULL") else value  # DuckDB writes a null key as NULL
    stats = delta_stats(int(count), column_stats, schema)
    return WrittenFile(os.path.relpath(filename, root), int(size), int(count), values, stats)


@contextmanager
def _watch(con: Any, progress: ProgressFn | None, src: Source) -> Iterator[None]:
    """Report DuckDB's own progress (the fraction of input scanned) while the COPY runs, as bytes
    and as rows estimated from it (rows are exact only once the COPY returns)."""
    if progress is None:
        yield
        return
    total = src.bytes_in
    try:
        rows = estimate_rows(src)
    except (OSError, ValueError, pa.ArrowException):  # cosmetic: the read itself reports bad input
        rows = None
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            pct = con.query_progress()
            if pct >= 0:  # DuckDB's estimate of the input scanned, in percent
                share = min(pct, 100.0) / 100
                progress(int(total * share), total, None if rows is None else int(rows * share))

    thread = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
