"""An ASGI guard in front of every route: which ``Host`` names this server answers to, paths a
route may see, and the headers every response carries.

With auth off (the loopback default) any web page the user visits could reach the server by
DNS rebinding (a name of the attacker's that resolves to 127.0.0.1): the browser sends that name
as ``Host``, so only loopback names are served unless ``[server] allowed_hosts`` lists more, as
Jupyter does. With auth on, tokens guard the data and ``allowed_hosts`` is enforced only when set.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON

ALWAYS_HEADERS = ((b"x-content-type-options", b"nosniff"),)
_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:8000`` → ``::1``, ``example.org:80`` → ``example.org``."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], loopback_only: bool) -> None:
        self.app = app
        self.allowed = {h.lower().rstrip(".") for h in allowed_hosts}
        # No list and auth on: every Host is served (tokens guard the data).
        self.check_hosts = loopback_only or bool(self.allowed)
        self._verdicts: dict[str, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", ""):
            await _problem(send, 404, "not_found", "Not found", "no such resource")
            return
        host = _header(scope, b"host")
        if host is not None and self.check_hosts and not self._host_allowed(host_name(host)):
            await _problem(
                send,
                403,
                "host_not_allowed",
                "Host not allowed",
                "this server does not answer to that Host name; add it to [server] allowed_hosts",
            )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in ALWAYS_HEADERS if n not in present]
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _host_allowed(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            folded = name.lower().rstrip(".")
            verdict = is_loopback(folded) or "*" in self.allowed or folded in self.allowed
            if len(self._verdicts) < 1024:  # clients send a handful of names; never grow unbounded
                self._verdicts[name] = verdict
        return verdict


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _problem(send: Send, status: int, code: str, title: str, detail: str) -> None:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    payload = json.dumps(body).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
        *ALWAYS_HEADERS,
    ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
    await send(end)
