"""What a read-only query may contain: no writes or settings inside it, only DuckDB's built-in
functions, no function that reaches files, URLs, the environment, settings or the catalog, and
only table functions that generate rows."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from sqlglot import exp

from engine.errors import QueryError, StatementNotAllowed, UnsupportedQuery

# Table functions that only generate rows; every other function in FROM position is refused.
SAFE_TABLE_FUNCTIONS = frozenset({"generate_series", "range", "unnest"})
# Scalar or table functions that reach files, URLs, the environment, settings or the catalog
# (or, like current_query(), would show the SQL Colonnade generated).
FORBIDDEN_FUNCTION = re.compile(
    r"""^(read_|parquet_|glob|getenv|current_setting|duckdb_|pragma_|sniff_csv|query$|query_table
    |delta_|iceberg_|sqlite_|postgres_|mysql_|scan_|write_|load_|json_execute_serialized_sql
    |json_serialize_sql|json_deserialize_sql|which_secret|enable_|disable_|set_|checkpoint
    |force_checkpoint|sql_auto_complete|test_|http|txt|import_|export_|from_substrait|get_substrait
    |arrow_scan|python_|getvariable|current_database|current_schema|current_query|current_catalog
    |current_connection_id|current_transaction_id|sqlite|iceberg|delta_scan|ducklake|attach|detach
    |pg_get_|pg_sleep|setseed$|nextval$|currval$|setval$|write_log$)""",
    re.X,
)
# Nodes that write, configure or leave the query, wherever they sit in the tree.
_WRITES = (exp.Command, exp.DDL, exp.DML, exp.Copy, exp.Set, exp.Pragma, exp.Transaction, exp.Into)
# Functions whose answer changes from one run to the next (results are not cached).
_TIME_OF_QUERY = frozenset(
    """now current_date current_time current_timestamp current_localtime current_localtimestamp
    get_current_time get_current_timestamp today transaction_timestamp localtime localtimestamp
    rand random uuid""".split()  # noqa: SIM905
)


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


@functools.cache
def volatile_functions() -> frozenset[str]:
    """Functions whose value differs between runs: DuckDB's VOLATILE ones and the clock."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE stability = 'VOLATILE'")
        return frozenset(name for (name,) in rows.fetchall()) | _TIME_OF_QUERY


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def check_nodes(nodes: Iterable[exp.Expression]) -> bool:
    """Refuse what a read-only query may not contain; True when the query is volatile."""
    volatile = False
    for node in nodes:
        if isinstance(node, _WRITES):
            raise StatementNotAllowed(f"{node.key.upper()} is not allowed inside a query")
        if isinstance(node, exp.Func):
            name = function_name(node)
            if FORBIDDEN_FUNCTION.match(name):
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
            volatile = volatile or name in volatile_functions()
        elif isinstance(node, exp.TableSample) and node.args.get("seed") is None:
            volatile = True  # a sample without REPEATABLE (seed) differs between runs
        elif isinstance(node, exp.Table):
            _check_table(node)
    return volatile


def _check_table(node: exp.Table) -> None:
    if not isinstance(node.this, exp.Identifier):
        fn = node.this
        name = function_name(fn) if isinstance(fn, exp.Func) else type(fn).__name__.lower()
        if name not in SAFE_TABLE_FUNCTIONS:
            raise StatementNotAllowed(f"table function {name}() is not allowed: query catalog tables")
    if node.args.get("when") is not None or node.args.get("version") is not None:
        raise UnsupportedQuery("time travel (AT / FOR VERSION) is not supported in queries")
