"""lambdad's own endpoints under ``/_lambdad/``: health, code downloads, logs, doctor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import FUNCTIONS, reply, scope_of
from lambdad.observe.logs import LogStore
from lambdad.store.base import BlobNotFound, BlobStore

BLOBS = web.AppKey("blobs", BlobStore)
LOGS = web.AppKey("logs", LogStore)
Doctor = Callable[[], dict[str, Any]]
DOCTOR: web.AppKey[Doctor] = web.AppKey("doctor")

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
    return reply(await asyncio.to_thread(request.app[DOCTOR]))


@routes.get("/_lambdad/logs")
async def logs(request: web.Request) -> web.Response:
    """Events of a function's log group: ``function``, ``after`` (a position), ``wait`` (s)."""
    scope = scope_of(request)
    raw = request.query.get("function", "")
    group = request.query.get("group")
    if not group:
        name, _ = request.app[FUNCTIONS].name_of(scope, raw)
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
        ],
        "next": events[-1].seq if events else after,
    }
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")
