"""Parse, validate and normalise SQL once, before any engine sees it.

Accepted: exactly one read-only query (SELECT / WITH / VALUES, optionally under EXPLAIN) over
catalog tables. Everything else is refused here by walking the sqlglot AST; the engines' own
sandboxes (DuckDB external access off, configuration locked) are the second line.
The SQL an engine runs is generated from the validated AST, so what was checked is what runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from engine.catalog import TABLE_NAME
from engine.errors import (
    InvalidParameters,
    QueryError,
    QueryTooComplex,
    QueryTooLarge,
    SqlSyntaxError,
    StatementNotAllowed,
    TableNotFound,
)

DIALECT = "duckdb"  # the SQL dialect clients write

# Leading words of statements that are never allowed (reported as 403, not as a syntax error,
# even when sqlglot cannot parse the rest of the statement).
FORBIDDEN_STATEMENTS = frozenset(
    """INSERT UPDATE DELETE MERGE UPSERT REPLACE CREATE DROP ALTER TRUNCATE COMMENT COPY ATTACH
    DETACH INSTALL LOAD FORCE SET RESET PRAGMA CALL EXPORT IMPORT BEGIN START COMMIT ROLLBACK
    ABORT END TRANSACTION SAVEPOINT RELEASE CHECKPOINT VACUUM ANALYZE USE DESCRIBE DESC SHOW
    SUMMARIZE GRANT REVOKE PREPARE EXECUTE DEALLOCATE UPDATE_EXTENSIONS CACHE UNCACHE REFRESH
    MSCK OPTIMIZE KILL LOCK UNLOCK""".split()  # noqa: SIM905 - a word list reads better than 55 quoted strings
)
# Table functions that only generate rows; every other function in FROM position is refused.
SAFE_TABLE_FUNCTIONS = frozenset({"generate_series", "range", "unnest"})
# Scalar or table functions that reach files, URLs, the environment, settings or the catalog.
_FORBIDDEN_FUNCTION = re.compile(
    r"""^(read_|parquet_|glob|getenv|current_setting|duckdb_|pragma_|sniff_csv|query$|query_table
    |delta_|iceberg_|sqlite_|postgres_|mysql_|scan_|write_|load_|json_execute_serialized_sql
    |which_secret|enable_|disable_|set_|checkpoint|force_checkpoint|sql_auto_complete|test_
    |http|txt|import_|export_|from_substrait|get_substrait|arrow_scan|python_|getvariable
    |current_database|current_schema|sqlite|iceberg|delta_scan|ducklake|attach|detach
    |pg_get_|pg_sleep|setseed$|nextval$|currval$)""",
    re.X,
)
# Structural limits, beyond ``max_depth`` (how deeply queries nest). A long chain of operators
# is one deep tree: DuckDB refuses expressions deeper than 1000 and Polars' planner overflows
# its stack near 450 chained ``||``. Nested brackets (calls, casts, subqueries, lists) recurse
# in every parser: Polars' SQL parser stops at 50 levels, and spins without end from 48
# nested CASTs (which a ``::T::T::…`` chain produces without any bracket in the text).
MAX_EXPRESSION_DEPTH = 256
MAX_BRACKET_DEPTH = 40
_OPENING = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSING = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)
_EXPLAIN = re.compile(r"EXPLAIN(?:\s+ANALY[SZ]E)?\b", re.I)
_ALLOWED_ROOTS = (exp.Query, exp.Values)
CATALOG_TABLE = "colonnade_table"


@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed validation, with the catalog tables it reads."""

    text: str  # what the client sent
    ast: exp.Expression  # the query itself (EXPLAIN stripped), table names canonical
    explain: str  # "", "EXPLAIN" or "EXPLAIN ANALYZE"
    tables: tuple[str, ...]  # catalog spellings, sorted
    param_count: int
    # Generated texts by (dialect, physical names): a validated query is reused across requests
    # (the API memoises validation), and generating SQL from the AST costs a millisecond or two.
    _texts: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, dialect: str = DIALECT, *, physical: Mapping[str, str] | None = None) -> str:
        """The query as text; ``physical`` renames catalog tables (keeping their names as
        aliases), e.g. to an engine's per-version views."""
        key = (dialect, tuple(sorted((physical or {}).items())))
        text = self._texts.get(key)
        if text is None:
            ast = with_physical_tables(self.ast, physical) if physical else self.ast
            body = ast.sql(dialect=dialect)
            text = self._texts[key] = f"{self.explain} {body}" if self.explain else body
        return text

    @property
    def normalized(self) -> str:
        """Canonical text: the cache key's query part."""
        return self.sql(DIALECT)

    def check_params(self, params: Sequence[Any] | None) -> list[Any]:
        given = list(params or [])
        if len(given) != self.param_count:
            raise InvalidParameters(f"the query has {self.param_count} parameter(s) but {len(given)} were given")
        for i, value in enumerate(given):
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise InvalidParameters(f"parameter {i + 1} must be a string, number, boolean or null")
        return given


