"""Every relation a query names becomes a name Colonnade generated, or the query is refused.

A relation (an ``exp.Table`` node) is one of four things: a row-generating table function
(checked in ``checks.py``), a CTE, a catalog view (``information_schema.tables``…, replaced by
its rows when rendered: see ``introspection.py``), or a catalog table. Each CTE definition is renamed to
``cte_<n>``, and each reference that resolves to it is renamed with it, keeping the name the
client wrote as its alias. Every other name must be a catalog table: it is marked, and the
engine's relation name for the pinned version replaces it when the SQL is rendered. A name that
is neither is refused before any engine sees it.

Nothing here has to agree with DuckDB's scoping rules (recursive CTEs, nested WITH, LATERAL,
shadowing, identifier folding). After the rewrite every relation name an engine sees was
generated here, so a reference resolved differently from the engine can only read a CTE of the
same query, a catalog table that was checked (and granted) as one, or nothing at all (the engine
reports an unknown table). ``confirm.py`` then asks DuckDB's own parser to agree.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlglot import exp

from engine.catalog import TABLE_NAME
from engine.errors import StatementNotAllowed, TableNotFound
from engine.sql.introspection import CATALOG_VIEW, catalog_view
from engine.sqltext import fold, quote_ident

CATALOG_TABLE = "colonnade_table"  # node meta: the catalog table an exp.Table names
CTE_PREFIX = "cte_"
# What a client may put in front of a table name: the schema and catalog that
# information_schema reports (BI tools qualify every name they generate).
CATALOG_NAME = "colonnade"
SCHEMA_NAME = "main"
_PATH_LIKE = re.compile(r"[/\\.:~*?]")
_NONCE = secrets.token_hex(6)


@dataclass(frozen=True)
class BoundRelations:
    tables: tuple[str, ...]  # catalog spellings of every table read, sorted, once each
    ctes: Mapping[str, str]  # generated CTE name -> the name the client wrote
    views: bool  # reads catalog views (information_schema …)


def bind_relations(
    root: exp.Expression, resolve_table: Callable[[str], str], nodes: list[exp.Expression]
) -> BoundRelations:
    """Rewrite ``root`` (whose nodes are ``nodes``) in place: CTEs get generated names,
    catalog tables are marked."""
    references: list[tuple[exp.Table, exp.CTE]] = []
    tables: set[str] = set()
    views = False
    for table in [n for n in nodes if isinstance(n, exp.Table)]:
        if not isinstance(table.this, exp.Identifier):
            continue  # a row-generating table function, checked by checks.py
        qualified = bool(table.args.get("db") or table.args.get("catalog"))
        cte = None if qualified else _visible_cte(table)
        if cte is not None:
            references.append((table, cte))
        elif (view := catalog_view(table)) is not None:
            _keep_alias(table)
            table.meta[CATALOG_VIEW] = view
            views = True
        else:
            tables.add(_bind_catalog_table(table, resolve_table))
    # Rename only after every reference is resolved: resolution compares the client's names.
    generated: dict[int, str] = {}
    ctes: dict[str, str] = {}
    for number, cte in enumerate((n for n in nodes if isinstance(n, exp.CTE)), start=1):
        name = f"{CTE_PREFIX}{number}"
        generated[id(cte)] = name
        ctes[name] = cte.alias
        alias = cte.args.get("alias") or exp.TableAlias()
        alias.set("this", exp.to_identifier(name))
        cte.set("alias", alias)
    for table, cte in references:
        _keep_alias(table)
        table.set("this", exp.to_identifier(generated[id(cte)]))
    return BoundRelations(tuple(sorted(tables)), ctes, views)


def _visible_cte(table: exp.Table) -> exp.CTE | None:
    """The CTE ``table`` names at its position, by lexical scoping, or None.

    The innermost WITH wins; a CTE sees the CTEs defined before it (and itself when the WITH
    is RECURSIVE); the query body sees them all; a reference outside the query that owns the
    WITH sees none of them. Names compare as DuckDB folds them (ASCII only).
    """
    name = fold(table.name)
    node: exp.Expr = table
    inside: exp.CTE | None = None  # the CTE whose body we are climbing out of, if any
    while node.parent is not None:
        if isinstance(node, exp.CTE):
            inside = node
        node = node.parent
        if not isinstance(node, exp.Query):
            continue
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = list(with_.expressions)
            position = next((i for i, cte in enumerate(ctes) if cte is inside), None)
            if position is not None:
                ctes = ctes[: position + (1 if with_.args.get("recursive") else 0)]
            for cte in reversed(ctes):  # a later CTE of the same name shadows an earlier one
                if fold(cte.alias) == name:
                    return cte
        inside = None
    return None


def _bind_catalog_table(table: exp.Table, resolve_table: Callable[[str], str]) -> str:
    name = table.name
    qualifier = [fold(p) for p in (table.catalog, table.db) if p]
    if qualifier not in ([], [SCHEMA_NAME], [CATALOG_NAME, SCHEMA_NAME]):
        written = ".".join(p for p in (table.catalog, table.db, name) if p)
        raise TableNotFound(f"table {written!r} does not exist", table=written)
    if not TABLE_NAME.match(name):
        if _PATH_LIKE.search(name):
            raise StatementNotAllowed(f"{name!r} looks like a file path or URL; only catalog tables can be queried")
        raise TableNotFound(f"table {name!r} does not exist", table=name)
    canonical = resolve_table(name)
    _keep_alias(table)
    table.set("catalog", None)
    table.set("db", None)
    table.set("this", exp.to_identifier(placeholder(canonical), quoted=True))
    table.meta[CATALOG_TABLE] = canonical
    return canonical


def placeholder(table: str) -> str:
    """The name a catalog table has in a validated query's text until its version is known.
    Unguessable (a per-process nonce), so client text cannot spell it; any left unreplaced
    makes DuckDB's parser disagree and the query is refused."""
    return f"colonnade_{_NONCE}_{table}"


def substitute(text: str, relations: Mapping[str, str]) -> str:
    """``text`` with each catalog table's placeholder replaced by its engine relation name."""
    for table, relation in relations.items():
        text = text.replace(quote_ident(placeholder(table)), quote_ident(relation))
    return text


def _keep_alias(table: exp.Table) -> None:
    """Column references qualify by the name the client wrote: keep it as the alias."""
    alias = table.args.get("alias")
    if alias is None:
        table.set("alias", exp.TableAlias(this=table.this.copy()))
    elif not alias.this:
        alias.set("this", table.this.copy())


def render_relations(ast: exp.Expression, relations: Mapping[str, str]) -> exp.Expression:
    """A copy of ``ast`` whose catalog tables read the engine relations named in ``relations``."""
    ast = ast.copy()
    for table in ast.find_all(exp.Table):
        canonical = table.meta.get(CATALOG_TABLE)
        if canonical is not None:
            table.set("this", exp.to_identifier(relations[canonical], quoted=True))
    return ast
