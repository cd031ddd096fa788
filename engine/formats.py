"""Arrow record batches → bytes, streamed: json, ndjson, csv, arrow (IPC stream), parquet.

All row work happens in native code: JSON text is produced by DuckDB's ``to_json`` per step
(decimals keep their exact digits, nulls stay ``null``, dates/timestamps become ISO 8601,
binary base64) and the row strings are taken straight from the Arrow buffer; CSV, IPC and
Parquet use pyarrow's writers. Python touches each step once, never each row.

A step is a zero-copy table of up to 65,536 rows and about 8 MB (``steps``): engines hand out
batches of any size (DuckDB one 2,048-row vector at a time, however wide the rows), and the
encoders' working memory stays that of one step whatever the row width.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from engine.config import MAX_ROW_BYTES, row_too_wide
from engine.errors import NotAcceptable, ResultTooLarge
from engine.sqltext import DUCKDB_LOCKDOWN, quote_ident, quote_str

MEDIA_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
FORMATS = tuple(MEDIA_TYPES)
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")
_ALIASES = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/vnd.apache.arrow.file": "arrow",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "text/plain": "csv",
}


def negotiate(format_param: str | None, accept: str | None) -> str:
    """The response format: ``?format=`` wins over ``Accept``; JSON when neither says."""
    if format_param:
        fmt = format_param.lower()
        if fmt not in MEDIA_TYPES:
            raise NotAcceptable(f"unknown format {format_param!r} (choose from {', '.join(FORMATS)})")
        return fmt
    if not accept:
        return "json"
    ranges = []
    for i, part in enumerate(accept.split(",")):
        media, *params = [p.strip().lower() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):  # RFC 9110 qvalue: 0 to 1, three decimals; anything else (nan, 2, -1) is 0
                q = float(p[2:]) if _QVALUE.fullmatch(p[2:]) else 0.0
        ranges.append((-q, i, media))
    for neg_q, _, media in sorted(ranges):
        if neg_q == 0:
            continue
        if media in ("*/*", "application/*", "") or media == "application/problem+json":
            return "json"
        for fmt, mt in MEDIA_TYPES.items():
            if media == mt:
                return fmt
        if media in _ALIASES:
            return _ALIASES[media]
        if media == "text/*":
            return "csv"
    raise NotAcceptable(f"cannot produce any of: {accept} (available: {', '.join(MEDIA_TYPES.values())})")


# -- JSON ---------------------------------------------------------------------------------


class _JsonRows:
    """Encodes a batch into JSON object text per row using DuckDB (thread-safe).

    Its connection is locked down like the engine's (no file or network access, no extensions,
    configuration locked) and has a memory limit: it only ever reads the batches it is given."""

    def __init__(self, memory_bytes: int) -> None:
        self._con = duckdb.connect(config={"threads": 1, "memory_limit": f"{max(1, memory_bytes // 1024**2)}MB"})
        for statement in ("SET TimeZone = 'UTC'", *DUCKDB_LOCKDOWN):
            self._con.execute(statement)
        self._sql_cache: dict[tuple[pa.Schema, str, str], str] = {}
        self._lock = threading.Lock()

    def _sql(self, schema: pa.Schema, prefix: str, suffix: str) -> str:
        key = (schema, prefix, suffix)
        with self._lock:
            cached = self._sql_cache.get(key)
        if cached is None:
            cached = f"SELECT {quote_str(prefix)} || {_json_object(schema)} || {quote_str(suffix)} AS j FROM batch"
            with self._lock:
                self._sql_cache[key] = cached
        return cached

    def encode(self, data: pa.RecordBatch | pa.Table, prefix: str = "", suffix: str = "") -> bytes:
        return b"".join(_string_bytes(chunk) for chunk in self.rows(data, prefix, suffix))

    def rows(self, data: pa.RecordBatch | pa.Table, prefix: str = "", suffix: str = "") -> list[pa.Array]:
        """One string per row: ``prefix + {json object} + suffix``."""
        if data.num_rows == 0:
            return []
        return self.select(data, self._sql(data.schema, prefix, suffix)).column(0).chunks

    def select(self, data: pa.RecordBatch | pa.Table, sql: str) -> pa.Table:
        """Run ``sql`` over ``data``, registered as the table ``batch`` with its columns named
        by position (``c0``, ``c1``...): a result's names may repeat or hold characters (NUL)
        DuckDB cannot take as a column name."""
        cursor = self._con.cursor()
        try:
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            cursor.register("batch", table.rename_columns(_positions(data.schema)))
            return cursor.sql(sql).to_arrow_table()
        finally:
            cursor.close()


def _positions(schema: pa.Schema) -> list[str]:
    return [f"c{i}" for i in range(len(schema))]


def _json_object(schema: pa.Schema) -> str:
    """SQL for one JSON object per row, keys in column order. ``struct_pack`` + ``to_json`` is
    the fast way (1.5-2x the concatenation below, measured on lineitem), but a struct cannot
    have two fields of one name nor a NUL in a name: those results concatenate their keys,
    written here as JSON string literals, with each value's ``to_json``."""
    names = schema.names
    if not names:
        return "'{}'"
    if len(set(names)) == len(names) and not any("\x00" in n for n in names):
        fields = ", ".join(f"{quote_ident(f.name)} := {_json_value(i, f)}" for i, f in enumerate(schema))
        return f"to_json(struct_pack({fields}))"
    # One concat() per row, not a chain of ||: each || would make (and free) a string per column.
    parts = []
    for i, f in enumerate(schema):
        parts += [
            quote_str(("{" if i == 0 else ",") + json.dumps(f.name) + ":"),
            f"coalesce(to_json({_json_value(i, f)}), 'null')",
        ]
    return f"concat({', '.join(parts)}, '}}')"


