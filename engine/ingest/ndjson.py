"""NDJSON line by line: each line's typed row, or the reason it cannot be one.

DuckDB's ``read_json`` stops at the first bad line and names no column, so it cannot quarantine
bad lines, nor say where a failed ingest broke. Here each line is read as text (DuckDB's CSV
reader with a control character as delimiter and no quoting keeps a line whole), numbered in input
order (``row_number() OVER ()`` preserves it), and parsed with ``json_transform`` into the
columns' types. A line is bad when it is not JSON, is not an object, or holds a value that does
not convert; blank lines are skipped, as ``read_json`` skips them. All of it runs in DuckDB.

Nested columns: a list or map (of anything but structs) converts strictly, so ``[1, "x"]`` for
``INTEGER[]`` is a bad line. A column holding a struct is only checked for its JSON shape (an
object, or an array of them): a value that fails inside the struct becomes NULL there under
quarantine, while ``read_json`` (used when failing) refuses it. DuckDB's strict transform would
catch it, but it also refuses a struct missing a field, which ``read_json`` accepts. Bad lines
are gathered per file in memory before they are written.
"""

from __future__ import annotations

import json
from typing import Any

from engine.ingest.duck import path_list
from engine.ingest.types import TIMESTAMP_KINDS, zone_mismatch, zone_reason
from engine.sqltext import quote_ident, quote_str

_DELIM = "\x1f"  # JSON text cannot hold a raw control character, so no valid line contains it
_MAX_LINE_BYTES = 16 * 1024 * 1024  # read_json's own limit on one object


def _read_lines(files: list[str], compression: str | None) -> str:
    """Every line of ``files`` as one VARCHAR column ``text`` (NULL for an empty line), plus ``filename``."""
    opts = [
        "columns = {'text': 'VARCHAR'}",
        "header = false",
        "auto_detect = false",
        f"delim = {quote_str(_DELIM)}",
        "quote = ''",
        "escape = ''",
        "strict_mode = false",
        "filename = true",
        f"max_line_size = {_MAX_LINE_BYTES}",
    ]
    if compression:
        opts.append(f"compression = {quote_str(compression)}")
    return f"read_csv({path_list(files)}, {', '.join(opts)})"


