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
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from engine.catalog import Catalog, _expand, format_from_path
from engine.errors import BadRow, EmptySource, IngestError, PartitionMismatch, SchemaMismatch, SourceNotFound, UnknownFormat
from engine.storage import (
    TableState,
    WriteMode,
    WrittenFile,
    commit_files,
    remove_uncommitted,
    table_state,
    writable_path,
    write_stream,
)

FORMATS = ("csv", "ndjson", "parquet", "arrow")
BATCH_ROWS = 128 * 1024
TARGET_FILE_BYTES = "256MB"  # DuckDB starts a new Parquet file past this size
_SOURCE = "_colonnade_source"
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
PAUSE_ENV = "_COLONNADE_INGEST_PAUSE"  # test hook: "stage" → print it and sleep (crash tests)

ProgressFn = Callable[[int, int], None]  # (input bytes read so far, input bytes in all)


@dataclass
class IngestSummary:
    table: str
    version: int
    rows: int
    files: int
    bytes_in: int
    seconds: float
    rejected: int = 0
    bytes_out: int = 0
    files_written: int = 0
    quarantine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rejected = f", {self.rejected:,} rejected → {self.quarantine}" if self.quarantine else ""
        return (f"{self.table}: {self.rows:,} rows{rejected} from {self.files} file(s), "
                f"{_mb(self.bytes_in)} in, {_mb(self.bytes_out)} out, {self.seconds:.2f} s → version {self.version}")  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@dataclass
class Source:
    """What to read: files of one format, or an in-memory Arrow-compatible object."""

    fmt: str
    files: list[str] = field(default_factory=list)
    data: Any = None
    bytes_in: int = 0
    compression: str | None = None
    spooled: Path | None = None  # stdin copied to a temp file, deleted after the ingest

    @property
    def typed(self) -> bool:
        """Typed sources carry their own schema; text ones (CSV, NDJSON) are cast to the table's."""
        return self.fmt not in ("csv", "ndjson")


# -- entry point ---------------------------------------------------------------------------


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
    path = writable_path(catalog, table)  # refuse a bad or read-only name before reading any input
    _check_options(mode, schema_evolution)
    quarantine = _parse_on_error(on_error)
    src = open_source(source, format, spool_dir=catalog.data_dir / ".colonnade" / "tmp")
    try:
        with _duckdb(catalog.data_dir, threads, memory_limit) as con:
            job = _Job(con, src, path, table, mode, schema_evolution, quarantine, progress)
            version, rows, rejected, written = job.run(partition_by)
    finally:
        if src.spooled is not None:
            src.spooled.unlink(missing_ok=True)
    return IngestSummary(
        table=table, version=version, rows=rows, files=len(src.files), bytes_in=src.bytes_in,
        seconds=time.perf_counter() - started, rejected=rejected, bytes_out=sum(f.size for f in written),
        files_written=len(written), quarantine=str(quarantine) if quarantine else None,
    )  # fmt: skip


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


def _pause(stage: str) -> None:
    """Crash-test hook: with ``_COLONNADE_INGEST_PAUSE=stage`` the process announces the stage
    on stderr and sleeps there, so a test can SIGKILL it at an exact point."""
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"paused:{stage}", file=sys.stderr, flush=True)
        time.sleep(3600)


@contextmanager
def _duckdb(data_dir: Path, threads: int | None, memory_limit: str | None) -> Iterator[Any]:
    import duckdb

    spill = data_dir / ".colonnade" / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads or os.cpu_count() or 2, "memory_limit": memory_limit or "1GB"})
    try:
        con.execute(f"SET temp_directory = {_lit(str(spill))}")  # never spill into the cwd
        con.execute("SET enable_progress_bar = true")  # feeds query_progress(); nothing is printed
        con.execute("SET enable_progress_bar_print = false")
        yield con
    finally:
        con.close()


# -- sources -------------------------------------------------------------------------------


def open_source(source: Any, format: str | None = None, *, spool_dir: Path | None = None) -> Source:
    """Resolve paths, globs, directories, stdin or in-memory data into one ``Source``."""
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
    spooled = None
    for p in map(str, paths):
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
    src.bytes_in = sum(_check_file(f) for f in names)
    src.compression = _compression(src)
    return src


