"""lambdad's own endpoints under ``/_lambdad/``: health, code downloads, logs, doctor, and the
event source mappings' status (``/_lambdad/esm``: state, last result, lag)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import FUNCTIONS, reply, scope_of
from lambdad.control.arns import Scope
from lambdad.events.pollers import MappingStatus
from lambdad.observe.log_filters import InvalidFilterPattern, compile_pattern
from lambdad.observe.logs import LogStore
from lambdad.store.base import BlobNotFound, BlobStore

BLOBS = web.AppKey("blobs", BlobStore)
LOGS = web.AppKey("logs", LogStore)
Doctor = Callable[[], dict[str, Any]]
DOCTOR: web.AppKey[Doctor] = web.AppKey("doctor")
#: ``Pollers.status``: the scope's mappings (of one function's name and qualifier) and lag.
EsmStatus = Callable[[Scope, tuple[str, str | None] | None], Awaitable[list[MappingStatus]]]
ESM_STATUS: web.AppKey[EsmStatus] = web.AppKey("esm_status")

routes = web.RouteTableDef()


@routes.get("/_lambdad/health")
async def health(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@routes.get("/_lambdad/code/{key}.zip")
async def code(request: web.Request) -> web.Response:
    try:
        data = await request.app[BLOBS].get(request.match_info["key"])
    except BlobNotFound:
        raise errors.ResourceNotFoundException("Code not found") from None
    return web.Response(body=data, content_type="application/zip")


@routes.get("/_lambdad/doctor")
async def doctor(request: web.Request) -> web.Response:
    """The server's report, and a line per event source mapping of the caller's scope."""
    report = await asyncio.to_thread(request.app[DOCTOR])
    status = request.app.get(ESM_STATUS)
    if status is not None:
        lines = {s.mapping.uuid: _doctor_line(s) for s in await status(scope_of(request), None)}
        report["event source mappings"] = lines or {"mappings": "none"}
    return reply(report)


def _doctor_line(status: MappingStatus) -> str:
    m = status.mapping
    polling = "polling" if status.polling else "not polling"
    return (
        f"{m.state}, {polling}, lag {status.lag_text()}, {m.source_arn} -> "
        f"{m.function_arn}: {m.last_processing_result}"
    )


@routes.get("/_lambdad/esm")
async def esm(request: web.Request) -> web.Response:
    """The caller's scope's event source mappings (``function``: only that function's, a
    qualified name only that qualifier's), each with its state, last processing result,
    whether a poller runs, and its lag."""
    scope = scope_of(request)
    raw = request.query.get("function")
    function = request.app[FUNCTIONS].name_of(scope, raw) if raw else None
    status = request.app.get(ESM_STATUS)
    found = await status(scope, function) if status is not None else []
    return reply({"EventSourceMappings": [s.to_json() for s in found]})


@routes.get("/_lambdad/logs")
async def logs(request: web.Request) -> web.Response:
    """Events of a function's log group: ``function``, ``after`` (a position), ``wait`` (s),
    ``filter`` (a CloudWatch Logs filter pattern). ``next`` is the position to read after
    next time: past the events read, matching or not."""
    try:
        match = compile_pattern(request.query.get("filter"))
    except InvalidFilterPattern:
        raise errors.InvalidParameterValueException("Invalid filter pattern") from None
    scope = scope_of(request)
    raw = request.query.get("function", "")
    group = request.query.get("group")
    if not group:  # the function's LoggingConfig.LogGroup (``/aws/lambda/<name>`` by default)
        name, qualifier = request.app[FUNCTIONS].name_of(scope, raw)
        try:
            config = await request.app[FUNCTIONS].get(scope, name, qualifier)
            group = config.log_group
        except errors.ResourceNotFoundException:  # deleted: its logs remain
            group = f"/aws/lambda/{name}"
    after = int(request.query.get("after", "0") or 0)
    wait = min(float(request.query.get("wait", "0") or 0), 60.0)
    store = request.app[LOGS]
    key = (scope.account_id, scope.region, group)
    events = await store.wait(key, after, wait) if wait > 0 else store.read(key, after=after)
    body = {
        "group": group,
        "events": [
            {"seq": e.seq, "timestamp": e.timestamp_ms, "stream": e.stream, "message": e.message}
            for e in events
            if match(e.message)
        ],
        "next": events[-1].seq if events else after,
    }
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")
