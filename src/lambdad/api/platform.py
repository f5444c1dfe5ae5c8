"""lambdad's own endpoints under ``/_lambdad/``: health, code downloads, logs, metrics, doctor,
and the event source mappings' status (``/_lambdad/esm``: state, last result, lag)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import FUNCTIONS, reply, scope_of
from lambdad.api.prometheus import METRICS
from lambdad.control.arns import Scope
from lambdad.events.pollers import MappingStatus
from lambdad.observe.log_filters import InvalidFilterPattern, compile_pattern
from lambdad.observe.logs import LogEvent, LogStore
from lambdad.observe.metric_queries import BadQuery
from lambdad.observe.metrics import LAMBDA
from lambdad.store.base import BlobNotFound, BlobStore

BLOBS = web.AppKey("blobs", BlobStore)
LOGS = web.AppKey("logs", LogStore)
Doctor = Callable[[], dict[str, Any]]
DOCTOR: web.AppKey[Doctor] = web.AppKey("doctor")
#: ``Pollers.status``: the scope's mappings (of one function's name and qualifier) and lag.
EsmStatus = Callable[[Scope, tuple[str, str | None] | None], Awaitable[list[MappingStatus]]]
ESM_STATUS: web.AppKey[EsmStatus] = web.AppKey("esm_status")
#: ``NodeRegistry.nodes``: every node of the cluster, with its health (docs/cluster.md).
NodeList = Callable[[], Awaitable[list[dict[str, Any]]]]
NODES: web.AppKey[NodeList] = web.AppKey("nodes")

routes = web.RouteTableDef()


@routes.get("/_lambdad/health")
async def health(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@routes.get("/_lambdad/cluster")
async def cluster(request: web.Request) -> web.Response:
    """The nodes of the cluster as this node reads them from the shared store: id, role,
    address, version, capacity, load, last heartbeat and health (``up`` or ``gone``)."""
    nodes = request.app.get(NODES)
    return reply({"Nodes": await nodes() if nodes is not None else []})


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
    next time: past the events read, matching or not. ``tail=N`` instead answers the last N
    matching events (at most 10,000; the web console's first read)."""
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
    tail = int(_number(request, "tail", 0))
    if tail > 0:  # the last ``tail`` matching events; then read on after the newest position
        position = store.position
        try:
            scan = await store.scan_async(key, match=match, limit=min(tail, 10_000), forward=False)
            events = scan.events
        except errors.ResourceNotFoundException:
            events = []
        body = {"group": group, "events": [_event(e) for e in events], "next": position}
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")
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


def _event(e: LogEvent) -> dict[str, object]:
    return {"seq": e.seq, "timestamp": e.timestamp_ms, "stream": e.stream, "message": e.message}


def _dimensions(request: web.Request) -> list[tuple[str, str | None]]:
    """``dimension=Name=Value`` (or ``dimension=Name``: any value) query parameters."""
    found: list[tuple[str, str | None]] = []
    for raw in request.query.getall("dimension", []):
        name, sep, value = raw.partition("=")
        if not name:
            raise errors.InvalidParameterValueException(f"Invalid dimension {raw!r}")
        found.append((name, value if sep else None))
    return found


def _number(request: web.Request, name: str, default: float | None = None) -> float:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise errors.InvalidParameterValueException(f"The parameter {name} is required.")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise errors.InvalidParameterValueException(f"Invalid {name}: {raw!r}") from None
    if not math.isfinite(value) or abs(value) > 1e11:
        raise errors.InvalidParameterValueException(f"Invalid {name}: {raw!r}")
    return value


@routes.get("/_lambdad/metrics/query")
async def metrics_query(request: web.Request) -> web.Response:
    """One metric's datapoints: ``namespace`` (AWS/Lambda), ``metric``, ``dimension`` (each
    ``Name=Value``, the exact set), ``start`` / ``end`` (epoch s; the last hour), ``period``
    (s, 60), ``stat`` (each a statistic or percentile; Sum)."""
    scope = scope_of(request)
    dims = _dimensions(request)
    if any(value is None for _, value in dims):
        raise errors.InvalidParameterValueException("Each dimension needs a value: Name=Value")
    now = time.time()
    end = _number(request, "end", now)
    start = _number(request, "start", end - 3600.0)
    period = _number(request, "period", 60.0)
    stats = request.query.getall("stat", ["Sum"])
    metric = request.query.get("metric", "")
    if not metric:
        raise errors.InvalidParameterValueException("The parameter metric is required.")
    try:
        points = await request.app[METRICS].query_async(
            scope,
            request.query.get("namespace", LAMBDA),
            metric,
            {n: v for n, v in dims if v is not None},
            start,
            end,
            int(period) if period.is_integer() else -1,
            stats,
        )
    except BadQuery as exc:
        raise errors.InvalidParameterValueException(str(exc)) from None
    body = {"datapoints": [{"timestamp": p.timestamp, "unit": p.unit, **p.values} for p in points]}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


@routes.get("/_lambdad/metrics/list")
async def metrics_list(request: web.Request) -> web.Response:
    """The metrics with data kept: optional ``namespace``, ``metric``, ``dimension`` filters."""
    found = await request.app[METRICS].list_metrics_async(
        scope_of(request),
        request.query.get("namespace") or None,
        request.query.get("metric") or None,
        _dimensions(request),
    )
    body = {
        "metrics": [
            {
                "namespace": m.namespace,
                "metric": m.name,
                "dimensions": [{"name": n, "value": v} for n, v in m.dimensions],
            }
            for m in found
        ]
    }
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")
