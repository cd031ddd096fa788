"""Spark backend, through Spark Connect: past one machine, the same SQL on an existing cluster.

Tables are registered as per-version temporary views over their live files (the Delta file
list and partition values come from the catalog, as for DuckDB), so the Spark cluster must see
the same storage as Colonnade. SQL is generated from the validated AST in Spark's dialect with
DuckDB's semantics kept; parameters become typed literal nodes. Each query carries a unique
operation tag, so a timeout or a client hang-up interrupts exactly that query on the cluster.
"""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from typing import Any

import pyarrow as pa
from sqlglot import exp, transforms
from sqlglot.dialects.spark import Spark
from sqlglot.generators.spark import SparkGenerator

from engine.backends.base import Backend, QueryControl, Started
from engine.backends.reference import conform, shape
from engine.backends.semantics import duckdb_semantics, regular_schema
from engine.backends.typed_semantics import GENERIC_RULES, Rule, annotate, refuse, rewrite
from engine.catalog import TableSnapshot
from engine.errors import (
    ColonnadeError,
    ColumnNotFound,
    EngineError,
    QueryError,
    TableNotFound,
    UnsupportedQuery,
)
from engine.prepared import PreparedQuery
from engine.sql import bind_literals

_SPARK_TYPES = {
    pa.int8(): "tinyint",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.string(): "string",
    pa.large_string(): "string",
    pa.date32(): "date",
    pa.binary(): "binary",
}


def spark_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if t in _SPARK_TYPES:
        return _SPARK_TYPES[t]
    raise UnsupportedQuery(f"Spark backend: no Spark type for Arrow {t}")


def _cte(self: SparkGenerator, node: exp.CTE) -> str:
    node = node.copy()  # MATERIALIZED only hints DuckDB's planner; Spark's parser does not know it
    node.set("materialized", None)
    return SparkGenerator.cte_sql(self, node)


class _Spark4Generator(SparkGenerator):
    # Spark 4 runs QUALIFY itself; sqlglot's rewrite of it into a subquery leaks its helper
    # column into SELECT * (FACTS.md §7), so keep every other Select transform but that one.
    TRANSFORMS = {  # noqa: RUF012 - sqlglot's own class-level table
        **SparkGenerator.TRANSFORMS,
        exp.Select: transforms.preprocess(
            [transforms.eliminate_distinct_on, transforms.unnest_to_explode, transforms.any_to_exists]
        ),
        # sqlglot writes 'EEE' (Wed, Jan): DuckDB's dayname and monthname are the full names.
        exp.Dayname: lambda self, e: self.func("DATE_FORMAT", e.this, exp.Literal.string("EEEE")),
        exp.Monthname: lambda self, e: self.func("DATE_FORMAT", e.this, exp.Literal.string("MMMM")),
        exp.CTE: _cte,
    }


class Spark4(Spark):
    Generator = _Spark4Generator


def _quantiles_for_spark(node: exp.Expression) -> exp.Expression:
    """DuckDB's quantile_cont(x, p)/quantile_disc(x, p) become PERCENTILE_CONT(x, p) in sqlglot's
    Spark output, which Spark rejects: use percentile(x, p) (same linear interpolation) and
    percentile_disc(p) WITHIN GROUP (ORDER BY x)."""
    if isinstance(node.parent, exp.WithinGroup) or node.args.get("expression") is None:
        return node
    if isinstance(node, exp.PercentileCont):
        return exp.Anonymous(this="percentile", expressions=[node.this, node.expression])
    if isinstance(node, exp.PercentileDisc):
        order = exp.Order(expressions=[exp.Ordered(this=node.this)])
        # Anonymous: sqlglot's Spark output turns a PercentileDisc WITHIN GROUP into percentile_approx.
        return exp.WithinGroup(
            this=exp.Anonymous(this="percentile_disc", expressions=[node.expression]), expression=order
        )
    return node


def _date_trunc_naive(node: exp.Expression) -> exp.Expression:
    """DuckDB's date_trunc of a DATE or TIMESTAMP is a TIMESTAMP without time zone; Spark's is a
    local-time-zone TIMESTAMP. Cast it (the session's timestampType is TIMESTAMP_NTZ)."""
    if isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)) and not isinstance(node.parent, exp.Cast):
        return exp.cast(node.copy(), exp.DataType.build("TIMESTAMP"))
    return node


