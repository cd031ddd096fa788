"""``colonnade serve``: uvicorn with N worker processes, each sized to its share of the machine."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from api.metrics import MULTIPROC_ENV
from api.operations import RUNTIME_DIR_ENV
from engine.config import Settings, engine_resources
from engine.processes import pid_alive

# How uvicorn runs the app; bench/hello_app.py is served with the very same options.
# No access log: every query has its own line in the query log (api/operations.py).
UVICORN_OPTIONS: dict = {"log_level": "info", "access_log": False, "timeout_graceful_shutdown": 5}


# The runtime directory's name starts with the pid of the server that made it (see run()).
RUNTIME_DIR_PREFIX = "colonnade-run-"
_OWNER = re.compile(re.escape(RUNTIME_DIR_PREFIX) + r"(\d+)-")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``with`` blocks clean up on the way out."""


def _unwind_on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def remove_abandoned_runtime_dirs() -> None:
    """Remove the runtime directories of servers that no longer run (killed with SIGKILL, or
    the machine stopped): their stored results would otherwise fill the temp directory."""
    for path in Path(tempfile.gettempdir()).glob(f"{RUNTIME_DIR_PREFIX}*"):
        owner = _OWNER.match(path.name)
        if owner and not pid_alive(int(owner.group(1))):
            shutil.rmtree(path, ignore_errors=True)  # another user's is not ours to remove


def enable_tcp_nodelay() -> None:
    """TCP_NODELAY on every accepted connection, also with ``--workers N``.

    With several workers uvicorn binds the listening socket itself as ``socket.socket(AF_INET)``
    (protocol 0), and asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP. A
    keep-alive response written in two pieces (headers, then body) then waits for the client's
    delayed ACK: 44 ms per request instead of 1-2 ms (bench/NOTES.md). Runs in each worker."""
    import asyncio.base_events
    import socket

    # A private function of asyncio (patched below): there is no public hook for this.
    current = asyncio.base_events._set_nodelay  # type: ignore[attr-defined]
    if getattr(current, "colonnade", False) or not hasattr(socket, "TCP_NODELAY"):
        return

    def set_nodelay(sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    set_nodelay.colonnade = True  # type: ignore[attr-defined]
    asyncio.base_events._set_nodelay = set_nodelay  # type: ignore[attr-defined]


def create_worker_app() -> Any:
    """uvicorn's factory in every worker process: the socket fix, the slow-client deadlines,
    then the app from file + env."""
    enable_tcp_nodelay()
    from api import protocol
    from api.app import create_guarded_app
    from engine.config import load_settings

    settings = load_settings()
    protocol.configure(settings.server.header_timeout_s, settings.server.body_timeout_s)
    return create_guarded_app(settings)


def worker_environment(settings: Settings) -> dict[str, str]:
    """Settings the spawned workers must see: workers read config from file + environment."""
    env = {
        "COLONNADE_DATA_DIR": settings.data_location,
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

    Catalog.from_settings(settings)  # fail fast, with one clear line, on a bad data dir
    os.environ.update(worker_environment(settings))
    remove_abandoned_runtime_dirs()
    # uvicorn, once it has shut down gracefully on SIGTERM, raises the signal again under the
    # handler it found. Under the default one the process dies on the spot, before the runtime
    # directory below (stored results, metrics) is removed; under this one the stack unwinds.
    signal.signal(signal.SIGTERM, _unwind_on_sigterm)
    try:
        # What workers share: the running-queries registry, the metrics and the stored results
        # (api/operations.py, api/metrics.py, api/results.py). Made before any worker starts,
        # gone when the server stops; named after this process, so that after a kill -9 the
        # next server can tell it was abandoned.
        with tempfile.TemporaryDirectory(prefix=f"{RUNTIME_DIR_PREFIX}{os.getpid()}-") as runtime:
            (Path(runtime) / "metrics").mkdir()
            os.environ[RUNTIME_DIR_ENV] = runtime
            os.environ[MULTIPROC_ENV] = str(Path(runtime) / "metrics")
            uvicorn.run(
                "api.server:create_worker_app",
                factory=True,
                host=settings.server.host,
                port=settings.server.port,
                workers=settings.server.workers if settings.server.workers > 1 else None,
                http="api.protocol:DeadlineHttpToolsProtocol",
                **UVICORN_OPTIONS,
            )
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # end as a process stopped by SIGTERM does
