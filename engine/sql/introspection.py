"""Introspection, answered by Colonnade from its catalog: the same on every engine, filtered by
the token's grants, and never showing an internal name or path.

- ``SHOW TABLES`` and ``information_schema.schemata / tables / columns`` are *catalog views*:
  each reference becomes a literal ``VALUES`` relation built from the catalog when the query is
  prepared, holding only the tables the token may read. The rest of the query (filters, joins)
  runs on whichever engine was asked, like any other.
- ``DESCRIBE t``, ``DESCRIBE <query>`` and ``SUMMARIZE t`` describe a query over catalog tables
  (validated and renamed as any other); DuckDB computes the description (its type names, its
  statistics), whatever engine was asked, so the answer is one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import pyarrow as pa
import sqlglot
from sqlglot import exp

from engine.errors import UnsupportedQuery
from engine.sql.parse import DIALECT
from engine.sqltext import fold

INFORMATION_SCHEMA = "information_schema"
CATALOG_VIEW = "colonnade_catalog_view"  # node meta: the catalog view an exp.Table names


@dataclass(frozen=True)
class CatalogTable:
    """What a catalog view shows of one table."""

    name: str
    schema: pa.Schema
    kind: str  # "managed" | "external"


# Each view's columns and SQL types, in DuckDB's order where DuckDB has the view.
VIEWS: dict[str, list[tuple[str, str]]] = {
    "schemata": [("catalog_name", "VARCHAR"), ("schema_name", "VARCHAR"), ("schema_owner", "VARCHAR")],
    "tables": [
        ("table_catalog", "VARCHAR"),
        ("table_schema", "VARCHAR"),
        ("table_name", "VARCHAR"),
        ("table_type", "VARCHAR"),
    ],
    "columns": [
        ("table_catalog", "VARCHAR"),
        ("table_schema", "VARCHAR"),
        ("table_name", "VARCHAR"),
        ("column_name", "VARCHAR"),
        ("ordinal_position", "BIGINT"),
        ("column_default", "VARCHAR"),
        ("is_nullable", "VARCHAR"),
        ("data_type", "VARCHAR"),
    ],
}
_SHOW_TABLES = "SELECT table_name AS name FROM information_schema.tables ORDER BY name"


@dataclass(frozen=True)
class Statement:
    """An introspection statement as the query it is: ``prefix`` (DESCRIBE / SUMMARIZE) is put
    in front of the rendered query, and ``engine`` is the engine that must run it, if any."""

    root: exp.Expression
    prefix: str = ""
    engine: str | None = None


def as_query(root: exp.Expression) -> Statement:
    """``root`` itself, or the query an introspection statement stands for."""
    if isinstance(root, exp.Show):
        if str(root.this).upper() == "TABLES" and not root.args.get("terse"):
            return Statement(cast(exp.Expression, sqlglot.parse_one(_SHOW_TABLES, read=DIALECT)))
        raise UnsupportedQuery(f"SHOW {root.this} is not supported: use SHOW TABLES, DESCRIBE t or information_schema")
    if isinstance(root, (exp.Describe, exp.Summarize)):
        target = root.this
        query = exp.select("*").from_(target.copy()) if isinstance(target, exp.Table) else target
        if not isinstance(query, (exp.Query, exp.Values)):
            raise UnsupportedQuery(f"{root.key.upper()} takes a table or a query")
        prefix = "DESCRIBE" if isinstance(root, exp.Describe) else "SUMMARIZE"
        return Statement(cast(exp.Expression, query), prefix, engine="duckdb")
    return Statement(root)


def catalog_view(table: exp.Table) -> str | None:
    """The catalog view ``table`` names (``information_schema.tables`` …), or None."""
    from engine.sql.relations import CATALOG_NAME  # relations imports this module

    qualifier = [fold(p) for p in (table.catalog, table.db) if p]
    if qualifier in ([INFORMATION_SCHEMA], [CATALOG_NAME, INFORMATION_SCHEMA]) and fold(table.name) in VIEWS:
        return fold(table.name)
    return None


def render_views(ast: exp.Expression, tables: Callable[[], Iterable[CatalogTable]]) -> exp.Expression:
    """``ast`` with each catalog-view reference replaced by its rows (``tables``: what the
    token may see, asked for only when a view is referenced)."""
    marked = [t for t in ast.find_all(exp.Table) if CATALOG_VIEW in t.meta]
    if not marked:
        return ast
    rows = _rows(list(tables()))
    for table in marked:
        view = table.meta[CATALOG_VIEW]
        alias = table.alias or table.name
        table.replace(
            exp.Subquery(this=_relation(view, rows[view]), alias=exp.TableAlias(this=exp.to_identifier(alias)))
        )
    return ast


def _rows(tables: list[CatalogTable]) -> dict[str, list[tuple[object, ...]]]:
    from engine.sql.relations import CATALOG_NAME, SCHEMA_NAME
    from engine.sqltext import duckdb_type_name

    ordered = sorted(tables, key=lambda t: t.name)
    return {
        "schemata": [(CATALOG_NAME, SCHEMA_NAME, None)],
        "tables": [(CATALOG_NAME, SCHEMA_NAME, t.name, "BASE TABLE") for t in ordered],
        "columns": [
            (
                CATALOG_NAME,
                SCHEMA_NAME,
                t.name,
                f.name,
                i,
                None,
                "YES" if f.nullable else "NO",
                duckdb_type_name(f.type),
            )
            for t in ordered
            for i, f in enumerate(t.schema, start=1)
        ],
    }


def _relation(view: str, rows: list[tuple[object, ...]]) -> exp.Select:
    """``SELECT CAST(c1 AS T1) AS name1, … FROM (VALUES …) AS v(c1, …)``: typed on every
    engine, and an empty view is the one row of NULLs filtered out (VALUES cannot be empty)."""
    columns = VIEWS[view]
    placeholders = [f"c{i}" for i in range(len(columns))]
    values = exp.values(
        [tuple(_literal(v) for v in row) for row in rows] or [tuple(exp.Null() for _ in columns)],
        alias="v",
        columns=placeholders,
    )
    select = exp.select(
        *(
            exp.alias_(exp.cast(exp.column(p), exp.DataType.build(t, dialect=DIALECT)), name, quoted=True)
            for p, (name, t) in zip(placeholders, columns, strict=True)
        )
    ).from_(values)
    return select if rows else select.where(exp.false())


def _literal(value: object) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, int):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))
