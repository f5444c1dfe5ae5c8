"""lambdad's trace read path: ``GET /_lambdad/traces`` (``function``, ``limit``) lists the
caller's traces newest first, ``GET /_lambdad/traces/{trace_id}`` shows one with its spans
(lambdad's and the function's), for ``lambdad traces`` and the console (docs/tracing.md)."""

from __future__ import annotations

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import FUNCTIONS, reply, scope_of
from lambdad.observe.traces import Traces

TRACES = web.AppKey("traces", Traces)
_MAX_LIMIT = 1000

routes = web.RouteTableDef()


@routes.get("/_lambdad/traces")
async def list_traces(request: web.Request) -> web.Response:
    """The caller's traces (of one function when ``function`` names it), newest first."""
    scope = scope_of(request)
    raw = request.query.get("function")
    name = request.app[FUNCTIONS].name_of(scope, raw)[0] if raw else None
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), _MAX_LIMIT)
    except ValueError:
        raise errors.InvalidParameterValueException("limit: expected an integer") from None
    found = []
    for trace in request.app[TRACES].of_function(scope.account_id, scope.region, name):
        found.append(trace.to_json())
        if len(found) >= limit:
            break
    return reply({"Traces": found})


@routes.get("/_lambdad/traces/{trace_id}")
async def get_trace(request: web.Request) -> web.Response:
    """One trace of the caller's, by its X-Ray id or its 32 hex digits."""
    trace_id = request.match_info["trace_id"]
    trace = request.app[TRACES].get(scope_of(request).account_id, trace_id)
    if trace is None:
        raise errors.ResourceNotFoundException(f"Trace not found: {trace_id}")
    return reply(trace.to_json())