def validate(
    text: str,
    resolve_table: Callable[[str], str],
    *,
    max_bytes: int = 256 * 1024,
    max_depth: int = 64,
) -> ValidatedQuery:
    """Validate ``text``; ``resolve_table`` maps a name to the catalog's spelling or raises."""
    if not isinstance(text, str):
        raise SqlSyntaxError("the query must be text")
    if len(text.encode()) > max_bytes:
        raise QueryTooLarge(f"the query is {len(text.encode())} bytes; the limit is {max_bytes}")
    body_start = _LEADING_NOISE.match(text).end()
    explain = ""
    if m := _EXPLAIN.match(text, body_start):
        explain = re.sub(r"\s+", " ", m.group(0).upper())
        body_start = m.end()
    body = text[body_start:]
    first_word = (re.match(r"[A-Za-z_]+", _LEADING_NOISE.sub("", body, count=1)) or [""])[0].upper()
    if first_word in FORBIDDEN_STATEMENTS:
        raise StatementNotAllowed(f"{first_word} statements are not allowed: only read-only queries run here")
    statements = _parse(body, offset=body_start, full_text=text)
    if not statements:
        raise SqlSyntaxError("the query is empty")
    if len(statements) > 1:
        raise StatementNotAllowed(f"exactly one statement is allowed, got {len(statements)}")
    root = statements[0]
    if not isinstance(root, _ALLOWED_ROOTS):
        if isinstance(root, exp.Condition):
            raise SqlSyntaxError("expected a query (SELECT, WITH, VALUES or EXPLAIN)")
        raise StatementNotAllowed(f"{root.key.upper()} statements are not allowed: only read-only queries run here")
    _check_depth(root, max_depth)
    _check_nodes(root)
    tables = _resolve_tables(root, resolve_table)
    _check_brackets(root)
    return ValidatedQuery(text, root, explain, tuple(sorted(set(tables))), _count_params(root))


def _parse(body: str, *, offset: int, full_text: str) -> list[exp.Expression]:
    try:
        return [s for s in sqlglot.parse(body, read=DIALECT) if s is not None]
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        line, col = err.get("line"), err.get("col")
        position = _position(full_text, offset, body, line, col)
        near = err.get("highlight") or ""
        where = f" at line {position['line']}, column {position['column']}" if position else ""
        detail = f"syntax error{where}" + (f" near {near!r}" if near else "")
        raise SqlSyntaxError(detail, position=position) from None
    except TokenError as exc:
        raise SqlSyntaxError(f"cannot tokenize the query: {exc}") from None
    except RecursionError:
        raise QueryTooComplex("the query is nested too deeply to parse") from None


def _position(full: str, offset: int, body: str, line: int | None, col: int | None) -> dict[str, int] | None:
    """1-based line/column and character offset in the text the client sent."""
    if not line or not col:
        return None
    lines = body.split("\n")
    index = offset + sum(len(s) + 1 for s in lines[: line - 1]) + col - 1
    index = max(0, min(index, len(full)))
    before = full[:index]
    return {"offset": index + 1, "line": before.count("\n") + 1, "column": index - (before.rfind("\n") + 1) + 1}


def _check_depth(root: exp.Expression, max_depth: int) -> None:
    """Queries nest at most ``max_depth`` SELECTs deep, expressions ``MAX_EXPRESSION_DEPTH``."""
    stack = [(root, 0, 1)]
    while stack:
        node, queries, depth = stack.pop()
        if isinstance(node, exp.Select):  # a (SELECT …) subquery is one level, not two
            queries += 1
            if queries > max_depth:
                raise QueryTooComplex(f"queries may nest at most {max_depth} levels deep")
        if depth > MAX_EXPRESSION_DEPTH:
            raise QueryTooComplex(
                f"the query is more than {MAX_EXPRESSION_DEPTH} levels deep: split long chains of operators"
            )
        stack.extend((child, queries, depth + 1) for child in node.iter_expressions())