def _expand_one(pattern: str, format: str | None) -> list[tuple[str, str]]:
    fmt = format or format_from_path(pattern)
    if fmt is None:
        if Path(pattern).is_dir():  # a directory without --format: take the one format it holds
            found = {format_from_path(f) for f in _expand(pattern + "/**/*", "csv")} - {None}
            if len(found) == 1:
                fmt = found.pop()
        if fmt is None:
            raise UnknownFormat(f"cannot tell the format of {pattern}; pass --format ({', '.join(FORMATS)})")
    matched = _expand(pattern, fmt)
    if not matched:
        what = "no files match" if any(ch in pattern for ch in "*?[") or Path(pattern).is_dir() else "no such file"
        raise SourceNotFound(f"{pattern}: {what}")
    return [(f, fmt) for f in matched]


def _check_file(path: str) -> int:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise SourceNotFound(f"{path}: {exc.strerror}") from None
    if size == 0:
        raise EmptySource(f"{path}: file is empty")
    if not os.access(path, os.R_OK):
        raise SourceNotFound(f"{path}: permission denied")
    return size


def _compression(src: Source) -> str | None:
    """Detect gzip/zstd by magic bytes, whatever the name says (a ``.csv`` that is gzip)."""
    found = set()
    for f in src.files:
        with open(f, "rb") as fh:
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


