"""Every error leaves as RFC 9457 problem+json with a stable ``code``, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from engine import errors as e
from engine.errors import ColonnadeError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("colonnade.api")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}


# The HTTP status of every engine error. A class not listed answers as its nearest listed
# ancestor (PartitionMismatch as IngestError); a test holds 4xx <=> ``client_error``.
STATUS: dict[type[ColonnadeError], int] = {
    ColonnadeError: 500,
    e.ConfigError: 500,
    e.DataDirError: 500,
    e.EngineError: 500,
    e.AuthUnavailable: 503,
    e.StorageUnavailable: 503,
    e.AccessDenied: 503,
    e.ResourceExhausted: 503,
    e.QueryTimeout: 504,
    e.InvalidTableName: 400,
    e.TableNotFound: 400,  # named in a query; a table route answers 404 (AtStatus)
    e.IngestError: 400,
    e.QueryError: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.StatementNotAllowed: 403,
    e.NotFound: 404,
    e.NotAcceptable: 406,
    e.RequestTimeout: 408,
    e.TableReadOnly: 409,
    e.ConcurrentWrite: 409,
    e.TableBusy: 409,
    e.ResultConsumed: 409,
    e.VersionUnavailable: 410,
    e.QueryTooLarge: 413,
    e.ResultTooLarge: 413,
    e.Overloaded: 429,
    e.QueryCancelled: 499,  # nginx's "client closed request": the caller cancelled it
}


def status_of(error: ColonnadeError | type[ColonnadeError]) -> int:
    cls = error if isinstance(error, type) else type(error)
    return next(STATUS[c] for c in cls.__mro__ if c in STATUS)


class AtStatus(Exception):
    """An engine error answered with another status than its class's: the same error can mean
    another thing on another route (a table missing from a path is 404, from a query 400)."""

    def __init__(self, error: ColonnadeError, status: int) -> None:
        super().__init__(error.detail)
        self.error = error
        self.status = status


def problem_of(error: ColonnadeError, status: int | None = None) -> dict[str, Any]:
    """The RFC 9457 body for an engine error."""
    return {
        "type": f"https://colonnade.dev/errors/{error.code}",
        "title": error.title,
        "status": status or status_of(error),
        "detail": error.detail,
        "code": error.code,
        **error.extra,
    }


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(problem, status_code=problem["status"], media_type=PROBLEM_JSON, headers=headers)


def colonnade_error(request: Request, exc: ColonnadeError, status: int | None = None) -> Response:
    problem = problem_of(exc, status)
    if not exc.public_detail:
        problem["detail"] = f"{exc.title.lower()}: the details are in the server log"
    headers = {}
    if "retry_after" in problem:
        headers["Retry-After"] = str(problem.pop("retry_after"))
    if problem["code"] == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="colonnade"'
    if "query_id" in problem:
        headers["X-Colonnade-Query-Id"] = str(problem["query_id"])
    if problem["status"] >= 500 or not exc.public_detail:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return problem_response(problem, headers)


def error_at_status(request: Request, exc: AtStatus) -> Response:
    return colonnade_error(request, exc.error, exc.status)


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{detail}: {exc.extra}"
    problem = {
        "type": "about:blank",
        "title": str(exc.detail) if status != 400 else "Bad request",
        "status": status,
        "detail": str(detail),
        "code": _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error"),
    }
    return problem_response(problem, dict(exc.headers or {}))


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    problem = {
        "type": "about:blank",
        "title": "Internal server error",
        "status": 500,
        "detail": "an unexpected error occurred; it has been logged",
        "code": "internal_error",
    }
    return problem_response(problem)


EXCEPTION_HANDLERS = {
    ColonnadeError: colonnade_error,
    AtStatus: error_at_status,
    HTTPException: http_error,
    Exception: unexpected_error,
}
