"""The Litestar application: one ``Database`` and one ``QueryService`` per worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from api import console, routes
from api.problems import EXCEPTION_HANDLERS
from api.query import QueryService
from engine import __version__
from engine.config import Settings, load_settings
from engine.database import Database


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings if settings is not None else load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = Database(settings=settings)
        service = QueryService(db)
        service.bind_loop()
        app.state.db, app.state.service = db, service
        try:
            yield
        finally:
            service.close()
            db.close()

    # Leave room for JSON around a maximal SQL text; past this Litestar answers 413 itself.
    body_limit = settings.limits.max_sql_bytes * 2 + 64 * 1024
    return Litestar(
        route_handlers=[
            routes.health, routes.ready, routes.list_tables, routes.describe_table, routes.table_history,
            routes.table_rows, routes.sql_get, routes.sql_post, console.index,
        ],  # fmt: skip
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=body_limit,
        openapi_config=OpenAPIConfig(title="Colonnade", version=__version__, path="/schema"),
    )


def create_app_from_env() -> Litestar:
    """uvicorn's factory for worker processes: settings come from the file and environment."""
    return create_app(load_settings())
