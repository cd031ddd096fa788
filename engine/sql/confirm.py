"""A second opinion from DuckDB's own parser on the SQL an engine is about to run.

``json_serialize_sql`` parses the text with DuckDB's parser (it binds nothing and reads
nothing) and returns its tree. Every relation in that tree must be one Colonnade generated: a
CTE the validator named, or the engine relation of a table the query was validated (and
granted) for, and the set of tables read must equal the validator's. Table functions must be
row generators, and no function may reach files, settings or the environment. Anything else,
including a shape of the tree this module does not know, refuses the query and is logged as a
security event: it means sqlglot and DuckDB read the text differently.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from sqlglot import exp

from engine.errors import StatementNotAllowed
from engine.sql.checks import FORBIDDEN_FUNCTION, SAFE_TABLE_FUNCTIONS
from engine.sql.relations import CTE_PREFIX
from engine.sqltext import DUCKDB_LOCKDOWN

security_log = logging.getLogger("colonnade.security")

# Query nodes and table references a validated query may consist of (DuckDB's names).
_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_TABLE_REFS = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY", "PIVOT"})


class _Parser:
    """One in-memory DuckDB, locked down, used only to parse."""

    def __init__(self) -> None:
        import duckdb

        self._con = duckdb.connect(config={"threads": 1})
        for statement in DUCKDB_LOCKDOWN:
            self._con.execute(statement)
        self._lock = threading.Lock()

    def tree(self, sql: str) -> dict[str, Any]:
        with self._lock:
            (text,) = self._con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()  # type: ignore[misc]
        return msgspec.json.decode(text)


_parser: _Parser | None = None
_parser_lock = threading.Lock()


def _duckdb_parser() -> _Parser:
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = _Parser()
        return _parser


def confirm_relations(sql: str, relations: Mapping[str, str], ctes: Mapping[str, str]) -> None:
    """Refuse ``sql`` unless DuckDB's parser finds in it exactly the relations Colonnade
    generated. ``relations`` maps each catalog table the query reads to its engine relation
    name; ``ctes`` holds the generated CTE names. (For a query holding a dynamic PIVOT, pass
    the text of ``serializable(ast)``.)"""
    tree = _duckdb_parser().tree(sql)
    problem = _disagreement(tree, set(relations.values()), set(ctes))
    if problem is not None:
        security_log.warning(
            json.dumps({"event": "parser_disagreement", "problem": problem, "tables": sorted(relations)})
        )
        # The client sees no generated name: the security log has the particulars.
        raise StatementNotAllowed(
            "the query was refused: its tables or CTEs read differently to DuckDB's parser than to "
            "Colonnade's (an unusual placement of WITH or of a name); rewrite it more plainly"
        )


def has_dynamic_pivot(ast: exp.Expression) -> bool:
    dynamic = [p for p in ast.find_all(exp.Pivot) if p.args.get("using") and not p.args.get("unpivot")]
    return any(not isinstance(e, exp.In) for p in dynamic for e in p.expressions)


def serializable(ast: exp.Expression) -> exp.Expression:
    """DuckDB serializes no statement but a SELECT, and a PIVOT whose ``ON`` columns have no
    ``IN`` list is several statements inside DuckDB (it first reads the distinct values). The
    parser is shown a twin with a one-value list per such column: same relations, one SELECT."""
    if not has_dynamic_pivot(ast):
        return ast
    twin = ast.copy()
    for pivot in twin.find_all(exp.Pivot):
        if pivot.args.get("using") and not pivot.args.get("unpivot"):
            pivot.set(
                "expressions",
                [
                    e if isinstance(e, exp.In) else exp.In(this=exp.paren(e, copy=False), expressions=[exp.Null()])
                    for e in pivot.expressions
                ],
            )
    return twin


def _disagreement(tree: dict[str, Any], expected: set[str], ctes: set[str]) -> str | None:
    if tree.get("error"):
        return f"DuckDB cannot parse the generated query ({tree.get('error_message', 'parser error')})"
    statements = tree.get("statements") or []
    if len(statements) != 1:
        return f"DuckDB reads {len(statements)} statements"
    defined: set[str] = set()
    read: set[str] = set()
    for node in _walk(statements[0]):
        kind = node.get("type")
        if not isinstance(kind, str):  # a constant's value: {"type": {"id": ...}, "value": ...}
            kind = None
        if "cte_map" in node:
            defined.update(entry["key"] for entry in node["cte_map"].get("map", []))
        if "class" in node:  # an expression
            if node["class"] == "FUNCTION":
                name = str(node.get("function_name", "")).lower()
                if node.get("schema") or node.get("catalog") or FORBIDDEN_FUNCTION.match(name):
                    return f"function {name}() is not allowed"
            continue
        if kind == "BASE_TABLE":
            if node.get("schema_name") or node.get("catalog_name") or node.get("at_clause"):
                return "a qualified or time-travel table reference"
            read.add(node["table_name"])
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in SAFE_TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
                return f"table function {name}() is not allowed"
        elif kind is not None and kind not in _NODES and kind not in _TABLE_REFS and _is_relation_like(node):
            return f"unexpected relation of type {kind}"
    unknown_ctes = {name for name in defined if not name.startswith(CTE_PREFIX) or name not in ctes}
    if unknown_ctes:
        return f"CTE names Colonnade did not generate: {sorted(unknown_ctes)}"
    tables = read - defined
    if tables != expected:
        return f"DuckDB reads {sorted(tables)}, the validator {sorted(expected)}"
    return None


def _is_relation_like(node: dict[str, Any]) -> bool:
    """A node DuckDB's serializer emits for a query or table reference (they carry no "class")."""
    return "query_location" in node or "select_list" in node or "cte_map" in node


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
