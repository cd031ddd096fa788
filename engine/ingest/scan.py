"""How DuckDB reads a ``Source``: the table function (or registered Arrow stream) the plan
selects from, and the columns it yields.

Timestamps written as text get one more rule (``types.parse_timestamp``): DuckDB's naive
TIMESTAMP parse drops a zone silently ('10:00+02:00' becomes 10:00), so such a column is read
as text and parsed in the plan, refusing a value whose zone does not match the column. When bad
rows are quarantined instead, the reader parses them (so that it records each bad row with its
line) and a separate pass checks the zones first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.ingest import ndjson
from engine.ingest.duck import BATCH_ROWS, engine_error, path_list
from engine.ingest.sources import Source
from engine.ingest.types import (
    TIMESTAMP_KINDS,
    arrow_reader,
    check_arrow,
    check_names,
    duck_types,
    stored_type,
    zone_mismatch,
)
from engine.sqltext import quote_ident, quote_str
from engine.storage import TableState

_SOURCE = "_colonnade_source"


@dataclass(frozen=True)
class Scan:
    sql: str  # the FROM clause the plan selects from
    columns: dict[str, str] = field(default_factory=dict)  # name → DuckDB type, as the scan yields it
    text_timestamps: dict[str, str] = field(default_factory=dict)  # read as text; parse into this kind
    bad_lines: str | None = None  # NDJSON: the query that finds bad lines (another pass over the input)
    diagnose: str | None = None  # CSV: a scan that records each unparsable row, run once a read failed
    zone_check: str | None = None  # CSV under quarantine: rows whose timestamp zones do not match


def scan(con: Any, src: Source, target: TableState, quarantine: bool) -> Scan:
    """How to read ``src``; in-memory data and Arrow IPC files are registered on ``con``."""
    if src.data is not None:
        con.register(_SOURCE, arrow_reader(src.data))
        return _bound(con, src, Scan(quote_ident(_SOURCE)))
    files = path_list(src.paths)
    if src.fmt == "csv":
        return _csv(con, src, target, files, quarantine)
    opts = [f"union_by_name = {str(len(src.files) > 1).lower()}"]
    if src.compression:
        opts.append(f"compression = {quote_str(src.compression)}")
    if src.fmt == "ndjson":
        return _ndjson(con, src, target, files, opts, quarantine)
    import pyarrow.dataset as ds

    if src.fmt == "parquet":
        import pyarrow.parquet as pq

        for f in src.paths:  # footers only: DuckDB would read a 40-digit decimal as a DOUBLE
            check_arrow(pq.read_schema(f))
        return _bound(con, src, Scan(f"read_parquet({files}, {opts[0]})"))
    dataset = ds.dataset(src.paths, format="ipc")  # Arrow IPC files: DuckDB has no reader of its own
    con.register(_SOURCE, arrow_reader(dataset.scanner(batch_size=BATCH_ROWS).to_reader()))
    return _bound(con, src, Scan(quote_ident(_SOURCE)))


def _bound(con: Any, src: Source, partial: Scan) -> Scan:
    return Scan(partial.sql, _columns(con, src, partial.sql))


def _columns(con: Any, src: Source, sql: str) -> dict[str, str]:
    """The scan's columns and their DuckDB types, as DuckDB reads them (a bind, no rows)."""
    try:
        rel = con.sql(f"SELECT * FROM {sql}")
        return dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    except Exception as exc:
        raise engine_error(exc, src) from None


def _csv(con: Any, src: Source, target: TableState, files: str, quarantine: bool) -> Scan:
    """CSV with the table's types, so a bad value is a bad row with a line number; reject tables
    record every bad row (and make the sniffer tolerant of a ragged row in its sample instead of
    guessing a wrong dialect). Rejects exclude ``union_by_name``."""
    compression = [f"compression = {quote_str(src.compression)}"] if src.compression else []
    _check_header(con, src, compression)
    dialect = ["header = true", *compression]
    opts = [*dialect, "store_rejects = true"]
    types = _table_types(target)
    stamps = {n: t for n, t in types.items() if t in TIMESTAMP_KINDS}

    def read(forced: dict[str, str]) -> str:
        return f"read_csv({files}, {', '.join([*opts, f'types = {_struct(forced)}'] if forced else opts)})"

    as_text = {n: "VARCHAR" for n in stamps}
    columns = _columns(con, src, read(types if quarantine else types | as_text))
    found = {n: t for n, t in columns.items() if t in TIMESTAMP_KINDS and n not in types}
    stamps = {n: t for n, t in stamps.items() if n in columns} | found  # and new ones, as sniffed
    if quarantine:
        return Scan(read(types), columns, zone_check=_zone_check(files, dialect, stamps) if stamps else None)
    if not stamps:
        return Scan(read(types), columns)
    as_text = {n: "VARCHAR" for n in stamps}
    if found:
        columns = _columns(con, src, read(types | as_text))
    return Scan(read(types | as_text), columns, stamps, diagnose=read(types | found))


