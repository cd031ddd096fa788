"""``validate``: client SQL → a ``ValidatedQuery`` whose every relation Colonnade named.

Accepted: exactly one read-only query (SELECT / WITH / VALUES / PIVOT / UNPIVOT, optionally
under EXPLAIN) over catalog tables. Everything else is refused by walking the sqlglot AST. The
SQL an engine runs is rendered from the validated AST (so what was checked is what runs) and
confirmed by DuckDB's own parser (``confirm.py``); the engines' sandboxes are the last line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from engine.errors import SqlSyntaxError, StatementNotAllowed, UnsupportedQuery
from engine.sql.checks import check_nodes
from engine.sql.confirm import confirm_relations, has_dynamic_pivot, serializable
from engine.sql.introspection import CatalogTable, as_query, render_views
from engine.sql.params import check_params, count_params
from engine.sql.parse import DIALECT, check_brackets, check_depth, parse_statement
from engine.sql.relations import bind_relations, render_relations, substitute

_ALLOWED_ROOTS = (exp.Query, exp.Values)


@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed validation: its AST with generated CTE names and marked catalog
    tables and views, and what the request path needs to know about it."""

    text: str  # what the client sent
    ast: exp.Expression  # the query itself (any prefix stripped)
    body: str  # its DuckDB text, catalog tables still placeholders (``relations.placeholder``)
    prefix: str  # "", "EXPLAIN", "EXPLAIN ANALYZE", "DESCRIBE" or "SUMMARIZE": put before the query
    tables: tuple[str, ...]  # catalog spellings of every table it reads, sorted
    ctes: Mapping[str, str]  # generated CTE name -> the client's name
    param_count: int
    volatile: bool  # reads the clock or a random source: never served from a cache
    engine: str | None = None  # the engine that must run it (introspection), if any
    views: bool = False  # reads catalog views (information_schema): rendered per token
    # Confirmed DuckDB texts by relation names: a validated query is reused across requests
    # (the request path memoises validation), and each table version renders once.
    _texts: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def explain(self) -> str:
        return self.prefix if self.prefix.startswith("EXPLAIN") else ""

    def __getstate__(self) -> dict[str, Any]:
        """For a worker process: everything but the lock and the memo of rendered texts."""
        state = dict(self.__dict__)
        del state["_lock"]
        state["_texts"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def render(self, relations: Mapping[str, str], catalog: Callable[[], Iterable[CatalogTable]] = tuple) -> str:
        """The DuckDB text an engine runs, prefix included, confirmed by DuckDB's parser:
        catalog tables read ``relations`` (engine relation names), catalog views hold
        ``catalog`` (what the token may see)."""
        key = tuple(sorted(relations.items()))
        with self._lock:
            text = None if self.views else self._texts.get(key)
        if text is not None:
            return text
        if self.views or has_dynamic_pivot(self.ast):  # rare: through the AST
            ast = self.engine_ast(relations, catalog)
            body = ast.sql(dialect=DIALECT)
            confirm_relations(serializable(ast).sql(dialect=DIALECT), relations, self.ctes)
        else:  # the hot path: a few string replacements, no copy of the tree
            body = substitute(self.body, relations)
            confirm_relations(body, relations, self.ctes)
        text = f"{self.prefix} {body}" if self.prefix else body
        if not self.views:
            with self._lock:
                self._texts[key] = text
        return text

    def engine_ast(
        self, relations: Mapping[str, str], catalog: Callable[[], Iterable[CatalogTable]] = tuple
    ) -> exp.Expression:
        """A copy of the AST as engines run it (engines that rewrite it further: Polars, Spark)."""
        return render_views(render_relations(self.ast, relations), catalog)

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
    parsed = parse_statement(text, max_bytes=max_bytes)
    statement = as_query(parsed.root)
    if statement.prefix and parsed.explain:
        raise UnsupportedQuery(f"EXPLAIN {statement.prefix} is not supported")
    root = statement.root
    if isinstance(root, exp.Pivot):  # a top-level PIVOT/UNPIVOT statement reads like a query
        root = exp.select("*").from_(exp.Subquery(this=root))
    if not isinstance(root, _ALLOWED_ROOTS):
        if isinstance(root, exp.Condition):
            raise SqlSyntaxError("expected a query (SELECT, WITH, VALUES, PIVOT or EXPLAIN)")
        raise StatementNotAllowed(f"{root.key.upper()} statements are not allowed: only read-only queries run here")
    nodes = check_depth(root, max_depth)
    volatile = check_nodes(nodes)
    bound = bind_relations(root, resolve_table, nodes)
    body = root.sql(dialect=DIALECT)
    check_brackets(body)  # placeholders for table names change no bracket
    return ValidatedQuery(
        text,
        root,
        body,
        statement.prefix or parsed.explain,
        bound.tables,
        bound.ctes,
        count_params(nodes),
        volatile,
        engine=statement.engine,
        views=bound.views,
    )
