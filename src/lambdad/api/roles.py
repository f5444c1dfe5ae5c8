"""What a node's listener serves for its role (docs/cluster.md): a ``worker`` answers only
lambdad's health, doctor and cluster endpoints and Prometheus' ``/metrics`` (its own figures:
the invocations it ran); ``api`` and ``all`` serve everything."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from lambdad.observe.request_ids import new_request_id

#: What a worker's listener still answers: enough to be checked, diagnosed, listed and
#: scraped.
WORKER_PATHS = frozenset({"/_lambdad/health", "/_lambdad/doctor", "/_lambdad/cluster", "/metrics"})


@web.middleware
async def worker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse, with 421 Misdirected Request, every request a worker does not serve (the API,
    function URLs, the console's calls): clients belong on an ``api`` or ``all`` node."""
    if request.path in WORKER_PATHS:
        return await handler(request)
    return web.json_response(
        {
            "Type": "User",
            "message": "This lambdad node is a worker: it serves no API. "
            "Send requests to a node with role api or all (lambdad cluster lists them).",
        },
        status=421,
        headers={"x-amzn-ErrorType": "MisdirectedRequest", "x-amzn-RequestId": new_request_id()},
    )
