"""One error hierarchy for the whole product.

Every error carries a stable machine ``code``, a ``title`` and whether the caller is at fault
(``client_error``): a notebook user reads that as "fix my query" versus "ask the operator". The
HTTP status each class answers with is the API's business and lives in ``api/problems.py``; the
remote client turns a problem+json body back into the same class by its code.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ColonnadeError(Exception):
    """Base of every error Colonnade raises on purpose."""

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Colonnade error"
    # True when the request is at fault (its SQL, input, credentials, pace); False when the
    # server, its storage or its engines are. The API's 4xx/5xx split follows it (tested).
    client_error: ClassVar[bool] = False
    # False for errors about the server's own files and settings: their detail names paths a
    # client must not see, so HTTP clients get the title and the server log gets the detail.
    public_detail: ClassVar[bool] = True

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.detail!r}, {self.extra})"


# --- configuration and storage -----------------------------------------------------------


class ConfigError(ColonnadeError):
    code = "config_invalid"
    title = "Invalid configuration"
    public_detail = False


class DataDirError(ColonnadeError):
    code = "data_dir_invalid"
    title = "Invalid data directory"
    public_detail = False


class AuthUnavailable(ColonnadeError):
    """The token store cannot be read: every request is refused (fail closed)."""

    code = "auth_unavailable"
    title = "Authentication unavailable"
    public_detail = False


class StorageUnavailable(ColonnadeError):
    """Object storage cannot be reached or used: a missing bucket, an unreachable endpoint, a
    timeout. The detail (which names the bucket) goes to the server log, never a secret."""

    code = "storage_unavailable"
    title = "Storage unavailable"
    public_detail = False


class AccessDenied(ColonnadeError):
    """Object storage refused the credentials, or the prefix is not theirs to read or write."""

    code = "access_denied"
    title = "Storage access denied"
    public_detail = False


class InvalidTableName(ColonnadeError):
    code = "invalid_table_name"
    client_error = True
    title = "Invalid table name"


class TableNotFound(ColonnadeError):
    code = "table_not_found"
    client_error = True
    title = "Table not found"


class TableReadOnly(ColonnadeError):
    code = "table_read_only"
    client_error = True
    title = "Table is read-only"


class IngestError(ColonnadeError):
    code = "ingest_failed"
    client_error = True
    title = "Ingestion failed"


class SchemaMismatch(IngestError):
    code = "schema_mismatch"
    title = "Schema mismatch"


class ConcurrentWrite(IngestError):
    code = "concurrent_write"
    title = "Concurrent write"


class SourceNotFound(IngestError):
    code = "source_not_found"
    title = "Input not found"


class EmptySource(IngestError):
    code = "source_empty"
    title = "Input is empty"


class UnknownFormat(IngestError):
    code = "unknown_format"
    title = "Unknown input format"


class BadRow(IngestError):
    """A malformed input row; the message names the file, line and column."""

    code = "bad_row"
    title = "Malformed input row"


class UnsupportedType(IngestError):
    """An input column of a type no Delta column can hold; the message names column and type."""

    code = "unsupported_type"
    title = "Type not supported"


class VersionUnavailable(IngestError):
    """A table version whose data files are gone (vacuumed): it can no longer be restored or read."""

    code = "version_unavailable"
    title = "Version unavailable"


class TableBusy(IngestError):
    """Another Colonnade process holds the table's maintenance lock past the wait."""

    code = "table_busy"
    title = "Table busy"


class PartitionMismatch(SchemaMismatch):
    code = "partition_mismatch"
    title = "Partitioning mismatch"


# --- queries -----------------------------------------------------------------------------


class ResultConsumed(ColonnadeError):
    """A streamed ``Result`` read a second time (the notebook API; never an HTTP answer)."""

    code = "result_consumed"
    client_error = True
    title = "Result already read"


class QueryError(ColonnadeError):
    """A query the client sent cannot run as written."""

    code = "query_error"
    client_error = True
    title = "Query error"


class SqlSyntaxError(QueryError):
    code = "sql_syntax"
    title = "SQL syntax error"


class StatementNotAllowed(QueryError):
    code = "statement_not_allowed"
    title = "Statement not allowed"


class ColumnNotFound(QueryError):
    code = "column_not_found"
    title = "Column not found"


class InvalidParameters(QueryError):
    code = "invalid_parameters"
    title = "Invalid query parameters"


class UnsupportedQuery(QueryError):
    code = "unsupported_query"
    title = "Not supported by this engine"


class QueryTooLarge(QueryError):
    code = "query_too_large"
    title = "Query too large"


class QueryTooComplex(QueryError):
    code = "query_too_complex"
    title = "Query too complex"


class InvalidRequest(QueryError):
    """A malformed request around the query (bad format, filter, limit...)."""

    code = "invalid_request"
    title = "Invalid request"


class NotAcceptable(QueryError):
    code = "not_acceptable"
    title = "Not acceptable"


class QueryTimeout(QueryError):
    code = "query_timeout"
    client_error = False
    title = "Query timed out"


class RequestTimeout(ColonnadeError):
    """The client sent its request too slowly (headers or body past their deadline)."""

    code = "request_timeout"
    client_error = True
    title = "Request timeout"


class QueryCancelled(QueryError):
    code = "query_cancelled"
    title = "Query cancelled"


class ResultTooLarge(QueryError):
    code = "result_too_large"
    title = "Result too large"


class ResourceExhausted(ColonnadeError):
    code = "resource_exhausted"
    title = "Engine out of memory"


class Overloaded(ColonnadeError):
    code = "overloaded"
    client_error = True
    title = "Too many queries"


class Unauthorized(ColonnadeError):
    code = "unauthorized"
    client_error = True
    title = "Unauthorized"


class Forbidden(ColonnadeError):
    code = "forbidden"
    client_error = True
    title = "Forbidden"


class NotFound(ColonnadeError):
    code = "not_found"
    client_error = True
    title = "Not found"


class EngineError(ColonnadeError):
    """The engine failed in a way that is not the client's fault."""

    code = "engine_error"
    title = "Engine error"


def _all_subclasses(cls: type[ColonnadeError]) -> list[type[ColonnadeError]]:
    out: list[type[ColonnadeError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_ALL_ERRORS: list[type[ColonnadeError]] = [ColonnadeError, *_all_subclasses(ColonnadeError)]
ERRORS_BY_CODE: dict[str, type[ColonnadeError]] = {cls.code: cls for cls in _ALL_ERRORS}


def from_problem(problem: dict[str, Any]) -> ColonnadeError:
    """Rebuild the exception a server raised from its problem+json body."""
    cls = ERRORS_BY_CODE.get(str(problem.get("code")), ColonnadeError)
    known = {"type", "title", "status", "detail", "code"}
    extra = {k: v for k, v in problem.items() if k not in known}
    return cls(str(problem.get("detail", "")), **extra)
