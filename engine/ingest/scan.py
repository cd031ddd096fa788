"""How DuckDB reads a ``Source``: the table function (or registered Arrow stream) the plan selects from."""

from __future__ import annotations

from typing import Any

from engine.ingest.duck import BATCH_ROWS, ident, lit
from engine.ingest.plan import duck_types
from engine.ingest.sources import Source
from engine.storage import TableState

_SOURCE = "_colonnade_source"


def scan(con: Any, src: Source, target: TableState) -> str:
    """The FROM clause for ``src``; in-memory data and Arrow IPC files are registered on ``con``."""
    if src.data is not None:
        con.register(_SOURCE, src.data)
        return ident(_SOURCE)
    files = "[" + ", ".join(lit(f) for f in src.files) + "]"
    opts = [f"union_by_name = {str(len(src.files) > 1).lower()}"]
    if src.compression:
        opts.append(f"compression = {lit(src.compression)}")
    if src.fmt == "csv":
        # Reject tables give file/line/column for every bad row (and make the sniffer
        # tolerant of a ragged row in its sample instead of guessing a wrong dialect).
        opts = [*opts[1:], "header = true", "store_rejects = true"]  # rejects exclude union_by_name
        types = _csv_types(con, target)
        if types:
            opts.append("types = {" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in types.items()) + "}")
        return f"read_csv({files}, {', '.join(opts)})"
    if src.fmt == "ndjson":
        return f"read_json({files}, format = 'newline_delimited', {', '.join(opts)})"
    if src.fmt == "parquet":
        return f"read_parquet({files}, {opts[0]})"
    import pyarrow.dataset as ds  # Arrow IPC files: DuckDB has no reader of its own

    con.register(_SOURCE, ds.dataset(src.files, format="ipc").scanner(batch_size=BATCH_ROWS).to_reader())
    return ident(_SOURCE)


def _csv_types(con: Any, target: TableState) -> dict[str, str]:
    """Parse CSV columns straight into the table's types, so a bad value is a bad row
    with a line number instead of a schema clash."""
    if not target.exists or target.schema is None:
        return {}
    return duck_types(con, target.schema)