def _check_brackets(root: exp.Expression) -> None:
    """Brackets nest at most ``MAX_BRACKET_DEPTH`` deep in the SQL the engines will parse."""
    try:
        tokens = sqlglot.tokenize(root.sql(dialect=DIALECT), read=DIALECT)
    except RecursionError:
        raise QueryTooComplex("the query is nested too deeply") from None
    depth = 0
    for token in tokens:
        if token.token_type in _OPENING:
            depth += 1
            if depth > MAX_BRACKET_DEPTH:
                raise QueryTooComplex(f"brackets (calls, casts, subqueries) may nest at most {MAX_BRACKET_DEPTH} deep")
        elif token.token_type in _CLOSING:
            depth -= 1


@functools.cache
def builtin_functions() -> frozenset[str]:
    """DuckDB's scalar, aggregate, window and macro functions: the only names a query may call."""
    import duckdb

    with duckdb.connect() as con:  # an empty in-memory database: the built-in catalog only
        rows = con.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions()"
            " WHERE function_type IN ('scalar', 'aggregate', 'macro', 'window')"
        ).fetchall()
    return frozenset(name for (name,) in rows)


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_nodes(root: exp.Expression) -> None:
    for node in root.walk():
        if isinstance(node, (exp.Command, exp.DDL, exp.DML, exp.Copy, exp.Set, exp.Pragma, exp.Transaction)):
            raise StatementNotAllowed(f"{node.key.upper()} is not allowed inside a query")
        if isinstance(node, exp.Func):
            name = function_name(node)
            if _FORBIDDEN_FUNCTION.match(name):
                raise StatementNotAllowed(
                    f"function {name}() is not allowed: it reaches files, settings or the environment"
                )
            # A name sqlglot does not know must be one of DuckDB's own functions (look-alike
            # letters or invisible characters make another name). Table functions: below.
            if (
                isinstance(node, exp.Anonymous)
                and not isinstance(node.parent, exp.Table)
                and name not in builtin_functions()
            ):
                raise QueryError(f"unknown function {node.name}(): only DuckDB's built-in functions can be called")
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            fn = node.this
            name = function_name(fn) if isinstance(fn, exp.Func) else type(fn).__name__.lower()
            if name not in SAFE_TABLE_FUNCTIONS:
                raise StatementNotAllowed(f"table function {name}() is not allowed: query catalog tables")


def _resolve_tables(root: exp.Expression, resolve_table: Callable[[str], str]) -> list[str]:
    found = []
    for table in list(root.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            continue  # a safe table function, checked above
        name = table.name
        if not (table.db or table.catalog) and _is_cte_reference(table):
            continue
        if not TABLE_NAME.match(name):
            if re.search(r"[/\\.:~*?]", name):
                raise StatementNotAllowed(f"{name!r} looks like a file path or URL; only catalog tables can be queried")
            raise TableNotFound(f"table {name!r} does not exist", table=name)
        if table.db or table.catalog:
            qualified = ".".join(p for p in (table.catalog, table.db, name) if p)
            raise TableNotFound(
                f"table {qualified!r} does not exist: catalog tables are unqualified names", table=qualified
            )
        canonical = resolve_table(name)
        if canonical != name:
            if not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
            table.set("this", exp.to_identifier(canonical, quoted=True))
        table.meta[CATALOG_TABLE] = canonical  # marks a catalog reference (not a CTE) for rewrites
        found.append(canonical)
    return found


def _is_cte_reference(table: exp.Table) -> bool:
    """True when ``table`` names a CTE visible at its position (lexical scoping).

    A CTE sees the CTEs defined before it (and itself when the WITH is RECURSIVE); the query
    body sees them all; a reference outside the query that owns the WITH sees none of them.
    """
    name = table.name.lower()
    node: exp.Expression = table
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
            if any(cte.alias.lower() == name for cte in ctes):
                return True
        inside = None
    return False


def with_physical_tables(ast: exp.Expression, physical: Mapping[str, str]) -> exp.Expression:
    ast = ast.copy()
    for table in ast.find_all(exp.Table):
        canonical = table.meta.get(CATALOG_TABLE)
        if canonical is None:
            continue
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(canonical, quoted=True)))
        table.set("this", exp.to_identifier(physical[canonical], quoted=True))
    return ast


def _count_params(root: exp.Expression) -> int:
    anonymous = numbered = 0
    for ph in root.find_all(exp.Placeholder):
        if ph.this is None:
            anonymous += 1
        elif str(ph.this).isdigit():
            numbered = max(numbered, int(str(ph.this)))
        else:
            raise InvalidParameters(f"named parameter ${ph.this} is not supported: use ? or $1, $2 ...")
    if anonymous and numbered:
        raise InvalidParameters("use either ? or $1, $2 ... parameters, not both")
    return anonymous or numbered


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