def _json_value(position: int, field: pa.Field) -> str:
    col, t = f"c{position}", field.type
    if _is_binary(t):
        return f"to_base64({col})"
    if pa.types.is_timestamp(t):
        return f"strftime({col}, '%Y-%m-%dT%H:%M:%S.%f{'Z' if t.tz else ''}')"
    if pa.types.is_floating(t):
        return f"CASE WHEN isfinite({col}) THEN {col} END"  # NaN/Infinity are not JSON
    return col


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    )


def _is_interval(t: pa.DataType) -> bool:
    return pa.types.is_interval(t) or pa.types.is_duration(t)


def _as_text(position: int, field: pa.Field, fmt: str) -> str | None:
    """How a column the format cannot carry becomes text; None when it can carry it."""
    col, t = f"c{position}", field.type
    if fmt == "csv" and pa.types.is_nested(t):
        return f"CAST(to_json({col}) AS VARCHAR)"
    if fmt == "csv" and _is_binary(t):
        return f"to_base64({col})"
    if _is_interval(t):  # neither CSV nor Parquet has DuckDB's interval
        return f"CAST({col} AS VARCHAR)"
    return None


def _portable(schema: pa.Schema, steps: Iterable[pa.Table], fmt: str) -> tuple[pa.Schema, Iterable[pa.Table]]:
    """Columns that ``fmt`` cannot hold, converted to text by DuckDB; the rest untouched."""
    texts = [_as_text(i, f, fmt) for i, f in enumerate(schema)]
    if not any(texts):
        return schema, steps
    sql = "SELECT " + ", ".join(f"{t or f'c{i}'} AS c{i}" for i, t in enumerate(texts)) + " FROM batch"
    empty = _json_rows().select(schema.empty_table(), sql)
    converted = pa.schema([f.with_name(name) for f, name in zip(empty.schema, schema.names, strict=True)])

    def convert() -> Iterator[pa.Table]:
        encoder = _json_rows()
        for step in steps:
            yield encoder.select(step, sql).rename_columns(schema.names).cast(converted)

    return converted, convert()


