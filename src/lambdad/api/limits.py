"""The largest request body each operation takes, checked on the declared length before reading."""

from __future__ import annotations

import re

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import CODE_REQUEST_LIMIT, CONTROL_REQUEST_LIMIT
from lambdad.invoke.payloads import EVENT_LIMIT, check_size

#: (method, path with labels as ``{}``, no trailing slash) -> (operation, largest body).
#: Every other route takes CONTROL_REQUEST_LIMIT. Keyed by the route, not the handler, so
#: renaming a handler or a path label cannot silently change a limit.
_BODY_LIMITS = {
    ("POST", "/2015-03-31/functions"): ("CreateFunction", CODE_REQUEST_LIMIT),
    ("PUT", "/2015-03-31/functions/{}/code"): ("UpdateFunctionCode", CODE_REQUEST_LIMIT),
    ("POST", "/2018-10-31/layers/{}/versions"): ("PublishLayerVersion", CODE_REQUEST_LIMIT),
    ("POST", "/2014-11-13/functions/{}/invoke-async"): ("InvokeAsync", EVENT_LIMIT),
}
#: Invoke's limit (and AWS's message) depends on the invocation type.
_INVOKE = ("POST", "/2015-03-31/functions/{}/invocations")

#: The largest body any route takes (aiohttp's own ``client_max_size``).
MAX_BODY = CODE_REQUEST_LIMIT + 1024


def route_key(request: web.Request) -> tuple[str, str]:
    """The request's route as (method, path with ``{}`` for each label)."""
    route = request.match_info.route
    canonical = route.resource.canonical if route.resource is not None else ""
    return route.method, re.sub(r"\{[^}]*\}", "{}", canonical).rstrip("/")


def refuse_oversized(request: web.Request) -> None:
    """Raise ``RequestTooLargeException`` when the declared body is over the route's limit.

    Checked before any handler reads the body, so a client that declares a huge length and
    sends less is answered at once instead of being waited for.
    """
    declared = request.content_length
    if declared is None:
        return
    key = route_key(request)
    if key == _INVOKE:
        check_size(declared, request.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
        return
    handler = str(getattr(request.match_info.handler, "__name__", ""))
    operation, limit = _BODY_LIMITS.get(key, (_camel(handler), CONTROL_REQUEST_LIMIT))
    if declared > limit:
        raise errors.RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )


def _camel(name: str) -> str:
    return re.sub(r"(?:^|_)([a-z0-9])", lambda m: m.group(1).upper(), name)
