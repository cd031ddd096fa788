"""Bad rows, whatever the format, as one temp relation ``colonnade_rejects`` with one row per bad
input row: ``(file, line, column, error_type, reason, row)``. The ingest either fails naming the
first of them, or writes them all to a quarantine file while the good rows are committed.

CSV's come from DuckDB's reject tables (filled while the COPY reads); NDJSON's from a pass over
the lines (``ndjson.bad_rows``); Parquet and Arrow inputs are typed, so a value cannot be bad on
its own: their mismatches are schema errors, raised before anything is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import BadRow, IngestError
from engine.ingest.sources import Source
from engine.sqltext import quote_str

REJECTS = "colonnade_rejects"
_QUARANTINE_FORMATS = {".parquet": "parquet", ".ndjson": "json", ".jsonl": "json", ".json": "json"}

# One row per bad CSV line, even when several of its columns failed.
_CSV_REJECTS = (
    "SELECT s.file_path AS file, e.line, first(e.column_name ORDER BY e.column_idx) AS column, "
    "first(e.error_type ORDER BY e.column_idx)::VARCHAR AS error_type, "
    "string_agg(e.error_message, '; ' ORDER BY e.column_idx) AS reason, first(e.csv_line) AS row "
    "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) GROUP BY ALL"
)
_NONE = (
    "SELECT NULL::VARCHAR AS file, NULL::BIGINT AS line, NULL::VARCHAR AS column, NULL::VARCHAR AS error_type, "
    "NULL::VARCHAR AS reason, NULL::VARCHAR AS row LIMIT 0"
)


def collect(con: Any, src: Source, bad_lines: str | None = None) -> int:
    """Gather the ingest's bad rows into ``colonnade_rejects`` and return how many there are.

    ``bad_lines`` is the NDJSON query that finds them (a second pass over the input); CSV's were
    recorded by the reader during the COPY."""
    if src.fmt == "csv":
        query = _CSV_REJECTS
    elif bad_lines is not None:
        query = f"SELECT * FROM {bad_lines}"
    else:
        query = _NONE
    if src.aliases:  # name each file as the user did, not by the link DuckDB read it through
        cases = " ".join(f"WHEN {quote_str(alias)} THEN {quote_str(file)}" for file, alias in src.aliases.items())
        query = f"SELECT * REPLACE (CASE file {cases} ELSE file END AS file) FROM ({query})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REJECTS} AS {query}")
    return int(con.execute(f"SELECT count(*) FROM {REJECTS}").fetchall()[0][0])


def first_reject(con: Any, rejected: int) -> str:
    """The ingest's failure message: where the first bad row is, and how many more there are."""
    [(file, line, column, reason)] = con.execute(
        f'SELECT file, line, "column", reason FROM {REJECTS} ORDER BY file, line LIMIT 1'
    ).fetchall()
    where = f"column {column!r}: " if column else ""
    more = f" ({rejected - 1:,} more bad row(s); use --on-error quarantine=PATH to skip them)" if rejected > 1 else ""
    return f"{file}: line {line}: {where}{reason}{more}; nothing was written"


def fail_on_rejects(con: Any, src: Source, quarantine: Path | None, bad_lines: str | None = None) -> int:
    """The number of bad rows, or ``BadRow`` naming the first when there is nowhere to put them."""
    rejected = collect(con, src, bad_lines)
    if rejected and quarantine is None:
        raise BadRow(first_reject(con, rejected))
    return rejected


def write_quarantine(con: Any, quarantine: Path | None) -> None:
    """Every bad row, with its reason, to ``quarantine`` (CSV, or Parquet/NDJSON by extension)."""
    if quarantine is None:
        return
    fmt = _QUARANTINE_FORMATS.get(quarantine.suffix.lower(), "csv")
    try:
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT * FROM {REJECTS} ORDER BY file, line) TO {quote_str(str(quarantine))} (FORMAT {fmt})"
        )
    except Exception as exc:  # an OSError, or DuckDB's IOException
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise IngestError(f"cannot write the quarantine file {quarantine}: {reason}; nothing was written") from None
