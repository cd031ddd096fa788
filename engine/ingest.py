"""Ingestion: files or in-memory data → one Delta commit, streamed batch by batch."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.catalog import Catalog, _expand, format_from_path
from engine.errors import IngestError
from engine.storage import WriteMode, writable_path, write_table

FORMATS = ("csv", "ndjson", "parquet", "arrow")
BATCH_ROWS = 128 * 1024


@dataclass
class IngestSummary:
    table: str
    version: int
    rows: int
    files: int
    bytes_in: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.table}: {self.rows:,} rows from {self.files} file(s), {self.bytes_in / 1e6:.1f} MB "
                f"in {self.seconds:.2f} s → version {self.version}")  # fmt: skip


def ingest(
    catalog: Catalog,
    source: Any,
    table: str,
    *,
    format: str | None = None,
    partition_by: Sequence[str] | None = None,
    mode: WriteMode = "append",
    schema_evolution: str = "strict",
) -> IngestSummary:
    started = time.perf_counter()
    writable_path(catalog, table)  # refuse a bad or read-only name before reading any input
    if mode not in ("append", "overwrite"):
        raise IngestError(f"unknown mode {mode!r} (append or overwrite)")
    if schema_evolution not in ("strict", "add-columns"):
        raise IngestError(f"unknown schema evolution {schema_evolution!r} (strict or add-columns)")
    reader, files, size = open_source(source, format)
    counter = _Counter()
    counted = pa.RecordBatchReader.from_batches(reader.schema, counter.count(reader))
    version = write_table(catalog, table, counted, mode=mode, partition_by=partition_by,
                          add_columns=schema_evolution == "add-columns")  # fmt: skip
    return IngestSummary(table, version, counter.rows, files, size, time.perf_counter() - started)


class _Counter:
    rows = 0

    def count(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            self.rows += batch.num_rows
            yield batch


def open_source(source: Any, format: str | None = None) -> tuple[pa.RecordBatchReader, int, int]:
    """(a streaming reader, number of files, bytes in) for paths or in-memory data."""
    if isinstance(source, pa.RecordBatchReader):
        return source, 0, 0
    if isinstance(source, pa.Table):
        return source.to_reader(BATCH_ROWS), 0, source.nbytes
    if type(source).__module__.startswith(("polars", "pandas")):
        table = source.to_arrow() if hasattr(source, "to_arrow") else pa.Table.from_pandas(source, preserve_index=False)
        return table.to_reader(BATCH_ROWS), 0, table.nbytes
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    files = []
    for p in paths:
        fmt = format or format_from_path(str(p))
        if fmt is None:
            raise IngestError(f"cannot tell the format of {p}; pass --format ({', '.join(FORMATS)})")
        if fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        matched = _expand(str(p), fmt)
        if not matched:
            raise IngestError(f"{p}: no such file")
        files += [(f, fmt) for f in matched]
    formats = {fmt for _, fmt in files}
    if len(formats) > 1:
        raise IngestError(f"one ingest takes one format; got {', '.join(sorted(formats))}")
    fmt = formats.pop()
    names = [f for f, _ in files]
    size = sum(Path(f).stat().st_size for f in names)
    return _reader(names, fmt), len(names), size


def _reader(files: list[str], fmt: str) -> pa.RecordBatchReader:
    import pyarrow.dataset as ds

    if fmt == "ndjson":
        import pyarrow.json as pj

        tables = [pj.read_json(f) for f in files]
        return pa.concat_tables(tables, promote_options="permissive").to_reader(BATCH_ROWS)
    dataset = ds.dataset(files, format={"arrow": "ipc"}.get(fmt, fmt))
    return dataset.scanner(batch_size=BATCH_ROWS).to_reader()
