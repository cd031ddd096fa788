"""HTTP routes: translate requests into engine calls and engine results into responses.

No SQL is built here: ``/rows`` goes through ``engine.rest`` and everything through the same
validated query path (``api.query.QueryService``).
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pyarrow as pa
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from api.auth import authenticate
from api.cache import cache_key, etag_for
from api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from api.problems import AtStatus
from api.query import QueryRequest, QueryService, _if_none_match, parse_params
from engine.catalog import TableSnapshot
from engine.config import check_timeout
from engine.database import Database
from engine.errors import InvalidParameters, InvalidRequest, NotFound, QueryTooLarge, TableNotFound
from engine.formats import MEDIA_TYPES, negotiate
from engine.rest import compile_rest
from engine.tokens import Token, check_admin


class SqlBody(msgspec.Struct, forbid_unknown_fields=True):
    sql: str
    params: list[Any] | None = None
    engine: str | None = None
    timeout_s: float | None = None


def _service(state: State) -> QueryService:
    return state.service


def _timeout(raw: str | None) -> float | None:
    return None if raw is None else check_timeout(raw)


def _format(request: Request) -> str:
    return negotiate(request.query_params.get("format"), request.headers.get("accept"))


# -- liveness ---------------------------------------------------------------------------------


@get("/health", tags=["status"])
async def health() -> dict[str, str]:
    """Liveness: answers from the event loop, never behind queries."""
    return {"status": "ok"}


@get("/ready", tags=["status"])
async def ready(state: State) -> Response:
    """Readiness: the catalog can be listed."""
    names = await _service(state).run_blocking(state.db.tables)
    return Response({"status": "ready", "tables": len(names), "worker": os.getpid()})


# -- catalog ----------------------------------------------------------------------------------


def table_info(snap: TableSnapshot, *, detail: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": snap.name,
        "kind": snap.kind,
        "version": snap.version,
        "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in snap.schema],
        "row_count": snap.row_count,
    }
    if detail:
        info.update(format=snap.format, partitions=list(snap.partitions), files=len(snap.files), bytes=snap.bytes)
    return info


def _etagged(request: Request, body: Any, *versions: str) -> Response:
    etag = etag_for(cache_key(request.url.path, *versions))
    if etag in _if_none_match(request):
        return Response(b"", status_code=304, headers={"ETag": etag})
    return Response(body, headers={"ETag": etag})


def _list_tables(db: Database) -> list[TableSnapshot]:
    snaps = []
    for name in db.tables():
        try:
            snaps.append(db.table(name))
        except TableNotFound:  # dropped between listing and reading
            continue
    return snaps


@get("/api/tables", tags=["catalog"])
async def list_tables(request: Request, state: State) -> Response:
    """Every table the caller may read: name, kind, version, columns, row count where cheap."""
    token = authenticate(request)
    snaps = await _service(state).run_blocking(_list_tables, state.db)
    snaps = [s for s in snaps if token is None or token.may_read(s.name)]
    return _etagged(request, [table_info(s) for s in snaps], *(s.name + s.fingerprint for s in snaps))


async def _snapshot(request: Request, state: State, name: str) -> tuple[TableSnapshot, Token | None]:
    """The table behind a /api/tables/{name} route, checked against the caller's grants."""
    token = authenticate(request)
    try:
        snap = await _service(state).run_blocking(state.db.table, name)
    except TableNotFound as exc:  # the hint lists the catalog: a request on object storage, off the loop
        detail = exc.detail + await _service(state).run_blocking(state.db.did_you_mean, name, token)
        raise AtStatus(TableNotFound(detail, table=name), 404) from exc
    if token is not None:
        token.check_tables([snap.name])
    return snap, token


@get("/api/tables/{name:str}", tags=["catalog"])
async def describe_table(request: Request, state: State, name: FromPath[str]) -> Response:
    """Schema (Arrow types as strings), partitions, version, files, bytes. With
    ``Accept: application/vnd.apache.arrow.stream``: the exact Arrow schema as an empty stream."""
    snap, _ = await _snapshot(request, state, name)
    if _format(request) == "arrow":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, snap.schema):
            pass
        return Response(sink.getvalue().to_pybytes(), media_type=MEDIA_TYPES["arrow"])
    return _etagged(request, table_info(snap, detail=True), snap.fingerprint)


