"""``HEAD`` on every ``GET`` route: the request runs as the ``GET`` it stands for (marked with
``colonnade.head`` in its scope, so a route may answer it more cheaply) and the body is never
sent. A streamed body is stopped at its first chunk: the route sees a client that left, which
stops its engine."""

from __future__ import annotations

import contextlib

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEAD_SCOPE_KEY = "colonnade.head"


class _BodyNotWanted(Exception):
    pass


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET", HEAD_SCOPE_KEY: True}
        finished = False

        async def headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
                return
            if not finished:
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            if message.get("more_body", False):
                raise _BodyNotWanted  # a stream: stop producing it

        with contextlib.suppress(_BodyNotWanted):
            await self.app(as_get, receive, headers_only)  # type: ignore[arg-type]
