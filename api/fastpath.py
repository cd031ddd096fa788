"""The cache-hit path, as a thin ASGI layer in front of the Litestar app.

A GET the server answered before — same path, query string, ``Accept`` and credentials — whose
tables are all still at the versions it was answered for is sent straight from the result cache:
no routing, no validation, no thread hop. Freshness is checked exactly as on the full path (each
table's latest Delta commit, read from its log directory), so another process's ingest is seen
at once; a revoked token is refused by the full path, because the token is verified first.

The version check reads the table's log directory on the event loop: on a local disk that is a
few microseconds, against ~100 µs for a hop to a thread (measured: bench/NOTES.md). On object
storage the check is a network request, which must never run on the loop: such a server has no
hit path here, and its repeated GETs are answered from the same cache by the full path, whose
version check runs in a thread. Requests
that carry an ``Origin`` (CORS headers are the app's business) and every other request go to
the app untouched.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from api.cache import weak
from api.head import HEAD_SCOPE_KEY
from engine.errors import ColonnadeError

FAST_PATHS = ("/api/sql",)
ELAPSED_HEADER = b"x-colonnade-elapsed-ms"
QUERY_ID_HEADER = b"x-colonnade-query-id"


@dataclass(frozen=True)
class Answered:
    """What the full path answered for one request: where the body is, and what it read."""

    cache_key: str
    etag: str | None
    versions: tuple[tuple[str, str], ...]  # (table, fingerprint)
    engine: str
    format: str
    disposition: str | None  # the Content-Disposition the full path sent, if any


def request_key(scope: Scope) -> str | None:
    """The identity of a GET whose answer may be served again, or None."""
    if scope.get("method") != "GET" or scope.get("path") not in FAST_PATHS or scope.get(HEAD_SCOPE_KEY):
        return None
    accept = authorization = b""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept = value
        elif name == b"authorization":
            authorization = value
        elif name in (b"origin", b"range", b"if-range"):  # CORS, or a part of a file: the app's
            return None
    digest = hashlib.sha256()
    for part in (scope["path"].encode(), scope.get("query_string", b""), accept, authorization):
        digest.update(len(part).to_bytes(4, "little") + part)
    return digest.hexdigest()


class AnsweredRequests:
    """A bounded map from request identity to what was answered (the bodies live in the
    ``ResultCache``)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Answered] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: str | None, answered: Answered) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = answered
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, key: str) -> Answered | None:
        with self._lock:
            return self._entries.get(key)


class HitPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and (key := request_key(scope)) is not None:
            state = getattr(self.app, "state", None)
            service = getattr(state, "service", None)
            if service is not None and await self._answer(scope, send, service, state, key):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, service: Any, state: Any, key: str) -> bool:
        started = time.perf_counter()
        if service.db.catalog.remote:  # a version check would be network I/O on the loop
            return False
        answered = service.answered.get(key)
        if answered is None:
            return False
        allowed, token = _caller(scope, state)
        if not allowed:
            return False
        try:
            pinned = service.db.catalog.pin([name for name, _ in answered.versions])
        except ColonnadeError:  # a table went away: the full path says how
            return False
        if any(pinned[name].fingerprint != fingerprint for name, fingerprint in answered.versions):
            return False
        etag = answered.etag
        if etag is not None and etag.encode() in _if_none_match(scope):
            body, status, media_type = b"", 304, None
        else:
            hit = service.cache.get(answered.cache_key)
            if hit is None:
                return False
            body, status, media_type = hit.body, 200, hit.media_type
        record = service.ops.begin(token, answered.engine, answered.format)
        record.tables = [name for name, _ in answered.versions]
        headers: list[tuple[bytes, bytes]] = [
            (b"content-length", str(len(body)).encode()),
            (ELAPSED_HEADER, f"{(time.perf_counter() - started) * 1000:.3f}".encode()),
            (b"x-colonnade-cache", b"hit" if status == 200 else b"not_modified"),
            (QUERY_ID_HEADER, record.id.encode()),
            (b"x-colonnade-engine", answered.engine.encode()),
        ]
        if media_type is not None:
            headers.append((b"content-type", media_type.encode()))
        if etag is not None:
            headers.append((b"etag", weak(etag).encode()))
        if answered.disposition is not None and status == 200:
            headers.append((b"content-disposition", answered.disposition.encode()))
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
        await send(end)
        cache = "hit" if status == 200 else "not_modified"
        service.ops.finish(record, "ok", cache=cache, rows=None, bytes=len(body))
        return True


def _caller(scope: Scope, state: Any) -> tuple[bool, str | None]:
    """Whether the request may be answered here, and its token's name. With auth on, the token
    must still be in the store (it may have been revoked since)."""
    store = getattr(state, "tokens", None)
    if store is None:
        return True, None
    secret = _bearer(scope)
    try:
        token = store.verify(secret) if secret is not None else None
    except ColonnadeError:  # a damaged store: the full path answers 503
        return False, None
    return token is not None, token.name if token is not None else None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None
    return None


def _if_none_match(scope: Scope) -> set[bytes]:
    for name, value in scope.get("headers", ()):
        if name == b"if-none-match":
            return {tag.strip().removeprefix(b"W/") for tag in value.split(b",") if tag.strip()}
    return set()
