"""Bad CSV rows, from DuckDB's reject tables: fail naming the first one, or write them all to a
quarantine file (one row per bad input row) while the good rows are committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import BadRow
from engine.ingest.duck import lit
from engine.ingest.sources import Source

_QUARANTINE_FORMATS = {".parquet": "parquet", ".ndjson": "json", ".jsonl": "json", ".json": "json"}


def count_rejects(con: Any) -> int:
    return int(con.execute("SELECT count(DISTINCT (file_id, line)) FROM reject_errors").fetchone()[0])


def rejected_rows(con: Any, src: Source) -> int:
    if src.fmt != "csv":
        return 0
    return count_rejects(con)


def check_rejects(con: Any, src: Source, quarantine: Path | None) -> int:
    """The number of bad rows, or ``BadRow`` naming the first when there is nowhere to put them."""
    rejected = rejected_rows(con, src)
    if rejected and quarantine is None:
        raise BadRow(first_reject(con, rejected))
    return rejected


def first_reject(con: Any, rejected: int) -> str:
    file, line, column, message = con.execute(
        "SELECT s.file_path, e.line, e.column_name, e.error_message FROM reject_errors e "
        "JOIN reject_scans s USING (scan_id, file_id) ORDER BY s.file_path, e.line LIMIT 1"
    ).fetchone()
    where = f"column {column!r}: " if column else ""
    more = f" ({rejected - 1:,} more bad row(s); use --on-error quarantine=PATH to skip them)" if rejected > 1 else ""
    return f"{file}: line {line}: {where}{message}{more}; nothing was written"


def write_quarantine(con: Any, src: Source, quarantine: Path | None) -> None:
    if quarantine is None:
        return
    fmt = _QUARANTINE_FORMATS.get(quarantine.suffix.lower(), "csv")
    quarantine.parent.mkdir(parents=True, exist_ok=True)
    if src.fmt != "csv":  # only CSV has per-row rejects; write an empty, well-formed file
        _empty_reject_tables(con)
    con.execute(
        # One quarantined row per bad input row, even when several of its columns failed.
        "COPY (SELECT s.file_path AS file, e.line, first(e.column_name ORDER BY e.column_idx) AS column, "
        "first(e.error_type ORDER BY e.column_idx) AS error_type, "
        "string_agg(e.error_message, '; ' ORDER BY e.column_idx) AS reason, first(e.csv_line) AS row "
        "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) GROUP BY ALL ORDER BY file, line) "
        f"TO {lit(str(quarantine))} (FORMAT {fmt})"
    )


def _empty_reject_tables(con: Any) -> None:
    """The reject tables DuckDB's CSV reader would have made, with no rows."""
    con.execute("CREATE TEMP TABLE reject_errors AS SELECT NULL::VARCHAR AS file_path, NULL::BIGINT AS line, "
                "NULL::VARCHAR AS column_name, NULL::VARCHAR AS error_type, NULL::VARCHAR AS error_message, "
                "NULL::VARCHAR AS csv_line, NULL::UBIGINT AS scan_id, NULL::UBIGINT AS file_id, NULL::UBIGINT AS column_idx LIMIT 0")  # fmt: skip
    con.execute("CREATE TEMP TABLE reject_scans AS SELECT NULL::UBIGINT AS scan_id, NULL::UBIGINT AS file_id, "
                "NULL::VARCHAR AS file_path LIMIT 0")  # fmt: skip
