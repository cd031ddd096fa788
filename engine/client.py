"""``engine.connect("http://…")``: the notebook interface over a Colonnade server.

Results travel as Arrow IPC streams and are read batch by batch as they arrive; server errors
(problem+json) are raised as the same exception classes as local use.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from engine.config import check_timeout
from engine.errors import ColonnadeError, EngineError, ResultTooLarge, from_problem
from engine.result import Result

ARROW_STREAM = "application/vnd.apache.arrow.stream"
CUT_MARGIN_BYTES = 64 * 1024**2


class _ResponseStream(io.RawIOBase):
    """A file-like view of a streaming HTTP body, for ``pyarrow.ipc.open_stream``.

    A body that stops short is an error, never a shorter result: the server cuts an Arrow stream
    that grows past its ``max_result_bytes`` (announced in ``X-Colonnade-Max-Result-Bytes``)."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()
        self._buffer = b""
        self._received = 0
        self._cap = int(response.headers.get("x-colonnade-max-result-bytes", "0") or 0)

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise self._cut(exc) from None
            self._received += len(self._buffer)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _cut(self, exc: httpx.HTTPError) -> ColonnadeError:
        # The server cuts before a step that would pass the cap; a step is at most 8 MB (and
        # one wider row), so a cut that close to the cap is the cap.
        if self._cap and self._received + CUT_MARGIN_BYTES >= self._cap:
            return ResultTooLarge(
                f"the result is larger than the server's max_result_bytes ({self._cap} bytes): the server "
                f"stopped the stream after {self._received} bytes; add a LIMIT or select fewer columns"
            )
        return EngineError(f"the result stream broke off after {self._received} bytes: {exc}")


class RemoteDatabase:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 300.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10))

    # -- catalog ---------------------------------------------------------------------------

    def tables(self) -> list[str]:
        return [t["name"] for t in self._get_json("/api/tables")]

    def table_info(self, name: str) -> dict[str, Any]:
        return self._get_json(f"/api/tables/{quote(name)}")

    def schema(self, name: str) -> pa.Schema:
        """The exact Arrow schema (nullability included), sent as an empty Arrow stream."""
        response = self._send("GET", f"/api/tables/{quote(name)}", headers={"Accept": ARROW_STREAM})
        return pa.ipc.open_stream(response.content).schema

    def history(self, name: str) -> list[dict[str, Any]]:
        return self._get_json(f"/api/tables/{quote(name)}/history")

    # -- queries ---------------------------------------------------------------------------

    def sql(
        self, sql: str, params: Sequence[Any] | None = None, engine: str | None = None, timeout_s: float | None = None
    ) -> Result:
        if timeout_s is not None:
            timeout_s = check_timeout(timeout_s)  # JSON cannot carry nan or inf: say why here
        body = {
            "sql": sql,
            "params": list(params) if params is not None else None,
            "engine": engine,
            "timeout_s": timeout_s,
        }
        request = self._http.build_request("POST", "/api/sql", json=body, headers={"Accept": ARROW_STREAM})
        response = self._checked(self._http.send(request, stream=True))
        try:
            reader = pa.ipc.open_stream(io.BufferedReader(_ResponseStream(response), buffer_size=1 << 20))
        except BaseException:
            response.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            finally:
                response.close()

        answered_by = response.headers.get("x-colonnade-engine", engine or "")
        return Result(reader.schema, batches(), engine=answered_by, sql=sql, cancel=response.close)

    def ingest(self, *args: Any, **kwargs: Any) -> Any:
        raise ColonnadeError("ingestion is local only: run it on the server's machine (colonnade ingest)")

    # -- plumbing --------------------------------------------------------------------------

    def _get_json(self, path: str) -> Any:
        return self._send("GET", path).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineError(f"cannot reach {self.url}: {exc}") from exc
        return self._checked(response)

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        response.read()
        try:
            problem = response.json()
        except ValueError:
            problem = {"status": response.status_code, "detail": response.text[:500]}
        finally:
            response.close()
        raise from_problem(problem)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<colonnade.RemoteDatabase {self.url}>"