_JOIN_METHODS = {"ASOF": "ASOF joins", "POSITIONAL": "POSITIONAL joins"}
_UNSUPPORTED: dict[type[exp.Expression], str] = {
    exp.TableSample: "SAMPLE / TABLESAMPLE",
    exp.SimilarTo: "SIMILAR TO",
    exp.Slice: "slices ([a:b])",
    exp.Columns: "COLUMNS(...)",
    exp.ToMap: "MAP literals",
    exp.Format: "format() with {} placeholders",
}


def _unsupported(node: exp.Expression) -> str | None:
    """The name of a construct Spark cannot run as DuckDB does (sqlglot's translation included)."""
    if isinstance(node, exp.Join):
        return _JOIN_METHODS.get((node.args.get("method") or "").upper())
    if isinstance(node, exp.RegexpReplace) and "g" not in node.text("modifiers"):
        return "regexp_replace without the 'g' flag (Spark replaces every match)"
    if isinstance(node, exp.WindowSpec) and (node.text("kind") or "").upper() == "GROUPS":
        return "GROUPS window frames"
    if isinstance(node, exp.Star) and node.args.get("replace"):
        return "SELECT * REPLACE (...)"
    if isinstance(node, (exp.First, exp.Last)) and isinstance(node.this, exp.Order):
        return "first() / last() with ORDER BY"
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Func):
        return f"the table function {node.this.sql_name().lower()}()"
    if isinstance(node, exp.Pivot) and not node.args.get("fields"):
        return "DuckDB's PIVOT / UNPIVOT statement form (write PIVOT (...) or UNPIVOT (...) after FROM)"
    return next((name for kind, name in _UNSUPPORTED.items() if isinstance(node, kind)), None)


