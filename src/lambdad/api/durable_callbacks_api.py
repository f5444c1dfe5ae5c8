"""SendDurableExecutionCallbackSuccess / Failure / Heartbeat
(``/2025-12-01/durable-execution-callbacks/{CallbackId}/...``, docs/durable-functions.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from lambdad.api.durable_api import error_body
from lambdad.api.lambda_api import DURABLE, reply, scope_of
from lambdad.api.wire.decode import handles, read_up_to
from lambdad.control import durable_callbacks
from lambdad.control.durable import Doc
from lambdad.control.durable_requests import CallbackRequest
from lambdad.control.validation import validation_error

routes = web.RouteTableDef()

#: What a request does to its callback: (execution, operations, operation id, now) -> events.
Change = Callable[[Doc, dict[str, Any], str, float], list[durable_callbacks.Event]]

#: The id may hold ``/`` (base64), percent-encoded in its one path segment: matched whole.
_CALLBACK = "/2025-12-01/durable-execution-callbacks/{CallbackId:.+}"
#: How much of a body is read before it is refused (AWS's request limit is 6 MB).
BODY_LIMIT = 6 * 1024 * 1024


async def _settle(request: web.Request, callback_id: str, change: Change) -> web.Response:
    """Apply ``change`` to the callback ``callback_id`` names; AWS's empty answer."""
    function, name, op_id = durable_callbacks.parse_id(callback_id)
    key = scope_of(request).key(function, name)
    await request.app[DURABLE].settle(key, lambda doc, ops, now: change(doc, ops, op_id, now))
    return reply({})


@routes.post(_CALLBACK + "/succeed")
@handles("SendDurableExecutionCallbackSuccess", CallbackRequest)
async def succeed(request: web.Request, req: CallbackRequest) -> web.Response:
    body = await read_up_to(request, BODY_LIMIT)
    if len(body) > durable_callbacks.RESULT_LIMIT:
        raise validation_error(
            [
                "Value at 'result' failed to satisfy constraint: Member must have length "
                f"less than or equal to {durable_callbacks.RESULT_LIMIT}"
            ]
        )
    result = body.decode("utf-8", "replace") if body else None
    return await _settle(
        request,
        req.callback_id,
        lambda doc, ops, op_id, now: durable_callbacks.succeed(doc, ops, op_id, result, now),
    )


@routes.post(_CALLBACK + "/fail")
@handles("SendDurableExecutionCallbackFailure", CallbackRequest)
async def fail(request: web.Request, req: CallbackRequest) -> web.Response:
    error = await error_body(request) or {}
    return await _settle(
        request,
        req.callback_id,
        lambda doc, ops, op_id, now: durable_callbacks.fail(doc, ops, op_id, error, now),
    )


@routes.post(_CALLBACK + "/heartbeat")
@handles("SendDurableExecutionCallbackHeartbeat", CallbackRequest)
async def heartbeat(request: web.Request, req: CallbackRequest) -> web.Response:
    return await _settle(request, req.callback_id, durable_callbacks.heartbeat)
