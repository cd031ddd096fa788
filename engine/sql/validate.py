"""``validate``: client SQL → a ``ValidatedQuery`` whose every relation Colonnade named.

Accepted: exactly one read-only query (SELECT / WITH / VALUES / PIVOT / UNPIVOT, optionally
under EXPLAIN) over catalog tables. Everything else is refused by walking the sqlglot AST. The
SQL an engine runs is rendered from the validated AST (so what was checked is what runs) and
confirmed by DuckDB's own parser (``confirm.py``); the engines' sandboxes are the last line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from engine.errors import SqlSyntaxError, StatementNotAllowed
from engine.sql.checks import check_nodes
from engine.sql.confirm import confirm_relations
from engine.sql.params import check_params, count_params
from engine.sql.parse import DIALECT, check_brackets, parse_statement
from engine.sql.relations import bind_relations, render_relations

_ALLOWED_ROOTS = (exp.Query, exp.Values)


@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed validation: its AST with generated CTE names and marked catalog
    tables, and what the request path needs to know about it."""

    text: str  # what the client sent
    ast: exp.Expression  # the query itself (EXPLAIN stripped)
    explain: str  # "", "EXPLAIN" or "EXPLAIN ANALYZE"
    tables: tuple[str, ...]  # catalog spellings of every table it reads, sorted
    ctes: Mapping[str, str]  # generated CTE name -> the client's name
    param_count: int
    volatile: bool  # reads the clock or a random source: never served from a cache
    # Rendered texts by (dialect, relation names): a validated query is reused across requests
    # (the request path memoises validation), and rendering costs a millisecond or two.
    _texts: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def render(self, relations: Mapping[str, str], dialect: str = DIALECT) -> str:
        """The SQL an engine runs: catalog tables read ``relations`` (engine relation names).
        DuckDB-dialect texts are confirmed by DuckDB's parser before they are handed out."""
        key = (dialect, tuple(sorted(relations.items())))
        with self._lock:
            text = self._texts.get(key)
        if text is None:
            ast = render_relations(self.ast, relations)
            if dialect == DIALECT:
                confirm_relations(ast, {t: relations[t] for t in self.tables}, self.ctes)
            body = ast.sql(dialect=dialect)
            text = f"{self.explain} {body}" if self.explain else body
            with self._lock:
                self._texts[key] = text
        return text

    def check_params(self, params: Sequence[Any] | None) -> list[Any]:
        return check_params(self.param_count, params)


def validate(
    text: str,
    resolve_table: Callable[[str], str],
    *,
    max_bytes: int = 256 * 1024,
    max_depth: int = 64,
) -> ValidatedQuery:
    """Validate ``text``; ``resolve_table`` maps a name to the catalog's spelling or raises."""
    statement = parse_statement(text, max_bytes=max_bytes, max_depth=max_depth)
    root = statement.root
    if isinstance(root, exp.Pivot):  # a top-level PIVOT/UNPIVOT statement reads like a query
        root = exp.select("*").from_(exp.Subquery(this=root))
    if not isinstance(root, _ALLOWED_ROOTS):
        if isinstance(root, exp.Condition):
            raise SqlSyntaxError("expected a query (SELECT, WITH, VALUES, PIVOT or EXPLAIN)")
        raise StatementNotAllowed(f"{root.key.upper()} statements are not allowed: only read-only queries run here")
    volatile = check_nodes(root)
    bound = bind_relations(root, resolve_table)
    check_brackets(root.sql(dialect=DIALECT))
    return ValidatedQuery(text, root, statement.explain, bound.tables, bound.ctes, count_params(root), volatile)