def _check_header(con: Any, src: Source, compression: list[str]) -> None:
    """The header as written: DuckDB renames a repeated name (``id,ID`` reads as ``id,ID_1``),
    which would store a column the file does not have."""
    # The first file's header names the columns (the others must match it by position).
    options = ", ".join(["header = false", "all_varchar = true", *compression])
    try:
        rows = con.sql(f"SELECT * FROM read_csv({path_list(src.paths[:1])}, {options}) LIMIT 1").fetchall()
    except Exception as exc:
        raise engine_error(exc, src) from None
    if rows:
        check_names([name for name in rows[0] if name is not None], where="the CSV header")


def _zone_check(files: str, dialect: list[str], stamps: dict[str, str]) -> str:
    """The first row whose timestamp text does not match its column's zone kind, per column
    (malformed rows are skipped here: the ingest's own read quarantines them)."""
    as_text = {n: "VARCHAR" for n in stamps}
    source = f"read_csv({files}, {', '.join(dialect)}, ignore_errors = true, types = {_struct(as_text)})"
    parts = [
        f"(SELECT {quote_str(n)} AS column_name, {quote_str(k)} AS kind, {quote_ident(n)} AS value FROM {source} "
        f"WHERE {zone_mismatch(quote_ident(n), k)} LIMIT 1)"
        for n, k in stamps.items()
    ]
    return " UNION ALL ".join(parts)


def _ndjson(con: Any, src: Source, target: TableState, files: str, opts: list[str], quarantine: bool) -> Scan:
    """NDJSON read into fixed column types: the table's, else those DuckDB infers from a sample
    that skips bad lines (``ndjson`` finds and reports those instead), as stored in Delta. A
    field whose values mix types is inferred as JSON: it becomes text holding each plain value
    (``"x"`` as x, ``5`` as 5), never the JSON text of a scalar."""
    try:
        rel = con.sql(
            f"SELECT * FROM read_json({files}, format = 'newline_delimited', ignore_errors = true, {', '.join(opts)})"
        )
        inferred = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
        if inferred == {"json": "JSON"}:  # DuckDB's answer when a sampled line is not an object
            inferred = ndjson.infer(con, src.paths, src.compression)
    except Exception as exc:
        raise engine_error(exc, src) from None
    table = _table_types(target)
    types = {name: table.get(name) or _json_type(typ) for name, typ in inferred.items()}
    checked = ndjson.checked(src.paths, src.compression, types)
    if quarantine:  # only good lines reach the table; the bad ones are collected by another pass
        return Scan(ndjson.good_rows(checked, types), types, bad_lines=ndjson.bad_rows(checked))
    stamps = {n: t for n, t in types.items() if t in TIMESTAMP_KINDS}
    read_types = types | {n: "VARCHAR" for n in stamps}
    typed = [o for o in opts if not o.startswith("union_by_name")] + [f"columns = {_struct(read_types)}"]
    sql = f"read_json({files}, format = 'newline_delimited', {', '.join(typed)})"
    return Scan(sql, read_types, stamps, bad_lines=ndjson.bad_rows(checked))


def _json_type(inferred: str) -> str:
    """A JSON field's column type: as DuckDB infers it, stored as Delta stores it, except that a
    JSON integer is a long (DuckDB infers a HUGEINT or UBIGINT past 2^62; a value past the long
    range is then a bad line, named with its line number)."""
    return "BIGINT" if inferred in ("HUGEINT", "UBIGINT") else stored_type(inferred)[0]


def _struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"{quote_str(k)}: {quote_str(v)}" for k, v in types.items()) + "}"


def _table_types(target: TableState) -> dict[str, str]:
    """Parse text columns straight into the table's types, so a bad value is a bad row
    with a line number instead of a schema clash."""
    if not target.exists or target.schema is None:
        return {}
    return duck_types(target.schema)
