"""Query parameters: ``?`` or ``$1, $2 …``, counted when validating and checked per request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlglot import exp

from engine.errors import InvalidParameters


def count_params(nodes: Iterable[exp.Expression]) -> int:
    anonymous = numbered = 0
    for ph in (n for n in nodes if isinstance(n, exp.Placeholder)):
        if ph.this is None:
            anonymous += 1
        elif str(ph.this).isdigit():
            numbered = max(numbered, int(str(ph.this)))
        else:
            raise InvalidParameters(f"named parameter ${ph.this} is not supported: use ? or $1, $2 ...")
    if anonymous and numbered:
        raise InvalidParameters("use either ? or $1, $2 ... parameters, not both")
    return anonymous or numbered


def check_params(expected: int, params: Sequence[Any] | None) -> list[Any]:
    """The parameters as a list: as many as the query has, each a JSON scalar."""
    if params is not None and not isinstance(params, (list, tuple)):
        raise InvalidParameters("params must be a list")
    given = list(params or [])
    if len(given) != expected:
        raise InvalidParameters(f"the query has {expected} parameter(s) but {len(given)} were given")
    for i, value in enumerate(given):
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InvalidParameters(f"parameter {i + 1} must be a string, number, boolean or null")
    return given


def bind_literals(ast: exp.Expression, params: Sequence[Any]) -> exp.Expression:
    """Replace parameters by typed literal nodes, for engines without parameter binding.

    The values become AST nodes that the generator quotes, never text spliced into SQL.
    """
    values = list(params)
    counter = iter(range(len(values)))

    def literal(value: Any) -> exp.Expression:
        if value is None:
            return exp.Null()
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        if isinstance(value, float):  # a bare 1.5 would be DECIMAL; DuckDB binds a float as DOUBLE
            return exp.cast(exp.Literal.string(repr(value)), exp.DataType.build("DOUBLE"))
        if isinstance(value, int):
            return exp.Literal.number(repr(value))
        return exp.Literal.string(value)

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            index = next(counter) if node.this is None else int(str(node.this)) - 1
            return literal(values[index])
        return node

    return ast.copy().transform(swap)
