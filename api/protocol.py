"""uvicorn's httptools protocol with deadlines for slow clients.

uvicorn 0.54 times out only idle keep-alive connections: a client that opens a connection and
sends half a request line, or headers without their blank line, or fewer body bytes than its
Content-Length, holds the connection (and a file descriptor) for as long as it likes. Here each
request must finish its headers within ``header_timeout_s`` of its first byte (of the connection,
for the first request) and its body within ``body_timeout_s`` after the headers; past that the
server answers 408 (when it has not started a response) and closes the connection.

Time the server itself spends not reading (flow control while the app has not taken the body
yet) does not count against the client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import problem_of
from engine.errors import RequestTimeout


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for = ""

    # -- arming and disarming ----------------------------------------------------------------

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.header_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm("headers", self.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm("body", self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- expiry ------------------------------------------------------------------------------

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._waiting_for == "body" and self.flow.read_paused:
            self._arm("body", self.body_timeout_s)  # we stopped reading, not the client
            return
        if self._waiting_for == "headers" and busy:
            self._arm("headers", self.header_timeout_s)  # a pipelined request while we still answer
            return
        seconds = self.header_timeout_s if self._waiting_for == "headers" else self.body_timeout_s
        error = RequestTimeout(f"the request {self._waiting_for} did not arrive within {seconds:g} s")
        if self._waiting_for == "headers" or not self.cycle.response_started:
            body = json.dumps(problem_of(error)).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\n"
                b"content-type: application/problem+json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
        self.transport.close()  # the app, if it waits for the body, sees a disconnect


def configure(header_timeout_s: float, body_timeout_s: float) -> None:
    """Set the deadlines (once per worker process, before it serves)."""
    DeadlineHttpToolsProtocol.header_timeout_s = header_timeout_s
    DeadlineHttpToolsProtocol.body_timeout_s = body_timeout_s
