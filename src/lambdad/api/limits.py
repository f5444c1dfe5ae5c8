"""The largest request body each operation takes, checked on the declared length before reading.

The limits themselves are the wire decoder's (``lambdad.api.wire.decode.request_limit``) and
the invoke path's (``lambdad.invoke.payloads``): this module only applies them early, from the
operation the route's handler decodes.
"""

from __future__ import annotations

import re

from aiohttp import web

from lambdad.api.wire.decode import (
    CODE_REQUEST_LIMIT,
    CONTROL_REQUEST_LIMIT,
    DISPATCHING,
    HANDLED,
    request_limit,
    service_of,
    too_large,
)
from lambdad.invoke.payloads import EVENT_LIMIT, SYNC_LIMIT, check_size, limit_of

#: The largest body any route takes (aiohttp's own ``client_max_size``).
MAX_BODY = CODE_REQUEST_LIMIT + 1024
#: The smallest of those limits: a declared length up to it is over none of them, so the
#: route's operation is not even looked up (every request with a small body).
_SMALLEST_LIMIT = min(EVENT_LIMIT, SYNC_LIMIT, CODE_REQUEST_LIMIT, CONTROL_REQUEST_LIMIT)


def operation_of(request: web.Request) -> str:
    """The operation the request's route serves (the first one of a path shared by several)."""
    handler = request.match_info.handler
    if handler in HANDLED:
        return HANDLED[handler].name
    if handler in DISPATCHING:
        return DISPATCHING[handler][0]
    return re.sub(r"(?:^|_)([a-z0-9])", lambda m: m.group(1).upper(), handler.__name__)


def refuse_oversized(request: web.Request) -> None:
    """Raise ``RequestTooLargeException`` when the declared body is over the route's limit.

    Checked before any handler reads the body, so a client that declares a huge length and
    sends less is answered at once instead of being waited for.
    """
    declared = request.content_length
    if declared is None or declared <= _SMALLEST_LIMIT:
        return
    name = operation_of(request)
    if name == "Invoke":  # the limit, and AWS's message, depend on the invocation type
        check_size(declared, request.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
        return
    if name == "InvokeAsync":  # an asynchronous invoke: Event's limit and message
        check_size(declared, "Event")
        return
    limit = request_limit(name, service_of(request.match_info.handler))
    if declared > limit:
        raise too_large(limit, name)


def body_limit(request: web.Request) -> int:
    """The largest body the request's route takes (an unrouted path: a control call's)."""
    if request.match_info.http_exception is not None:
        return CONTROL_REQUEST_LIMIT
    name = operation_of(request)
    if name == "Invoke":
        return limit_of(request.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
    if name == "InvokeAsync":
        return EVENT_LIMIT
    return request_limit(name, service_of(request.match_info.handler))


def refuse_read(request: web.Request, size: int) -> None:
    """``refuse_oversized`` for a body of ``size`` bytes already read (a chunked one)."""
    if request.match_info.http_exception is not None:
        return
    name = operation_of(request)
    if name == "Invoke":
        check_size(size, request.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
    elif name == "InvokeAsync":
        check_size(size, "Event")
    elif size > request_limit(name, service_of(request.match_info.handler)):
        raise too_large(request_limit(name, service_of(request.match_info.handler)), name)
