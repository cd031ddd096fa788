"""``PreparedQuery``: one request's query, ready for an engine.

Validated and rewritten (every relation a generated name, confirmed by DuckDB's parser), its
tables pinned to one version each from one catalog read, the engine chosen, the parameters
checked. The HTTP API and the notebook both run exactly this; caches key on ``key``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlglot import exp

from engine.catalog import TableSnapshot
from engine.errors import ColonnadeError
from engine.sql import ValidatedQuery
from engine.sql.introspection import CatalogTable

_ABSOLUTE_PATH = re.compile(r"(?<![\w./])(?:file://)?(?:/[\w.\-=@%+]+){2,}/?")


@dataclass(frozen=True)
class PreparedQuery:
    query: ValidatedQuery
    params: list[Any]
    tables: Mapping[str, TableSnapshot]  # catalog name -> the pinned version
    engine: str  # the engine that runs it ("auto" resolved)
    sql: str  # the DuckDB text engines run, prefix included (confirmed by DuckDB's parser)
    catalog: Callable[[], Iterable[CatalogTable]] = field(default=tuple, compare=False, repr=False)
    fallback: str | None = None  # engine=auto: the engine that runs it if the chosen one refuses

    @cached_property
    def ast(self) -> exp.Expression:
        """The query as an AST with engine relation names and catalog views filled in, for the
        engines that rewrite it further (Polars, Spark). Built on first use."""
        return self.query.engine_ast(self.relations, self.catalog)

    def __getstate__(self) -> dict[str, Any]:
        """For a worker process (Polars): the AST as engines run it, built here, and not the
        catalog (a closure over this process's Database) nor the redactor."""
        state = dict(self.__dict__)
        state["ast"] = self.ast
        state["catalog"] = tuple
        state.pop("_redactor", None)
        return state

    @property
    def relations(self) -> dict[str, str]:
        """Catalog table -> the generated relation name engines register it under."""
        return {name: snap.relation for name, snap in self.tables.items()}

    @property
    def by_relation(self) -> dict[str, TableSnapshot]:
        """Relation name -> snapshot: how engines that type the query see its tables."""
        return {snap.relation: snap for snap in self.tables.values()}

    @property
    def cacheable(self) -> bool:
        """Volatile queries (the clock, random values, unseeded samples) are never cached."""
        return not self.query.volatile

    def key(self, *extra: object) -> str:
        """A cache key: the rendered SQL names every table's version, so a new version makes
        a new key and nothing is ever invalidated by hand."""
        parts = [self.sql, self.engine, self.params, *extra]
        return hashlib.sha256(json.dumps(parts, default=str, separators=(",", ":")).encode()).hexdigest()

    def redact(self, text: str) -> str:
        """``text`` (an engine's error or plan) with generated and physical names turned back
        into the names the client knows: no relation name, CTE name or file path leaves."""
        return self._redactor(text)

    def redact_plan(self, text: str) -> str:
        """``redact``, and whatever still looks like an absolute path (a plan may wrap one)."""
        return _ABSOLUTE_PATH.sub("<path>", self._redactor(text))

    def redact_error(self, error: ColonnadeError) -> ColonnadeError:
        error.detail = self.redact(error.detail)
        error.args = (error.detail,)
        return error

    @cached_property
    def _redactor(self) -> Callable[[str], str]:
        names: dict[str, str] = {}
        for name, snap in self.tables.items():
            names[snap.relation] = name
            for path in (*snap.files, snap.uri, snap.root):
                if path:
                    names[path] = name
                    if path.startswith("/"):  # an object-store URI has no file:// form
                        names[Path(path).as_uri()] = name
        names.update(self.query.ctes)
        if not names:
            return lambda text: text
        # Longest first, so a path is replaced before the directory that contains it.
        pattern = re.compile(
            "|".join(re.escape(n) + (r"\b" if n[-1:].isalnum() else "") for n in sorted(names, key=len, reverse=True))
        )
        return lambda text: pattern.sub(lambda m: names[m.group(0)], text)


class ValidationMemo:
    """Validated queries by SQL text, so a repeated query is not parsed and printed again
    (sqlglot costs 1-6 ms a query). Validation depends only on the text and on the catalog's
    table names; an entry is reused only while ``stamp`` is unchanged (the data directory's
    mtime, or an object-store listing of its tables), so creating or dropping a table
    re-validates. Only successes are kept."""

    def __init__(self, stamp: Callable[[], object], max_entries: int = 256) -> None:
        self._stamp = stamp
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[object, ValidatedQuery]] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, sql: str) -> ValidatedQuery | None:
        """The memoised validation of ``sql``, if any (nothing is validated here)."""
        stamp = self._stamp()
        with self._lock:
            hit = self._entries.get(sql)
            if hit is not None and hit[0] == stamp:
                self._entries.move_to_end(sql)
                return hit[1]
        return None

    def get(self, sql: str, validate: Callable[[str], ValidatedQuery]) -> ValidatedQuery:
        query = self.peek(sql)
        if query is not None:
            return query
        stamp = self._stamp()
        query = validate(sql)
        with self._lock:
            self._entries[sql] = (stamp, query)
            self._entries.move_to_end(sql)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return query
