"""The largest request body each operation takes, checked on the declared length before reading."""

from __future__ import annotations

import re

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import CODE_REQUEST_LIMIT, CONTROL_REQUEST_LIMIT
from lambdad.invoke.payloads import EVENT_LIMIT, SYNC_LIMIT

#: The largest body each operation takes; every other route takes CONTROL_REQUEST_LIMIT.
#: Keys are handler names (``create_function`` serves CreateFunction). Invoke's handler
#: applies the tighter limit of an ``Event`` invocation itself.
_BODY_LIMITS = {
    "create_function": CODE_REQUEST_LIMIT,
    "update_function_code": CODE_REQUEST_LIMIT,
    "publish_layer_version": CODE_REQUEST_LIMIT,
    "invoke": SYNC_LIMIT,
    "invoke_async": EVENT_LIMIT,
}
#: The operation names AWS's size messages use where they differ from the handler's.
_OPERATION_NAMES = {"invoke": "InvokeFunction"}

#: The largest body any route takes (aiohttp's own ``client_max_size``).
MAX_BODY = CODE_REQUEST_LIMIT + 1024


def refuse_oversized(request: web.Request) -> None:
    """Raise ``RequestTooLargeException`` when the declared body is over the route's limit.

    Checked before any handler reads the body, so a client that declares a huge length and
    sends less is answered at once instead of being waited for.
    """
    declared = request.content_length
    if declared is None:
        return
    name = str(getattr(request.match_info.handler, "__name__", ""))
    limit = _BODY_LIMITS.get(name, CONTROL_REQUEST_LIMIT)
    if declared > limit:
        operation = _OPERATION_NAMES.get(name) or _camel(name)
        raise errors.RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )


def _camel(name: str) -> str:
    return re.sub(r"(?:^|_)([a-z0-9])", lambda m: m.group(1).upper(), name)