_SAMPLE_LINES = 20480  # as many as read_json samples
# json_group_structure's names → column types (nested values are kept as their JSON text)
_STRUCTURE_TYPES = {"UBIGINT": "BIGINT", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN"}


def infer(con: Any, files: list[str], compression: str | None) -> dict[str, str]:
    """Column types from the first object lines, for when ``read_json`` gives up on records
    because its sample holds a line that is JSON but not an object."""
    is_object = "CASE WHEN json_valid(text) THEN json_type(text) = 'OBJECT' ELSE false END"
    found = con.execute(
        f"SELECT json_group_structure(text::JSON) FROM (SELECT text FROM {_read_lines(files, compression)} "
        f"WHERE {is_object} LIMIT {_SAMPLE_LINES})"
    ).fetchall()[0][0]
    structure = json.loads(found) if found else {}
    return {k: _STRUCTURE_TYPES.get(v, "VARCHAR") if isinstance(v, str) else "VARCHAR" for k, v in structure.items()}


def checked(files: list[str], compression: str | None, types: dict[str, str]) -> str:
    """``(file, rn, blank, typed, reason, column_name, text)`` for every line: ``typed`` is the
    line as a struct of ``types`` and ``reason`` is NULL for a good line.

    Each line is parsed twice: typed, and as raw JSON values (to tell a value that did not
    convert from a null); ``try`` turns malformed JSON and blank lines into NULL. The parses sit
    in the projection beside the row numbering: measured, that keeps DuckDB from inlining them
    into the CASEs above, which ran them ~3x slower under a selection. Everything else is cheap
    on a good line; the string work (trim) runs only on lines that did not parse."""
    target = quote_str(json.dumps(types))
    raw = quote_str(json.dumps(dict.fromkeys(types, "JSON")))
    # Only a line that did not parse can be blank: trimming every line would cost more than parsing it.
    blank = "(CASE WHEN text IS NULL THEN true WHEN typed IS NULL THEN trim(text, ' \t\r') = '' ELSE false END)"
    # Valid JSON that does not start with a brace is an array, a string, a number...
    not_object = "(CASE WHEN starts_with(text, '{') THEN false ELSE NOT starts_with(ltrim(text, ' \t\r'), '{') END)"
    values = [f"struct_extract(raw, {quote_str(n)})" for n in types]
    # A value that is present and not JSON null, yet NULL once typed, did not convert; a struct,
    # map or list column also needs a JSON value of that shape (a string typed as a struct is a
    # struct of NULLs, not NULL); a timestamp's text must have a zone exactly when its column does.
    lost = []  # (condition, reason, column)
    for v, (n, t) in zip(values, types.items(), strict=True):
        converts = f"{v} IS NOT NULL AND (struct_extract(typed, {quote_str(n)}) IS NULL{_shape_check(v, t)})"
        lost.append((converts, f"'cannot convert ' || {v} || {quote_str(' to ' + t)}", n))
        if t in TIMESTAMP_KINDS:
            text = f"({v} ->> '$')"
            lost.append(
                (
                    f"json_type({v}) = 'VARCHAR' AND {zone_mismatch(text, t)}",
                    f"'timestamp ' || {v} || {quote_str(' ' + zone_reason(n, t))}",
                    n,
                )
            )
    reason = " ".join(f"WHEN {cond} THEN {why}" for cond, why, _ in lost)
    column = " ".join(f"WHEN {cond} THEN {quote_str(n)}" for cond, _, n in lost)
    return (
        f"(SELECT file, rn, {blank} AS blank, typed, text, "
        f"CASE WHEN {blank} THEN NULL WHEN typed IS NULL THEN 'not valid JSON' "
        f"WHEN {not_object} THEN 'not a JSON object' {reason} END AS reason, "
        f"CASE WHEN {blank} OR typed IS NULL THEN NULL {column} END AS column_name "
        f"FROM (SELECT filename AS file, row_number() OVER () AS rn, text, try(json_transform(text, {target})) AS typed, "
        f"try(json_transform(text, {raw})) AS raw FROM {_read_lines(files, compression)}))"
    )


def _shape_check(value: str, typ: str) -> str:
    """For a nested column: a list or map must convert strictly, element by element; a type
    holding a struct only needs the right JSON shape (strict would refuse a missing field)."""
    if "STRUCT(" not in typ and (typ.endswith("]") or typ.startswith("MAP(")):
        return f" OR try(json_transform_strict({value}, {quote_str(json.dumps(typ))})) IS NULL"
    if typ.endswith("]"):
        return f" OR json_type({value}) <> 'ARRAY'"
    if typ.startswith(("STRUCT(", "MAP(")):
        return f" OR json_type({value}) <> 'OBJECT'"
    return ""


def good_rows(checked_lines: str, types: dict[str, str]) -> str:
    """The FROM clause of the lines that parse: one column per entry of ``types``."""
    cols = ", ".join(f"struct_extract(typed, {quote_str(n)}) AS {quote_ident(n)}" for n in types)
    return f"(SELECT {cols} FROM {checked_lines} WHERE NOT blank AND reason IS NULL)"


def bad_rows(checked_lines: str) -> str:
    """The bad lines as ``(file, line, column, error_type, reason, row)``, line numbers per file.

    One pass: per file, the first line's global number and the list of its bad lines (few, or
    the ingest would not be worth quarantining), then unnested."""
    return (
        "(SELECT file, b.rn - first_rn + 1 AS line, b.column_name AS column, "
        "CASE WHEN b.column_name IS NULL THEN 'INVALID JSON' ELSE 'CAST' END AS error_type, "
        "b.reason AS reason, b.text AS row "
        "FROM (SELECT file, min(rn) AS first_rn, "
        "list({'rn': rn, 'column_name': column_name, 'reason': reason, 'text': text}) "
        "FILTER (WHERE reason IS NOT NULL) AS bad "
        f"FROM {checked_lines} GROUP BY file), unnest(bad) AS u(b))"
    )
