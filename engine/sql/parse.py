"""Text → one sqlglot statement, with the size, shape and nesting limits every engine needs.

Errors name where the text went wrong (offset, line, column in what the client sent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from engine.errors import QueryTooComplex, QueryTooLarge, SqlSyntaxError, StatementNotAllowed

DIALECT = "duckdb"  # the SQL dialect clients write

# Leading words of statements that are never allowed (reported as 403, not as a syntax error,
# even when sqlglot cannot parse the rest of the statement). DESCRIBE, SHOW and SUMMARIZE are
# not here: Colonnade answers them from its catalog (engine/sql/introspection.py).
FORBIDDEN_STATEMENTS = frozenset(
    """INSERT UPDATE DELETE MERGE UPSERT REPLACE CREATE DROP ALTER TRUNCATE COMMENT COPY ATTACH
    DETACH INSTALL LOAD FORCE SET RESET PRAGMA CALL EXPORT IMPORT BEGIN START COMMIT ROLLBACK
    ABORT END TRANSACTION SAVEPOINT RELEASE CHECKPOINT VACUUM ANALYZE USE GRANT REVOKE PREPARE
    EXECUTE DEALLOCATE UPDATE_EXTENSIONS CACHE UNCACHE REFRESH MSCK OPTIMIZE KILL LOCK
    UNLOCK""".split()  # noqa: SIM905 - a word list reads better than 50 quoted strings
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
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|/\*.*?\*/|--[^\n]*", re.S)
_BRACKETS = re.compile(r"[()\[\]{}]")


@dataclass(frozen=True)
class Statement:
    root: exp.Expression
    explain: str  # "", "EXPLAIN" or "EXPLAIN ANALYZE"


def parse_statement(text: str, *, max_bytes: int) -> Statement:
    """The one statement in ``text`` (comments around it are fine), within the size limit."""
    if not isinstance(text, str):
        raise SqlSyntaxError("the query must be text")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise QueryTooLarge(f"the query is {size} bytes; the limit is {max_bytes}")
    body_start = _LEADING_NOISE.match(text).end()  # type: ignore[union-attr]
    explain = ""
    if m := _EXPLAIN.match(text, body_start):
        explain = re.sub(r"\s+", " ", m.group(0).upper())
        body_start = m.end()
    body = text[body_start:]
    first_word = (re.match(r"[A-Za-z_]+", _LEADING_NOISE.sub("", body, count=1)) or [""])[0].upper()
    if first_word in FORBIDDEN_STATEMENTS:
        raise StatementNotAllowed(f"{first_word} statements are not allowed: only read-only queries run here")
    # A statement of comments only (``SELECT 1; -- note``) is no statement.
    statements = [s for s in _parse(body, offset=body_start, full_text=text) if not isinstance(s, exp.Semicolon)]
    if not statements:
        raise SqlSyntaxError("the query is empty")
    if len(statements) > 1:
        raise StatementNotAllowed(f"exactly one statement is allowed, got {len(statements)}")
    return Statement(statements[0], explain)


def _parse(body: str, *, offset: int, full_text: str) -> list[exp.Expression]:
    try:
        return [s for s in sqlglot.parse(body, read=DIALECT) if isinstance(s, exp.Expression)]
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        position = _position(full_text, offset, body, err.get("line"), err.get("col"))
        near = err.get("highlight") or ""
        where = f" at line {position['line']}, column {position['column']}" if position else ""
        detail = f"syntax error{where}" + (f" near {near!r}" if near else "")
        raise SqlSyntaxError(detail, position=position) from exc
    except TokenError as exc:
        raise SqlSyntaxError(f"cannot tokenize the query: {exc}") from exc
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


def check_depth(root: exp.Expression, max_depth: int) -> list[exp.Expression]:
    """Queries nest at most ``max_depth`` SELECTs deep, expressions ``MAX_EXPRESSION_DEPTH``.
    Returns every node, so the checks that follow need not walk the tree again."""
    nodes = []
    stack = [(root, 0, 1)]
    while stack:
        node, queries, depth = stack.pop()
        nodes.append(node)
        if isinstance(node, exp.Select):  # a (SELECT …) subquery is one level, not two
            queries += 1
            if queries > max_depth:
                raise QueryTooComplex(f"queries may nest at most {max_depth} levels deep")
        if depth > MAX_EXPRESSION_DEPTH:
            raise QueryTooComplex(
                f"the query is more than {MAX_EXPRESSION_DEPTH} levels deep: split long chains of operators"
            )
        stack.extend((child, queries, depth + 1) for child in node.iter_expressions())
    return nodes


def check_brackets(text: str) -> None:
    """Brackets nest at most ``MAX_BRACKET_DEPTH`` deep in the SQL the engines will parse.

    Quoted text and comments hold no brackets; what is left is scanned bracket by bracket
    (a regular expression, not a tokenizer: this text can be 256 KB). Should the quick scan
    not balance, sqlglot's tokenizer decides."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_QUOTED.sub(" ", text)):
        depth += 1 if bracket in "([{" else -1
        deepest = max(deepest, depth)
    if depth != 0:
        deepest = _tokenized_depth(text)
    if deepest > MAX_BRACKET_DEPTH:
        raise QueryTooComplex(f"brackets (calls, casts, subqueries) may nest at most {MAX_BRACKET_DEPTH} deep")


def _tokenized_depth(text: str) -> int:
    try:
        tokens = sqlglot.tokenize(text, read=DIALECT)
    except RecursionError:
        raise QueryTooComplex("the query is nested too deeply") from None
    depth = deepest = 0
    for token in tokens:
        if token.token_type in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in _CLOSING:
            depth -= 1
    return deepest
