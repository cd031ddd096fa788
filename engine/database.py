"""``Database``: a data directory opened for queries and ingestion — the notebook's ``db``.

It owns the catalog and one instance of each engine backend, and runs the query path:
``prepare`` (validate and rewrite, check grants, pin table versions, choose the engine) →
``execute`` (backend) → ``Result``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.backends.base import Backend, QueryControl
from engine.catalog import Catalog, TableSnapshot
from engine.config import Settings, engine_resources, load_settings
from engine.errors import InvalidRequest, TableNotFound, UnsupportedQuery
from engine.formats import configure_encoder
from engine.location import state_path
from engine.prepared import PreparedQuery, ValidationMemo
from engine.result import Result
from engine.sql import ValidatedQuery, validate
from engine.sql.introspection import CatalogTable
from engine.tokens import Token

ENGINES = ("duckdb", "polars", "spark")
AUTO = "auto"  # Spark past [spark] auto_min_bytes, else [server] auto_prefer; DuckDB when Polars refuses


def check_engine(engine: str, *, allow_auto: bool = False) -> None:
    known = (*ENGINES, AUTO) if allow_auto else ENGINES
    if engine not in known:
        raise InvalidRequest(f"unknown engine {engine!r} (choose from {', '.join(known)})")


class Database:
    def __init__(self, data_dir: str | Path | None = None, *, settings: Settings | None = None, create: bool = False):
        self.settings = settings if settings is not None else load_settings()
        if data_dir is not None:
            self.settings.data.dir = str(data_dir)
        self.catalog = Catalog(
            self.settings.data_location, self.settings.tables, create=create, storage=self.settings.storage
        )
        self.threads, self.memory_bytes = engine_resources(self.settings)
        os.environ.setdefault("POLARS_MAX_THREADS", str(self.threads))  # read once, at import
        configure_encoder(self.memory_bytes)  # the JSON encoder's DuckDB: the engine's memory limit
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._validated = ValidationMemo(self.catalog.names_stamp)

    # -- catalog ---------------------------------------------------------------------------

    def tables(self) -> list[str]:
        return self.catalog.names()

    def table(self, name: str) -> TableSnapshot:
        return self.catalog.get(name)

    def schema(self, name: str) -> pa.Schema:
        return self.catalog.get(name).schema

    # -- queries ---------------------------------------------------------------------------

    def backend(self, engine: str) -> Backend:
        check_engine(engine)
        if engine == "spark" and not self.settings.spark.remote:
            raise InvalidRequest("the spark engine is not configured: set [spark] remote (or COLONNADE_SPARK_REMOTE)")
        with self._lock:
            if engine not in self._backends:
                self._backends[engine] = self._make_backend(engine)
            return self._backends[engine]

    def _make_backend(self, engine: str) -> Backend:
        if engine == "duckdb":
            from engine.backends.duckdb import DuckDBBackend

            return DuckDBBackend(
                self.catalog.table_dirs,
                threads=max(2, self.threads),  # at 1 thread DuckDB fights the GIL (FACTS §4)
                memory_limit=f"{self.memory_bytes // 1024**2}MB",
                temp_dir=state_path(self.catalog.data_dir, "spill"),
                max_spill_bytes=self.settings.limits.max_spill_bytes // max(1, self.settings.server.workers),
            )
        if engine == "spark":
            from engine.backends.spark import SparkBackend

            return SparkBackend(self.settings.spark.remote)
        from engine.backends.polars import PolarsBackend

        return PolarsBackend(
            threads=self.threads,
            memory_bytes=self.memory_bytes,
            max_workers=self.settings.limits.max_concurrent_queries,
        )

    def choose_engine(self, engine: str | None, tables: Mapping[str, TableSnapshot]) -> str:
        """``None`` means the configured default; ``auto`` routes big scans to Spark."""
        engine = engine or self.settings.server.engine
        check_engine(engine, allow_auto=True)
        if engine != AUTO:
            return engine
        spark = self.settings.spark
        size = sum(t.bytes for t in tables.values())
        if spark.remote and spark.auto_min_bytes > 0 and size >= spark.auto_min_bytes:
            return "spark"
        return "polars" if self.settings.server.auto_prefer == "polars" else "duckdb"

    def validate(self, sql: str) -> ValidatedQuery:
        """``sql`` validated against this catalog's table names (memoised per text)."""
        limits = self.settings.limits
        return self._validated.get(
            sql,
            lambda text: validate(
                text, self.catalog.resolve, max_bytes=limits.max_sql_bytes, max_depth=limits.max_nesting_depth
            ),
        )

    def prepare(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        engine: str | None = None,
        token: Token | None = None,
    ) -> PreparedQuery:
        """Validate and rewrite ``sql``, check the token's grants on every table it reads,
        pin those tables from one catalog read, choose the engine, check the parameters."""
        try:
            query = self.validate(sql)
        except TableNotFound as exc:
            name = str(exc.extra.get("table", ""))
            raise TableNotFound(exc.detail + self.did_you_mean(name, token), table=name or None) from exc
        return self._prepare(query, params, engine, token)

    def did_you_mean(self, name: str, token: Token | None = None) -> str:
        """A hint naming the closest tables ``token`` may read (never one it may not)."""
        visible = [n for n in self.catalog.names() if token is None or token.may_read(n)]
        close = difflib.get_close_matches(name.lower(), [n.lower() for n in visible], n=3, cutoff=0.6)
        names = [n for n in visible if n.lower() in close]
        return f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""

    def prepare_validated(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        engine: str | None = None,
        token: Token | None = None,
    ) -> PreparedQuery | None:
        """``prepare``, when ``sql`` was validated before (cheap); else None: validating new
        text is engine-grade work, which the server does inside a query slot and timeout."""
        query = self._validated.peek(sql)
        return None if query is None else self._prepare(query, params, engine, token)

    def _prepare(
        self, query: ValidatedQuery, params: Sequence[Any] | None, engine: str | None, token: Token | None
    ) -> PreparedQuery:
        if token is not None:  # every table it reads: joins, CTEs, subqueries alike
            token.check_tables(query.tables)
        bound = query.check_params(params)
        tables = self.catalog.pin(query.tables)
        chosen = query.engine or self.choose_engine(engine, tables)
        auto = query.engine is None and (engine or self.settings.server.engine) == AUTO
        relations = {name: snap.relation for name, snap in tables.items()}
        catalog = functools.partial(self._visible_tables, token)
        text = query.render(relations, catalog)
        fallback = "duckdb" if auto and chosen == "polars" else None
        return PreparedQuery(query, bound, tables, chosen, text, catalog, fallback=fallback)

    def _visible_tables(self, token: Token | None) -> list[CatalogTable]:
        """What the catalog views show to ``token``: the tables it may read."""
        names = [n for n in self.catalog.names() if token is None or token.may_read(n)]
        return [CatalogTable(n, snap.schema, snap.kind) for n, snap in self.catalog.pin(names).items()]

    def execute(
        self,
        sql: str | PreparedQuery,
        params: Sequence[Any] | None = None,
        *,
        engine: str | None = None,
        timeout_s: float | None = None,
        batch_rows: int | None = None,
        control: QueryControl | None = None,
    ) -> Result:
        """Start a query and return its streaming ``Result``. Pass a ``control`` to be able to
        cancel the query from another thread even before this call returns."""
        started = time.perf_counter()
        prepared = sql if isinstance(sql, PreparedQuery) else self.prepare(sql, params, engine=engine)
        if control is None:
            control = QueryControl(self.settings.limits.query_timeout_s if timeout_s is None else timeout_s)
        kwargs = {"batch_rows": batch_rows} if batch_rows else {}
        # Object-store tables: engines read this version's files from local copies, leased
        # until the query ends (downloads count against its timeout and can be cancelled).
        try:
            tables, lease = self.catalog.localize(dict(prepared.tables), control.check)
        except BaseException:
            control.finish()
            raise
        if lease is not None:
            prepared = dataclasses.replace(prepared, tables=tables)
        try:
            try:
                execution = self.backend(prepared.engine).execute(prepared, control, **kwargs)
            except UnsupportedQuery:
                if prepared.fallback is None:
                    raise
                # engine=auto preferred Polars, which refuses before it runs anything: DuckDB runs it.
                prepared = dataclasses.replace(prepared, engine=prepared.fallback, fallback=None)
                control.restart()
                execution = self.backend(prepared.engine).execute(prepared, control, **kwargs)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        if lease is not None:
            execution.on_close(lease.release)
        return Result(
            execution.schema,
            execution,
            engine=prepared.engine,
            sql=prepared.query.text,
            cancel=execution.cancel,
            started=started,
        )

    def sql(
        self, sql: str, params: Sequence[Any] | None = None, engine: str | None = None, timeout_s: float | None = None
    ) -> Result:
        """Run one read-only query (the notebook entry point)."""
        return self.execute(sql, params, engine=engine, timeout_s=timeout_s)

    # -- writes ----------------------------------------------------------------------------

    def ingest(self, source: Any, table: str, **options: Any) -> Any:
        """Write ``source`` (paths, a pyarrow Table/reader, a Polars or pandas frame) into a
        managed table as one Delta commit; see ``engine.ingest.ingest``."""
        from engine.ingest import ingest

        # Same budget as `colonnade ingest`: this process's engine share, at most 1 GB of memory.
        options.setdefault("threads", max(2, self.threads))
        options.setdefault("memory_limit", f"{min(self.memory_bytes, 1024**3) // 1024**2}MB")
        return ingest(self.catalog, source, table, **options)

    def history(self, table: str) -> list[dict[str, Any]]:
        from engine.storage import history

        return history(self.catalog, table)

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()
        self.catalog.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<colonnade.Database {self.catalog.location}>"
