"""The Litestar application: one ``Database`` and one ``QueryService`` per worker process."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler

from api import console, routes
from api.fastpath import HitPath
from api.guard import RequestGuard
from api.head import HeadAsGet
from api.metrics import Metrics
from api.operations import RUNTIME_DIR_ENV, Operations
from api.problems import EXCEPTION_HANDLERS
from api.query import ELAPSED_HEADER, ENGINE_HEADER, QUERY_ID_HEADER, QueryService
from engine import __version__
from engine.config import Settings, load_settings
from engine.database import Database
from engine.errors import ConfigError
from engine.tokens import TokenStore

log = logging.getLogger("colonnade.api")


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings if settings is not None else load_settings()
    if settings.server.metrics not in ("admin", "open", "off"):
        raise ConfigError(f"[server] metrics must be admin, open or off, got {settings.server.metrics!r}")

    configure_logging()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = Database(settings=settings)
        runtime = os.environ.get(RUNTIME_DIR_ENV)
        ops = Operations(Metrics(), Path(runtime) if runtime else None)
        ops.start()
        service = QueryService(db, ops)
        service.bind_loop()
        app.state.db, app.state.service = db, service
        app.state.tokens = TokenStore(settings.tokens_file) if settings.auth_enabled() else None
        if app.state.tokens is not None:
            _warn_about_tokens(app.state.tokens)
        try:
            yield
        finally:
            service.close()
            ops.close()
            db.close()

    # Room for JSON around a maximal SQL text, and at least 1 MiB, so that SQL over the limit
    # gets its own clear query_too_large; past this Litestar answers 413 request_too_large.
    body_limit = max(1024**2, settings.limits.max_sql_bytes * 2 + 64 * 1024)
    handlers: list[ControllerRouterHandler] = [
        routes.health,
        routes.ready,
        routes.list_tables,
        routes.describe_table,
        routes.table_history,
        routes.table_rows,
        routes.sql_get,
        routes.sql_post,
        routes.list_queries,
        routes.cancel_query,
        routes.metrics,
        console.index,
        console.static_files,
    ]
    cors = CORSConfig(
        allow_origins=settings.server.cors_origins,
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["ETag", ELAPSED_HEADER, QUERY_ID_HEADER, ENGINE_HEADER],
    )
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=body_limit,
        cors_config=cors if settings.server.cors_origins else None,
        openapi_config=OpenAPIConfig(title="Colonnade", version=__version__, path="/schema"),
    )


def _warn_about_tokens(store: TokenStore) -> None:
    try:
        empty = not store.tokens()
    except ConfigError as exc:  # requests get 503 until the file is mended
        log.error("%s; every /api request will get 503 until it is mended", exc.detail)
        return
    if empty:
        log.warning(
            "auth is on but %s holds no tokens: every /api request will get 401 "
            "(create one with: colonnade token create --name NAME --all)",
            store.path,
        )


def configure_logging() -> None:
    """Server errors and security events go to stderr (the query log has its own writer:
    api/operations.py)."""
    for name in ("colonnade.api", "colonnade.security"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def create_guarded_app(settings: Settings | None = None) -> RequestGuard:
    """The app behind ``RequestGuard``, which sees every request, routed or not."""
    settings = settings if settings is not None else load_settings()
    return RequestGuard(
        HeadAsGet(HitPath(create_app(settings))),
        allowed_hosts=settings.server.allowed_hosts,
        loopback_only=not settings.auth_enabled(),
    )