def _string_offsets(arr: pa.Array) -> np.ndarray:
    """Where each value of a string array starts and ends, relative to the first (len + 1)."""
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    return offsets - offsets[0]


def _string_bytes(arr: pa.Array) -> bytes:
    """The concatenated values of a string array, straight from its data buffer."""
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    if len(arr) == 0:
        return b""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    return data[int(offsets[0]) : int(offsets[-1])].to_pybytes()


ENCODER_MEMORY_BYTES = 1024**3  # until the engine's budget is known (``configure_encoder``)
_encoder: _JsonRows | None = None
_encoder_lock = threading.Lock()


def configure_encoder(memory_bytes: int) -> None:
    """Give the encoder's DuckDB the engine's memory limit (takes effect for a new encoder)."""
    global ENCODER_MEMORY_BYTES, _encoder
    with _encoder_lock:
        if memory_bytes != ENCODER_MEMORY_BYTES:
            ENCODER_MEMORY_BYTES, _encoder = memory_bytes, None


def _json_rows() -> _JsonRows:
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            _encoder = _JsonRows(ENCODER_MEMORY_BYTES)
        return _encoder


def column_types(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


STEP_ROWS = 65_536
STEP_BYTES = 8 * 1024**2  # one row wider than this is a step of its own
TRUNCATED = "__colonnade_truncated__"  # the key of NDJSON's and CSV's final marker line
_TAIL_BYTES = 160  # room kept under the byte cap for JSON's tail or the marker line


def steps(
    batches: Iterable[pa.RecordBatch], max_rows: int = STEP_ROWS, max_bytes: int = STEP_BYTES
) -> Iterator[pa.Table]:
    """Batches regrouped, without copying, into tables of at most ``max_rows`` rows and about
    ``max_bytes``: big batches are sliced, small ones (DuckDB's 2,048-row vectors) gathered, so
    one encoder call covers many rows but never holds more than one step."""
    group: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        for piece in _slices(batch, max_rows, max_bytes):
            if group and (rows + piece.num_rows > max_rows or size + piece.nbytes > max_bytes):
                yield pa.Table.from_batches(group)
                group, rows, size = [], 0, 0
            group.append(piece)
            rows += piece.num_rows
            size += piece.nbytes
    if group:
        yield pa.Table.from_batches(group)


def _slices(batch: pa.RecordBatch, max_rows: int, max_bytes: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows == 0:
        return
    rows = max(1, min(max_rows, batch.num_rows * max_bytes // max(1, batch.nbytes)))
    for start in range(0, batch.num_rows, rows):
        piece = batch.slice(start, rows) if rows < batch.num_rows else batch
        if piece.num_rows == 1 and piece.nbytes > MAX_ROW_BYTES:
            raise row_too_wide(piece.nbytes)
        yield piece


class _Budget:
    """What a capped text response may still send, in rows and bytes; ``reason`` names the cap
    that cut it (``max_result_rows`` or ``max_result_bytes``), once a row was left out."""

    def __init__(self, max_rows: int | None, max_bytes: int | None, overhead: int) -> None:
        if max_bytes is not None and max_bytes - overhead < 0:
            raise ResultTooLarge(f"max_result_bytes ({max_bytes}) leaves no room for even the column names")
        self.rows = max_rows
        self.bytes = None if max_bytes is None else max_bytes - overhead
        self.reason: str | None = None
        self.count = 0

    def take(self, texts: Iterable[pa.Array]) -> bytes:
        """The leading row texts that fit; sets ``reason`` when one does not."""
        out = []
        for arr in texts:
            if self.reason is not None:
                break
            n = fit = len(arr)
            if self.rows is not None and self.rows < fit:
                fit, self.reason = self.rows, "max_result_rows"
            if self.bytes is not None:
                ends = _string_offsets(arr)[1:]
                by_bytes = int(np.searchsorted(ends, self.bytes, side="right"))
                if by_bytes < fit:
                    fit, self.reason = by_bytes, "max_result_bytes"
            data = _string_bytes(arr.slice(0, fit)) if fit else b""
            out.append(data)
            self.count += fit
            if self.rows is not None:
                self.rows -= fit
            if self.bytes is not None:
                self.bytes -= len(data)
            if fit < n and self.reason is None:  # cannot happen: a cut always has a reason
                self.reason = "max_result_bytes"
        return b"".join(out)

    def marker(self) -> dict[str, object]:
        return {"reason": self.reason, "row_count": self.count}


def encode_json(
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    max_rows: int | None,
    max_bytes: int | None = None,
    elapsed_ms: Callable[[], float],
) -> Iterator[bytes]:
    """One JSON document: rows past either cap are left out and ``truncated`` says so. The
    column list goes out with the first rows, so a failure before them is still a clean error."""
    head = b'{"columns":' + json.dumps(column_types(schema), separators=(",", ":")).encode() + b',"rows":['
    budget = _Budget(max_rows, max_bytes, len(head) + _TAIL_BYTES)
    encoder = _json_rows()
    pending = head
    for step in steps(batches):
        text = budget.take(encoder.rows(step, prefix=","))
        if pending:  # the first rows: no comma before them
            text, pending = pending + text.removeprefix(b","), b""
        if text:
            yield text
        if budget.reason is not None:
            break
    tail = {"row_count": budget.count, "truncated": budget.reason is not None, "elapsed_ms": round(elapsed_ms(), 3)}
    yield pending + b"]," + json.dumps(tail, separators=(",", ":")).encode()[1:]


def encode_ndjson(
    schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, max_rows: int | None, max_bytes: int | None = None
) -> Iterator[bytes]:
    """One object per line; when a cap leaves rows out, a last line
    ``{"__colonnade_truncated__": {"reason": ..., "row_count": N}}`` says so."""
    budget = _Budget(max_rows, max_bytes, _TAIL_BYTES)
    encoder = _json_rows()
    for step in steps(batches):
        if text := budget.take(encoder.rows(step, suffix="\n")):
            yield text
        if budget.reason is not None:
            yield json.dumps({TRUNCATED: budget.marker()}, separators=(",", ":")).encode() + b"\n"
            return


# -- binary and CSV exports ---------------------------------------------------------------


class _Drain(io.RawIOBase):
    """A write-only sink whose contents are taken after each batch.

    ``keep_buffers``: keep the ``pa.Buffer`` objects a writer hands over instead of copying them
    (they own their memory, and the join in ``take`` copies once). Only for the Arrow IPC
    writer, whose buffers are the batches' own, immutable ones; other writers may reuse theirs."""

    def __init__(self, *, keep_buffers: bool = False) -> None:
        self._parts: list[Any] = []
        self._keep = keep_buffers

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(data if self._keep and isinstance(data, pa.Buffer) else bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _writer_stream(
    make_writer: Callable[[_Drain], object],
    steps: Iterable[pa.Table],
    max_bytes: int | None,
    what: str,
    truncate: Callable[[pa.Table, int], tuple[bytes, int]] | None = None,
    keep_buffers: bool = False,
) -> Iterator[bytes]:
    """One chunk per step; what the writer emits up front (a header, a schema) goes out with
    the first step, so an error in it is still a clean problem response. Past ``max_bytes``:
    ``truncate(step, room)`` gives the leading rows that fit and the stream ends with a marker
    line, or, without it, ResultTooLarge (a 413 when nothing was sent yet, else a cut stream)."""
    sink = _Drain(keep_buffers=keep_buffers)
    writer = make_writer(sink)
    pending = sink.take()
    sent = rows = 0
    for step in steps:
        writer.write_table(step)  # type: ignore[attr-defined]
        chunk = pending + sink.take()
        if max_bytes is not None and sent + len(chunk) > max_bytes - (_TAIL_BYTES if truncate else 0):
            if truncate is None or sent + len(pending) > max_bytes - _TAIL_BYTES:
                raise ResultTooLarge(f"the {what} result exceeds max_result_bytes ({max_bytes} bytes)")
            text, fit = truncate(step, max_bytes - _TAIL_BYTES - sent - len(pending))
            marker = {"reason": "max_result_bytes", "row_count": rows + fit}
            yield pending + text + f"# {TRUNCATED} {json.dumps(marker, separators=(',', ':'))}\n".encode()
            return
        pending = b""
        sent += len(chunk)
        rows += step.num_rows
        if chunk:
            yield chunk
    writer.close()  # type: ignore[attr-defined]
    if tail := pending + sink.take():
        if max_bytes is not None and sent + len(tail) > max_bytes:  # e.g. Parquet's footer
            raise ResultTooLarge(f"the {what} result exceeds max_result_bytes ({max_bytes} bytes)")
        yield tail


def encode_arrow(schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, max_bytes: int | None) -> Iterator[bytes]:
    return _writer_stream(lambda s: pa.ipc.new_stream(s, schema), steps(batches), max_bytes, "Arrow", keep_buffers=True)


def encode_parquet(schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, max_bytes: int | None) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    schema, tables = _portable(schema, steps(batches), "parquet")
    # No dictionary encoding: building a dictionary per row group per column costs more than the
    # zstd pass that follows and, on an export's high-cardinality columns, makes the file larger.
    # Min/max statistics for every column except strings and binaries: those are what readers
    # prune row groups with (keys, numbers, dates); min/max of free text costs 12% of the encode.
    stats = [f.name for f in schema if not _is_text_or_binary(f.type)]
    return _writer_stream(
        lambda s: pq.ParquetWriter(s, schema, compression="zstd", use_dictionary=False, write_statistics=stats),
        tables,
        max_bytes,
        "Parquet",
    )


def _is_text_or_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def encode_csv(schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, max_bytes: int | None) -> Iterator[bytes]:
    import pyarrow.csv as pcsv

    schema, tables = _portable(schema, steps(batches), "csv")
    return _writer_stream(lambda s: pcsv.CSVWriter(s, schema), tables, max_bytes, "CSV", truncate=_csv_prefix)


def _csv_prefix(step: pa.Table, room: int) -> tuple[bytes, int]:
    """The most leading rows of ``step`` whose CSV (no header) fits in ``room`` bytes: a binary
    search over row counts, run once per response (when the cap is reached)."""
    import pyarrow.csv as pcsv

    def text(rows: int) -> bytes:
        sink = pa.BufferOutputStream()
        pcsv.write_csv(step.slice(0, rows), sink, pcsv.WriteOptions(include_header=False))
        return sink.getvalue().to_pybytes()

    lo, hi, best = 0, step.num_rows, b""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = text(mid)
        if len(candidate) <= room:
            lo, best = mid, candidate
        else:
            hi = mid - 1
    return best, lo


def encode(
    fmt: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    elapsed_ms: Callable[[], float] = lambda: 0.0,
) -> Iterator[bytes]:
    """Stream ``batches`` in ``fmt``. ``max_rows`` caps JSON and NDJSON; ``max_bytes`` caps every
    format: JSON, NDJSON and CSV end early and say so, Arrow and Parquet fail (ResultTooLarge)."""
    if fmt == "json":
        return encode_json(schema, batches, max_rows=max_rows, max_bytes=max_bytes, elapsed_ms=elapsed_ms)
    if fmt == "ndjson":
        return encode_ndjson(schema, batches, max_rows=max_rows, max_bytes=max_bytes)
    if fmt == "csv":
        return encode_csv(schema, batches, max_bytes=max_bytes)
    if fmt == "arrow":
        return encode_arrow(schema, batches, max_bytes=max_bytes)
    if fmt == "parquet":
        return encode_parquet(schema, batches, max_bytes=max_bytes)
    raise NotAcceptable(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
