"""Colonnade's engine: import it in a notebook, or run it behind the HTTP API.

import engine
db = engine.connect()                       # ./data, embedded DuckDB
db = engine.connect("http://127.0.0.1:8000")  # a server, same interface
db.sql("SELECT count(*) FROM orders").pl()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ColonnadeError

if TYPE_CHECKING:
    from engine.database import ENGINES, Database
    from engine.result import Result

__all__ = ["ENGINES", "ColonnadeError", "Database", "Result", "connect"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The query side (sqlglot, the backends) loads on first use: `colonnade ingest` and the
    other storage commands start without it."""
    if name in ("ENGINES", "Database"):
        from engine import database

        return getattr(database, name)
    if name == "Result":
        from engine.result import Result

        return Result
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def connect(target: str | Path | None = None, *, token: str | None = None, config: str | Path | None = None) -> Any:
    """Open a data directory (default ``./data``) or, given an ``http(s)://`` URL, a server."""
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        from engine.client import RemoteDatabase

        return RemoteDatabase(target, token=token)
    from engine.config import load_settings
    from engine.database import Database

    return Database(target, settings=load_settings(config))
