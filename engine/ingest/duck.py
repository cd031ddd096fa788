"""The ingest's DuckDB connection, SQL quoting, and DuckDB errors turned into ingest errors."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import BadRow, IngestError
from engine.location import state_path
from engine.sqltext import quote_str

if TYPE_CHECKING:
    from engine.ingest.sources import Source

BATCH_ROWS = 128 * 1024


@contextmanager
def connect(data_dir: Path, threads: int | None, memory_limit: str | None) -> Iterator[Any]:
    import duckdb

    spill = state_path(data_dir, "spill")
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads or os.cpu_count() or 2, "memory_limit": memory_limit or "1GB"})
    try:
        con.execute(f"SET temp_directory = {quote_str(str(spill))}")  # never spill into the cwd
        con.execute("SET TimeZone = 'UTC'")  # zone-less text into a zoned column is UTC, whatever the machine's zone
        con.execute("SET enable_progress_bar = true")  # feeds query_progress(); nothing is printed
        con.execute("SET enable_progress_bar_print = false")
        yield con
    finally:
        con.close()


def engine_error(exc: Exception, src: Source) -> IngestError:
    """A DuckDB read error as one line that still names the file and line where DuckDB did."""
    import duckdb

    lines = [ln.strip() for ln in src.original(str(exc)).splitlines() if ln.strip()]
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


def path_list(files: list[str]) -> str:
    """A DuckDB list literal of ``files``, each read by its exact name: DuckDB's readers glob
    every path they are given, so ``*``, ``?`` and ``[`` are escaped as the one-character classes
    ``[*]``, ``[?]`` and ``[[]`` (``star*.csv`` must not read ``starA.csv``). Input files whose
    paths hold these come through links (``Source.aliases``); this covers the data directory's."""
    return "[" + ", ".join(quote_str(_GLOB_CHARS.sub(r"[\1]", os.path.abspath(f))) for f in files) + "]"


_GLOB_CHARS = re.compile(r"([*?\[])")
