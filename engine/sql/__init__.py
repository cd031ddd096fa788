"""SQL, once, before any engine sees it: parse (``parse``), refuse what a read-only query may
not contain (``checks``), give every relation a generated name (``relations``), and let DuckDB's
own parser confirm the result (``confirm``). ``validate`` runs them in that order."""

from engine.sql.checks import SAFE_TABLE_FUNCTIONS, builtin_functions, function_name
from engine.sql.params import bind_literals
from engine.sql.parse import DIALECT
from engine.sql.relations import render_relations
from engine.sql.validate import ValidatedQuery, validate

__all__ = [
    "DIALECT",
    "SAFE_TABLE_FUNCTIONS",
    "ValidatedQuery",
    "bind_literals",
    "builtin_functions",
    "function_name",
    "render_relations",
    "validate",
]
