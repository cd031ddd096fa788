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
from engine.backends.semantics import duckdb_semantics, regular_schema
from engine.catalog import TableSnapshot
from engine.errors import (
    ColonnadeError,
    ColumnNotFound,
    EngineError,
    QueryError,
    SqlSyntaxError,
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


class _Spark4Generator(SparkGenerator):
    # Spark 4 runs QUALIFY itself; sqlglot's rewrite of it into a subquery leaks its helper
    # column into SELECT * (FACTS.md §7), so keep every other Select transform but that one.
    TRANSFORMS = {  # noqa: RUF012 - sqlglot's own class-level table
        **SparkGenerator.TRANSFORMS,
        exp.Select: transforms.preprocess(
            [transforms.eliminate_distinct_on, transforms.unnest_to_explode, transforms.any_to_exists]
        ),
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


def spark_sql(prepared: PreparedQuery) -> str:
    """Spark's text for the query: the AST whose DuckDB rendering was confirmed, in Spark's dialect."""
    query = prepared.query
    ast = bind_literals(prepared.ast, prepared.params) if prepared.params else prepared.ast.copy()
    ast = duckdb_semantics(ast)
    ast = ast.transform(_quantiles_for_spark).transform(_date_trunc_naive)
    body = ast.sql(dialect=Spark4)
    return f"{query.prefix} {body}" if query.prefix else body


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

                    session = SparkSession.builder.remote(self.remote).getOrCreate()
                # DuckDB's TIMESTAMP has no time zone: make Spark's TIMESTAMP the same, in UTC.
                session.conf.set("spark.sql.timestampType", "TIMESTAMP_NTZ")
                session.conf.set("spark.sql.session.timeZone", "UTC")
                self._session = session
            return self._session

    def start(self, prepared: PreparedQuery, control: QueryControl, batch_rows: int) -> Started:
        if prepared.query.explain == "EXPLAIN ANALYZE":
            raise UnsupportedQuery("Spark has no EXPLAIN ANALYZE: use EXPLAIN")
        spark = self.session()
        for snap in prepared.tables.values():
            self._view(spark, snap)
        text = spark_sql(prepared)
        tag = f"colonnade-{uuid.uuid4().hex}"
        spark.addTag(tag)  # tags are per thread: only this query carries it
        control.on_cancel(lambda: spark.interruptTag(tag))
        try:
            table = spark.sql(text).toArrow()
        finally:
            spark.removeTag(tag)
        table = table.cast(regular_schema(table.schema))
        return Started(table.schema, iter(table.to_batches(max_chunksize=batch_rows)))

    def translate(self, exc: BaseException) -> ColonnadeError:
        return translate_error(exc)

    def _view(self, spark: Any, snap: TableSnapshot) -> str:
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
            cols = ", ".join(f"CAST(NULL AS {spark_type(f.type)}) AS `{f.name}`" for f in snap.schema)
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
                F.col(f"`{f.name}`").cast(spark_type(f.type)).alias(f.name)
                if f.name in snap.partitions
                else F.col(f"`{f.name}`")
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
    if name == "ParseException":
        return SqlSyntaxError(message)
    if name in (
        "AnalysisException",
        "ArithmeticException",
        "NumberFormatException",
        "DateTimeException",
        "IllegalArgumentException",
        "SparkRuntimeException",
    ):
        return QueryError(message)
    return EngineError(f"Spark failed: {message}")