def _ieee_division(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``/`` by zero gives ±inf or NaN (IEEE); Spark's ANSI mode raises DIVIDE_BY_ZERO."""
    if not isinstance(node, exp.Div) or isinstance(node, exp.IntDiv) or isinstance(node.expression, exp.Literal):
        return node
    zero = exp.EQ(this=node.expression.copy(), expression=exp.Literal.number(0))
    infinity = exp.cast(exp.Literal.string("Infinity"), exp.DataType.build("DOUBLE"))
    by_zero = exp.Mul(this=exp.cast(node.this.copy(), exp.DataType.build("DOUBLE")), expression=infinity)
    return exp.Case(ifs=[exp.If(this=zero, true=by_zero)], default=node.copy())


def _regexp_flags(node: exp.Expression) -> exp.Expression:
    """regexp_matches(s, p, 'i'): Spark's RLIKE takes no flags, so put them in the pattern."""
    flag = node.args.get("flag") if isinstance(node, exp.RegexpLike) else None
    if isinstance(flag, exp.Literal) and isinstance(node.expression, exp.Literal) and flag.this:
        pattern = exp.Literal.string(f"(?{flag.this}){node.expression.this}")
        return exp.RegexpLike(this=node.this, expression=pattern)
    return node


def _distinct_order_by_output_names(node: exp.Expression) -> exp.Expression:
    """Under SELECT DISTINCT, Spark resolves ORDER BY only against the output columns, and
    ``qualify`` writes ``ORDER BY t.col``: point such references back at the output name."""
    if not isinstance(node, exp.Select) or not node.args.get("distinct") or not node.args.get("order"):
        return node
    outputs = {e.alias_or_name for e in node.expressions}
    for ordered in node.args["order"].expressions:
        column = ordered.this
        if isinstance(column, exp.Column) and column.table and column.name in outputs:
            ordered.set("this", exp.column(column.name))
    return node


RULES: tuple[Rule, ...] = (*GENERIC_RULES, _regexp_flags, _distinct_order_by_output_names)


def spark_sql(prepared: PreparedQuery) -> str:
    """Spark's text for the query: the AST whose DuckDB rendering was confirmed, typed and
    rewritten so that Spark computes what DuckDB would."""
    query = prepared.query
    ast = bind_literals(prepared.ast, prepared.params) if prepared.params else prepared.ast.copy()
    refuse(ast, "Spark", _unsupported)
    ast = rewrite(annotate(ast, prepared.by_relation), RULES)
    ast = duckdb_semantics(ast).transform(_ieee_division, copy=False)
    ast = ast.transform(_quantiles_for_spark).transform(_date_trunc_naive)
    body = ast.sql(dialect=Spark4)
    return f"{query.prefix} {body}" if query.prefix else body


def _backticked(name: str) -> str:
    """A column name as Spark reads one: in backticks, a backtick in it doubled."""
    return "`" + name.replace("`", "``") + "`"


class SparkBackend(Backend):
    name = "spark"

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self._session: Any = None
        self._views: set[str] = set()
        self._lock = threading.Lock()

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                # pyspark logs every failed query with its JVM stack; the caller gets the error.
                logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # pyspark's pandas>=3 notice
                    from pyspark.sql import SparkSession

                    # Its own session: getOrCreate() would share one per process, and closing
                    # one Database would stop the session of every other.
                    session = SparkSession.builder.remote(self.remote).create()
                # DuckDB's TIMESTAMP has no time zone: make Spark's TIMESTAMP the same, in UTC.
                session.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
                session.conf.set("spark.sql.session.timeZone", "UTC")
                self._session = session
            return self._session

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        if prepared.query.explain == "EXPLAIN ANALYZE":
            raise UnsupportedQuery("Spark has no EXPLAIN ANALYZE: use EXPLAIN")
        reference = shape(prepared)
        spark = self.session()
        for snap in prepared.tables.values():
            self._view(spark, snap)
        text = spark_sql(prepared)
        tag = f"colonnade-{uuid.uuid4().hex}"
        spark.addTag(tag)  # tags are per thread: only this query carries it
        # interruptTag stops only operations already running on the server: one sent while the
        # query is on its way is lost (measured: a 2 s timeout answered after 34 s), so the
        # control repeats it until the query ends (QueryControl).
        control.on_cancel(lambda: spark.interruptTag(tag))
        try:
            control.check()  # stopped while translating: an interrupt sent now would find no job
            table = spark.sql(text).toArrow()
        finally:
            spark.removeTag(tag)
        table = conform(table, reference) if reference else table.cast(regular_schema(table.schema))
        return Started(table.schema, iter(table.to_batches(max_chunksize=batch_rows)))

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    def _view(self, spark: Any, snap: TableSnapshot) -> str:
        # The snapshot's relation name names its location too: one Spark session may serve
        # several data directories, and table names and versions repeat across them.
        name = snap.relation
        with self._lock:
            if name in self._views:
                return name
        self._frame(spark, snap).createOrReplaceTempView(name)
        with self._lock:
            self._views.add(name)
        return name

    @staticmethod
    def _frame(spark: Any, snap: TableSnapshot) -> Any:
        from pyspark.sql import functions as F

        files = list(snap.files)
        if not files:
            cols = ", ".join(f"CAST(NULL AS {spark_type(f.type)}) AS {_backticked(f.name)}" for f in snap.schema)
            return spark.sql(f"SELECT {cols} WHERE false")
        reader = spark.read
        if snap.partitions:
            # root: the table's directory, or its folder in the read cache (object storage)
            reader = reader.option("basePath", snap.root if snap.kind == "managed" else str(_common_root(files)))
        if snap.format in ("delta", "parquet"):
            frame = reader.parquet(*files)
        elif snap.format == "csv":
            frame = reader.option("header", True).option("inferSchema", True).csv(*files)
        elif snap.format == "ndjson":
            frame = reader.json(*files)
        else:
            raise UnsupportedQuery(f"table {snap.name}: the Spark backend cannot read {snap.format} files")
        if snap.format != "delta":
            return frame
        # Partition values live in directory names; give them the table's types and order.
        return frame.select(
            *[
                F.col(_backticked(f.name)).cast(spark_type(f.type)).alias(f.name)
                if f.name in snap.partitions
                else F.col(_backticked(f.name))
                for f in snap.schema
            ]
        )

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.stop()


def _common_root(files: list[str]) -> str:
    import os.path

    return os.path.commonpath(files)


def translate_error(exc: BaseException) -> ColonnadeError:
    name = type(exc).__name__
    message = str(exc).strip().split("\n", 1)[0]
    condition = getattr(exc, "getCondition", lambda: None)() or ""
    if condition.startswith("UNRESOLVED_COLUMN") or "UNRESOLVED_COLUMN" in message:
        return ColumnNotFound(message)
    if condition.startswith("TABLE_OR_VIEW_NOT_FOUND"):
        return TableNotFound(message)
    if name in ("ParseException", "AnalysisException"):
        # DuckDB's binder accepted the query before Spark saw it: Spark lacks the construct.
        return UnsupportedQuery(f"Spark cannot run this query: {message}")
    if name in (
        "ArithmeticException",
        "NumberFormatException",
        "DateTimeException",
        "IllegalArgumentException",
        "SparkRuntimeException",
    ):
        return QueryError(message)
    return EngineError(f"Spark failed: {message}")