def _spool_stdin(stream: IO[bytes], spool_dir: Path) -> Path:
    """Copy stdin to a temp file in chunks: the readers need to seek (sniffing, Parquet footers)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="stdin-", dir=spool_dir)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    return Path(name)


# -- the job -------------------------------------------------------------------------------


class _Job:
    """One ingest against one DuckDB connection: plan the SELECT, COPY, check, commit."""

    def __init__(self, con: Any, src: Source, path: Path, table: str, mode: WriteMode, evolution: str,
                 quarantine: Path | None, progress: ProgressFn | None) -> None:  # fmt: skip
        self.con, self.src, self.path, self.table = con, src, path, table
        self.mode, self.evolution, self.quarantine, self.progress = mode, evolution, quarantine, progress
        self.txn = uuid.uuid4().hex[:12]

    def run(self, partition_by: Sequence[str] | None) -> tuple[int, int, int, list[WrittenFile]]:
        state = table_state(self.path)
        target = state if state.exists and self.mode == "append" else TableState(exists=False)
        partitions = _partitions(self.table, target, partition_by)
        if state.exists and self.mode == "overwrite" and not partition_by:
            partitions = state.partitions  # an overwrite keeps the table's layout unless told otherwise
        # Changing partition columns needs a metadata action that an add-files commit cannot carry.
        relayout = state.exists and self.mode == "overwrite" and partitions != state.partitions
        scan = self._scan(target)
        plan = plan_columns(self.con, scan, self.src, target, self.evolution, self.table)
        for col in partitions:
            if col not in plan.schema.names:
                raise PartitionMismatch(f"partition column {col!r} is not a column of the input")
        _pause("before_write")
        if plan.changes_schema or relayout:  # only delta-rs's writer changes metadata in the same commit
            return self._stream(plan, partitions, "overwrite" if relayout else "merge")
        written: list[WrittenFile] = []
        try:
            written = self._copy(plan.select, partitions)
            rows = sum(f.rows for f in written)
            rejected = self._check_rejects()
            _pause("before_commit")
            meta = {"colonnade.rows": str(rows), "colonnade.rejected": str(rejected)}
            version = commit_files(self.path, written, schema=plan.schema, partitions=partitions, mode=self.mode,
                                   state=state, metadata=meta)  # fmt: skip
        except BaseException:
            remove_uncommitted(self.path, self._own_files())
            raise
        self._write_quarantine()
        return version, rows, rejected, written

    # -- reading ---------------------------------------------------------------------------

    def _scan(self, target: TableState) -> str:
        src = self.src
        if src.data is not None:
            self.con.register(_SOURCE, src.data)
            return _ident(_SOURCE)
        files = "[" + ", ".join(_lit(f) for f in src.files) + "]"
        opts = [f"union_by_name = {str(len(src.files) > 1).lower()}"]
        if src.compression:
            opts.append(f"compression = {_lit(src.compression)}")
        if src.fmt == "csv":
            # Reject tables give file/line/column for every bad row (and make the sniffer
            # tolerant of a ragged row in its sample instead of guessing a wrong dialect).
            opts = opts[1:] + ["header = true", "store_rejects = true"]  # rejects exclude union_by_name
            types = _csv_types(self.con, target)
            if types:
                opts.append("types = {" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in types.items()) + "}")
            return f"read_csv({files}, {', '.join(opts)})"
        if src.fmt == "ndjson":
            return f"read_json({files}, format = 'newline_delimited', {', '.join(opts)})"
        if src.fmt == "parquet":
            return f"read_parquet({files}, {opts[0]})"
        import pyarrow.dataset as ds  # Arrow IPC files: DuckDB has no reader of its own

        self.con.register(_SOURCE, ds.dataset(src.files, format="ipc").scanner(batch_size=BATCH_ROWS).to_reader())
        return _ident(_SOURCE)

    # -- writing ---------------------------------------------------------------------------

    def _copy(self, select: str, partitions: Sequence[str]) -> list[WrittenFile]:
        self.path.mkdir(parents=True, exist_ok=True)
        opts = ["FORMAT parquet", "RETURN_STATS true", "APPEND", f"FILENAME_PATTERN {_lit(f'part-{self.txn}-{{uuid}}')}",
                f"FILE_SIZE_BYTES {_lit(TARGET_FILE_BYTES)}"]  # fmt: skip
        if partitions:
            opts.append("PARTITION_BY (" + ", ".join(map(_ident, partitions)) + ")")
        sql = f"COPY ({select}) TO {_lit(str(self.path))} ({', '.join(opts)})"
        with self._watch():
            try:
                rows = self.con.execute(sql).fetchall()
            except Exception as exc:
                raise _engine_error(exc, self.src) from None
        _pause("after_write")
        return [_written(self.path, r, partitions) for r in rows]

    def _stream(self, plan: Plan, partitions: Sequence[str], schema_mode: str) -> tuple[int, int, int, list[WrittenFile]]:
        before = {p.name for p in self.path.rglob("*.parquet")}
        counter = _Counter(self.con if self.quarantine is None and self.src.fmt == "csv" else None, self.src)
        reader = self.con.sql(plan.select).to_arrow_reader(BATCH_ROWS)
        counted = pa.RecordBatchReader.from_batches(plan.schema, counter.count(reader, plan.schema))
        try:
            version = write_stream(self.path, counted, partitions=partitions, mode=self.mode, schema_mode=schema_mode,
                                   metadata={})  # fmt: skip
        except Exception:
            remove_uncommitted(self.path, [p for p in self.path.rglob("*.parquet") if p.name not in before])
            raise
        rejected = self._rejected_rows() if self.src.fmt == "csv" else 0
        self._write_quarantine()
        new = [p for p in self.path.rglob("*.parquet") if p.name not in before]
        written = [WrittenFile(str(p), p.stat().st_size, 0, {}) for p in new]
        return version, counter.rows, rejected, written

    @contextmanager
    def _watch(self) -> Iterator[None]:
        """Report DuckDB's own progress (fraction of input scanned) while the COPY runs."""
        if self.progress is None:
            yield
            return
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.2):
                pct = self.con.query_progress()
                if pct >= 0:  # DuckDB's estimate of the input scanned, in percent
                    total = self.src.bytes_in
                    self.progress(int(total * min(pct, 100.0) / 100), total)

        thread = threading.Thread(target=poll, name="ingest-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _own_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return list(self.path.rglob(f"part-{self.txn}-*"))

    # -- bad rows --------------------------------------------------------------------------

    def _rejected_rows(self) -> int:
        if self.src.fmt != "csv":
            return 0
        return int(self.con.execute("SELECT count(DISTINCT (file_id, line)) FROM reject_errors").fetchone()[0])

    def _check_rejects(self) -> int:
        rejected = self._rejected_rows()
        if rejected and self.quarantine is None:
            raise BadRow(_first_reject(self.con, rejected))
        return rejected

    def _write_quarantine(self) -> None:
        if self.quarantine is None:
            return
        fmt = {".parquet": "parquet", ".ndjson": "json", ".jsonl": "json", ".json": "json"}.get(
            self.quarantine.suffix.lower(), "csv")  # fmt: skip
        self.quarantine.parent.mkdir(parents=True, exist_ok=True)
        if self.src.fmt != "csv":  # only CSV has per-row rejects; write an empty, well-formed file
            self.con.execute("CREATE TEMP TABLE reject_errors AS SELECT NULL::VARCHAR AS file_path, NULL::BIGINT AS line, "
                             "NULL::VARCHAR AS column_name, NULL::VARCHAR AS error_type, NULL::VARCHAR AS error_message, "
                             "NULL::VARCHAR AS csv_line, NULL::UBIGINT AS scan_id, NULL::UBIGINT AS file_id, NULL::UBIGINT AS column_idx LIMIT 0")  # fmt: skip
            self.con.execute("CREATE TEMP TABLE reject_scans AS SELECT NULL::UBIGINT AS scan_id, NULL::UBIGINT AS file_id, "
                             "NULL::VARCHAR AS file_path LIMIT 0")  # fmt: skip
        self.con.execute(
            # One quarantined row per bad input row, even when several of its columns failed.
            "COPY (SELECT s.file_path AS file, e.line, first(e.column_name ORDER BY e.column_idx) AS column, "
            "first(e.error_type ORDER BY e.column_idx) AS error_type, "
            "string_agg(e.error_message, '; ' ORDER BY e.column_idx) AS reason, first(e.csv_line) AS row "
            "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) GROUP BY ALL ORDER BY file, line) "
            f"TO {_lit(str(self.quarantine))} (FORMAT {fmt})"
        )


def _partitions(table: str, target: TableState, requested: Sequence[str] | None) -> tuple[str, ...]:
    wanted = tuple(c.strip() for c in requested or () if c.strip())
    if not target.exists:
        return wanted
    if wanted and wanted != target.partitions:
        have = ", ".join(target.partitions) or "nothing"
        raise PartitionMismatch(f"table {table!r} is partitioned by {have}; cannot append with --partition-by "
                                f"{','.join(wanted)} (use --mode overwrite to change it)")  # fmt: skip
    return target.partitions


def _first_reject(con: Any, rejected: int) -> str:
    file, line, column, message = con.execute(
        "SELECT s.file_path, e.line, e.column_name, e.error_message FROM reject_errors e "
        "JOIN reject_scans s USING (scan_id, file_id) ORDER BY s.file_path, e.line LIMIT 1"
    ).fetchone()
    where = f"column {column!r}: " if column else ""
    more = f" ({rejected - 1:,} more bad row(s); use --on-error quarantine=PATH to skip them)" if rejected > 1 else ""
    return f"{file}: line {line}: {where}{message}{more}; nothing was written"


def _engine_error(exc: Exception, src: Source) -> IngestError:
    """A DuckDB read error as one line that still names the file and line where DuckDB did."""
    import duckdb

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head = re.sub(r"^[A-Za-z ]+ Error: ", "", lines[0]) if lines else type(exc).__name__
    detail = next((ln for ln in lines[1:] if ln.startswith(("Error when converting", "Expected Number"))), "")
    file = next((ln.split("=", 1)[1].strip() for ln in lines if ln.startswith("file =")), "")
    if not file and len(src.files) == 1 and src.files[0] not in head:
        file = src.files[0]
    text = " ".join(x for x in (f"{file}:" if file else "", head, detail) if x)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return IngestError(f"out of memory while ingesting: {head}")
    if isinstance(exc, (duckdb.ConversionException, duckdb.InvalidInputException)):
        return BadRow(f"{text}; nothing was written")
    return IngestError(f"{text}; nothing was written")


def _written(root: Path, row: tuple[Any, ...], partitions: Sequence[str]) -> WrittenFile:
    filename, count, size, _footer, _stats, keys = row[:6]
    values: dict[str, str | None] = {}
    for col in partitions:
        value = (keys or {}).get(col)
        values[col] = None if value in (None, "NULL") else value  # DuckDB writes a null key as NULL
    return WrittenFile(os.path.relpath(filename, root), int(size), int(count), values)


class _Counter:
    """Counts rows of a stream; in fail mode it checks CSV rejects once the input is drained,
    raising before delta-rs can commit."""

    def __init__(self, con: Any | None, src: Source) -> None:
        self.con, self.src, self.rows = con, src, 0

    def count(self, reader: pa.RecordBatchReader, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            self.rows += batch.num_rows
            yield batch.cast(schema) if batch.schema != schema else batch
        if self.con is not None:
            n = int(self.con.execute("SELECT count(DISTINCT (file_id, line)) FROM reject_errors").fetchone()[0])
            if n:
                raise BadRow(_first_reject(self.con, n))


# -- schema policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    select: str  # the SELECT DuckDB copies: the input cast to the table's columns
    schema: pa.Schema  # the Delta schema after this commit
    changes_schema: bool  # new columns are added to an existing table


_SIGNED = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT"]
_UNSIGNED = {"UTINYINT": "SMALLINT", "USMALLINT": "INTEGER", "UINTEGER": "BIGINT"}  # Delta has no unsigned
_INT_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19}
_TIMESTAMPS = ("TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")  # Delta stores microseconds


def plan_columns(con: Any, scan: str, src: Source, target: TableState, evolution: str, table: str) -> Plan:
    """Map the input's columns onto the table's, applying the schema-evolution policy."""
    try:
        rel = con.sql(f"SELECT * FROM {scan}")
        incoming = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    except Exception as exc:
        raise _engine_error(exc, src) from None
    if not incoming:
        raise IngestError("the input has no columns")
    if not target.exists:
        select = ", ".join(_normalise(name, typ) for name, typ in incoming.items())
        return Plan(f"SELECT {select} FROM {scan}", _arrow_schema(con, f"SELECT {select} FROM {scan}"), False)
    assert target.schema is not None
    table_types = _duck_types(con, target.schema)
    exprs, problems = [], []
    for name, want in table_types.items():
        have = incoming.get(name)
        if have is None:
            if evolution == "strict":
                problems.append(f"column {name!r} ({want}) is missing from the input")
            exprs.append(f"CAST(NULL AS {want}) AS {_ident(name)}")
        elif have == want:
            exprs.append(_ident(name))
        elif not src.typed or widens(have, want):  # text inputs parse into the table's types
            exprs.append(f"CAST({_ident(name)} AS {want}) AS {_ident(name)}")
        else:
            problems.append(f"column {name!r} is {want} in the table but {have} in the input (not a safe widening)")
    extra = [n for n in incoming if n not in table_types]
    if extra and evolution == "strict":
        problems += [f"column {n!r} ({incoming[n]}) is not in the table" for n in extra]
    if problems:
        hint = " (use --schema-evolution add-columns)" if extra or any("missing" in p for p in problems) else ""
        raise SchemaMismatch(f"table {table!r}: " + "; ".join(problems) + hint)
    exprs += [_normalise(n, incoming[n]) for n in extra]
    select = f"SELECT {', '.join(exprs)} FROM {scan}"
    if not extra:
        return Plan(select, target.schema, False)
    added = _arrow_schema(con, f"SELECT {', '.join(_normalise(n, incoming[n]) for n in extra)} FROM {scan}")
    schema = pa.schema([*target.schema, *(f.with_nullable(True) for f in added)])
    return Plan(select, schema, True)


def widens(have: str, want: str) -> bool:
    """True when every ``have`` value converts to ``want`` exactly (no rounding, no overflow)."""
    if have in _UNSIGNED:
        have = _UNSIGNED[have]
    if have in _SIGNED:
        if want in _SIGNED:
            return _SIGNED.index(have) <= _SIGNED.index(want)
        if want == "DOUBLE":
            return have != "BIGINT"  # doubles hold 53-bit integers exactly
        if want == "FLOAT":
            return have in ("TINYINT", "SMALLINT")
        if want.startswith("DECIMAL("):
            p, s = _decimal(want)
            return p - s >= _INT_DIGITS[have]
        return False
    if have == "FLOAT":
        return want == "DOUBLE"
    if have.startswith("DECIMAL(") and want.startswith("DECIMAL("):
        (p1, s1), (p2, s2) = _decimal(have), _decimal(want)
        return s2 >= s1 and p2 - s2 >= p1 - s1
    if have in _TIMESTAMPS[:2]:
        return want == "TIMESTAMP"
    if have == "DATE":
        return want == "TIMESTAMP"
    return have in ("VARCHAR", "BLOB") and want == have


def _decimal(t: str) -> tuple[int, int]:
    p, s = t[len("DECIMAL(") : -1].split(",")
    return int(p), int(s)


def _normalise(name: str, typ: str) -> str:
    """Columns of a new table, in types Delta can store."""
    if typ in _UNSIGNED:
        return f"CAST({_ident(name)} AS {_UNSIGNED[typ]}) AS {_ident(name)}"
    if typ in _TIMESTAMPS:
        return f"CAST({_ident(name)} AS TIMESTAMP) AS {_ident(name)}"
    return _ident(name)


def _duck_types(con: Any, schema: pa.Schema) -> dict[str, str]:
    """The table's Arrow schema in DuckDB's type names (DuckDB does the mapping itself)."""
    empty = schema.empty_table()
    rel = con.from_arrow(empty)
    return dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))


def _csv_types(con: Any, target: TableState) -> dict[str, str]:
    """Parse CSV columns straight into the table's types, so a bad value is a bad row
    with a line number instead of a schema clash."""
    if not target.exists or target.schema is None:
        return {}
    return _duck_types(con, target.schema)


def _arrow_schema(con: Any, select: str) -> pa.Schema:
    schema = con.sql(f"{select} LIMIT 0").to_arrow_table().schema
    fields = [pa.field(f.name, _plain(f.type), True) for f in schema]
    return pa.schema(fields)


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