@get("/api/tables/{name:str}/history", tags=["catalog"])
async def table_history(request: Request, state: State, name: FromPath[str]) -> Response:
    """The versions of a managed table, newest first."""
    snap, _ = await _snapshot(request, state, name)
    entries = await _service(state).run_blocking(state.db.history, snap.name)
    return _etagged(request, entries, snap.fingerprint)


# -- queries ----------------------------------------------------------------------------------


@get("/api/tables/{name:str}/rows", tags=["query"])
async def table_rows(request: Request, state: State, name: FromPath[str]) -> Response:
    """PostgREST-style query: select=, col=op.value filters, or=(), order=, limit=, offset=."""
    snap, token = await _snapshot(request, state, name)
    fmt = _format(request)
    rest = compile_rest(snap.name, snap.schema, request.query_params.multi_items())
    engine = request.query_params.get("engine") or state.db.settings.server.engine
    q = QueryRequest(rest.sql, rest.params, engine, fmt, None, cacheable=True, token=token, name=snap.name)
    return await _service(state).respond(request, q)


@get("/api/sql", tags=["query"])
async def sql_get(request: Request, state: State) -> Response:
    """Run `q` (one read-only query); `params` is a JSON array. Cacheable, with an ETag."""
    token = authenticate(request)
    params = request.query_params
    text = params.get("q")
    if not text:
        raise InvalidRequest("missing query parameter q (the SQL to run)")
    engine = params.get("engine") or state.db.settings.server.engine
    q = QueryRequest(
        text,
        parse_params(params.get("params")),
        engine,
        _format(request),
        _timeout(params.get("timeout_s")),
        cacheable=True,
        token=token,
    )
    return await _service(state).respond(request, q)


@post("/api/sql", tags=["query"], status_code=200)
async def sql_post(request: Request, state: State) -> Response:
    """Body: raw SQL (text/plain, application/sql) or JSON {"sql", "params", "engine", "timeout_s"}."""
    token = authenticate(request)
    raw = await request.body()
    limit = state.db.settings.limits.max_sql_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = msgspec.json.decode(raw, type=SqlBody)
        except msgspec.ValidationError as exc:
            if str(exc).endswith("`$.timeout_s`"):  # e.g. 1e309: out of a float's range
                raise InvalidParameters(f"timeout_s: {exc}") from None
            raise InvalidRequest(f"malformed JSON body: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed JSON body: {exc}") from None
        text, params, engine = body.sql, body.params, body.engine
        timeout = None if body.timeout_s is None else check_timeout(body.timeout_s)
    else:
        if len(raw) > limit:
            raise QueryTooLarge(f"the query is {len(raw)} bytes; the limit is {limit}")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise InvalidRequest("the SQL body is not valid UTF-8") from None
        params, engine, timeout = None, None, None
    query = request.query_params
    q = QueryRequest(
        text,
        params if params is not None else parse_params(query.get("params")),
        engine or query.get("engine") or state.db.settings.server.engine,
        _format(request),
        timeout if timeout is not None else _timeout(query.get("timeout_s")),
        cacheable=False,
        token=token,
    )
    return await _service(state).respond(request, q)


# -- operations -------------------------------------------------------------------------------


@get("/api/queries", tags=["operations"])
async def list_queries(request: Request, state: State) -> Response:
    """Running and queued queries of every worker (admin token): id, token name, engine,
    tables, state, elapsed, rows so far."""
    check_admin(authenticate(request))
    queries = await _service(state).run_blocking(_service(state).ops.running)
    return Response({"queries": queries}, headers={"Cache-Control": "no-store"})


@delete("/api/queries/{query_id:str}", tags=["operations"], status_code=202)
async def cancel_query(request: Request, state: State, query_id: FromPath[str]) -> Response:
    """Cancel one query (admin token): it stops in its engine, whichever worker runs it."""
    check_admin(authenticate(request))
    if not await _service(state).run_blocking(_service(state).ops.cancel, query_id):
        raise NotFound(f"no running or queued query has the id {query_id!r}")
    return Response({"id": query_id, "cancelled": True}, status_code=202)


@get("/metrics", tags=["operations"], media_type=METRICS_CONTENT_TYPE)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus text format, summed over the workers ([server] metrics: admin, open, off)."""
    mode = state.db.settings.server.metrics
    if mode == "off":
        raise NotFound("metrics are off ([server] metrics)")
    if mode != "open":
        check_admin(authenticate(request))
    body = await _service(state).run_blocking(_service(state).ops.metrics.exposition)
    return Response(body, media_type=METRICS_CONTENT_TYPE)
