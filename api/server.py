"""``colonnade serve``: uvicorn with N worker processes, each sized to its share of the machine."""

from __future__ import annotations

import os

from engine.config import Settings
from engine.database import engine_resources


# How uvicorn runs the app; bench/hello_app.py is served with the very same options.
UVICORN_OPTIONS: dict = {"log_level": "info", "timeout_graceful_shutdown": 5}


def worker_environment(settings: Settings) -> dict[str, str]:
    """Settings the spawned workers must see: workers read config from file + environment."""
    env = {
        "COLONNADE_DATA_DIR": str(settings.data_dir),
        "COLONNADE_SERVER_HOST": settings.server.host,
        "COLONNADE_SERVER_PORT": str(settings.server.port),
        "COLONNADE_SERVER_WORKERS": str(settings.server.workers),
        "COLONNADE_SERVER_ENGINE": settings.server.engine,
    }
    if settings.source is not None:
        env["COLONNADE_CONFIG"] = str(settings.source.resolve())
    threads, _ = engine_resources(settings)
    env["POLARS_MAX_THREADS"] = str(threads)  # read by Polars at import, in each worker
    return env


def run(settings: Settings) -> None:
    import uvicorn

    from engine.catalog import Catalog

    Catalog(settings.data_dir, settings.tables)  # fail fast, with one clear line, on a bad data dir
    os.environ.update(worker_environment(settings))
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers if settings.server.workers > 1 else None,
        **UVICORN_OPTIONS,
    )
