"""How DuckDB reads a ``Source``: the table function (or registered Arrow stream) the plan selects from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.ingest import ndjson
from engine.ingest.duck import BATCH_ROWS, engine_error, ident, lit
from engine.ingest.plan import duck_types
from engine.ingest.sources import Source
from engine.storage import TableState

_SOURCE = "_colonnade_source"


@dataclass(frozen=True)
class Scan:
    sql: str  # the FROM clause the plan selects from
    bad_lines: str | None = None  # NDJSON: the query that finds bad lines (another pass over the input)


def scan(con: Any, src: Source, target: TableState, quarantine: bool) -> Scan:
    """How to read ``src``; in-memory data and Arrow IPC files are registered on ``con``."""
    if src.data is not None:
        con.register(_SOURCE, src.data)
        return Scan(ident(_SOURCE))
    files = "[" + ", ".join(lit(f) for f in src.files) + "]"
    opts = [f"union_by_name = {str(len(src.files) > 1).lower()}"]
    if src.compression:
        opts.append(f"compression = {lit(src.compression)}")
    if src.fmt == "csv":
        # Reject tables give file/line/column for every bad row (and make the sniffer
        # tolerant of a ragged row in its sample instead of guessing a wrong dialect).
        opts = [*opts[1:], "header = true", "store_rejects = true"]  # rejects exclude union_by_name
        types = _table_types(con, target)
        if types:
            opts.append(f"types = {_struct(types)}")
        return Scan(f"read_csv({files}, {', '.join(opts)})")
    if src.fmt == "ndjson":
        return _ndjson(con, src, target, files, opts, quarantine)
    if src.fmt == "parquet":
        return Scan(f"read_parquet({files}, {opts[0]})")
    import pyarrow.dataset as ds  # Arrow IPC files: DuckDB has no reader of its own

    con.register(_SOURCE, ds.dataset(src.files, format="ipc").scanner(batch_size=BATCH_ROWS).to_reader())
    return Scan(ident(_SOURCE))


def _ndjson(con: Any, src: Source, target: TableState, files: str, opts: list[str], quarantine: bool) -> Scan:
    """NDJSON read into fixed column types: the table's, else those DuckDB infers from a sample
    that skips bad lines (``ndjson`` finds and reports those instead)."""
    try:
        rel = con.sql(
            f"SELECT * FROM read_json({files}, format = 'newline_delimited', ignore_errors = true, {', '.join(opts)})"
        )
        inferred = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
        if inferred == {"json": "JSON"}:  # DuckDB's answer when a sampled line is not an object
            inferred = ndjson.infer(con, src.files, src.compression)
    except Exception as exc:
        raise engine_error(exc, src) from None
    table = _table_types(con, target)
    types = {name: table.get(name, typ) for name, typ in inferred.items()}
    checked = ndjson.checked(src.files, src.compression, types)
    if quarantine:  # only good lines reach the table; the bad ones are collected by another pass
        return Scan(ndjson.good_rows(checked, types), ndjson.bad_rows(checked))
    typed = [o for o in opts if not o.startswith("union_by_name")] + [f"columns = {_struct(types)}"]
    return Scan(f"read_json({files}, format = 'newline_delimited', {', '.join(typed)})", ndjson.bad_rows(checked))


def _struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in types.items()) + "}"


def _table_types(con: Any, target: TableState) -> dict[str, str]:
    """Parse text columns straight into the table's types, so a bad value is a bad row
    with a line number instead of a schema clash."""
    if not target.exists or target.schema is None:
        return {}
    return duck_types(con, target.schema)
