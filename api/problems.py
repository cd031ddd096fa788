"""Every error leaves as RFC 9457 problem+json with a stable ``code``, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

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


def problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(problem, status_code=problem["status"], media_type=PROBLEM_JSON, headers=headers)


def colonnade_error(request: Request, exc: ColonnadeError) -> Response:
    problem = exc.to_problem()
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


EXCEPTION_HANDLERS = {ColonnadeError: colonnade_error, HTTPException: http_error, Exception: unexpected_error}
