"""The framework ceiling: a bare Litestar hello-world route, served by uvicorn exactly as
``colonnade serve`` serves Colonnade (same options, same worker count)."""

from __future__ import annotations

import os

from litestar import Litestar, get

from api.server import enable_tcp_nodelay

enable_tcp_nodelay()  # what `colonnade serve` does in each worker (api.server.create_worker_app)


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@get("/ready")
async def ready() -> dict[str, object]:
    return {"status": "ready", "worker": os.getpid()}  # as Colonnade's: the harness waits for every worker


app = Litestar([hello, ready])
