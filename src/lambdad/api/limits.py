"""The largest request body each operation takes, checked on the declared length before reading."""

from __future__ import annotations

import re

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import CODE_REQUEST_LIMIT, CONTROL_REQUEST_LIMIT
from lambdad.invoke.payloads import EVENT_LIMIT, check_size

#: The largest body each operation takes; every other route takes CONTROL_REQUEST_LIMIT.
#: Keys are handler names (``create_function`` serves CreateFunction).
_BODY_LIMITS = {
    "create_function": CODE_REQUEST_LIMIT,
    "update_function_code": CODE_REQUEST_LIMIT,
    "publish_layer_version": CODE_REQUEST_LIMIT,
    "invoke_async": EVENT_LIMIT,
}
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
    if name == "invoke":  # the limit (and AWS's message) depends on the invocation type
        check_size(declared, request.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
        return
    limit = _BODY_LIMITS.get(name, CONTROL_REQUEST_LIMIT)
    if declared > limit:
        operation = _camel(name)
        raise errors.RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )


def _camel(name: str) -> str:
    return re.sub(r"(?:^|_)([a-z0-9])", lambda m: m.group(1).upper(), name)
