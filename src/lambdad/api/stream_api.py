"""``InvokeWithResponseStream``: an invocation's response as ``PayloadChunk`` events as it comes.

The request is Invoke's (decoded against the model like every operation). What fails before
the response starts (not found, throttled, a bad qualifier or payload) is a normal AWS error;
after that the answer is 200 with ``X-Amz-Executed-Version`` and an
``application/vnd.amazon.eventstream`` body (``eventstream.py``): a ``PayloadChunk`` per chunk
the runtime streams (a buffered function's whole response is one), then ``InvokeComplete``
with ``ErrorCode`` / ``ErrorDetails`` when the function failed or timed out, and ``LogResult``
for ``LogType=Tail``. A client that goes away mid-stream does not disturb the function.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import msgspec
from aiohttp import web

from lambdad.api import eventstream
from lambdad.api.lambda_api import INVOKER, InvokeParameters, invoke_request, scope_of
from lambdad.api.wire.decode import handles
from lambdad.invoke.service import Accepted, InvocationType, StreamedInvocation
from lambdad.runtime.invocation import Outcome

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CONTENT_TYPE = "application/vnd.amazon.eventstream"


@routes.post("/2021-11-15/functions/{FunctionName}/response-streaming-invocations")
@handles("InvokeWithResponseStream", InvokeParameters)
async def invoke_with_response_stream(
    request: web.Request, req: InvokeParameters
) -> web.StreamResponse:
    kind = InvocationType(req.invocation_type or "RequestResponse")
    invocation = await invoke_request(request, req, kind)
    tail = invocation.tail
    started = await request.app[INVOKER].invoke_streaming(scope_of(request), invocation)
    if isinstance(started, Accepted):
        return web.Response(status=204, headers={"x-amzn-RequestId": started.request_id})
    response = web.StreamResponse(
        status=200,
        headers={
            "x-amzn-RequestId": started.request_id,
            "X-Amz-Executed-Version": started.executed_version,
            "Content-Type": CONTENT_TYPE,
        },
    )
    try:
        await response.prepare(request)
        await _relay(response, started, tail)
    except ConnectionError:
        started.abandon()  # the client went away; the function runs on
        log.debug("client went away during a streamed invocation %s", started.request_id)
    except asyncio.CancelledError:
        started.abandon()
        raise
    return response


async def _relay(response: web.StreamResponse, started: StreamedInvocation, tail: bool) -> None:
    """Write the chunks as they come, then how the invocation ended."""
    async for chunk in started:
        await response.write(eventstream.payload_chunk(chunk))
    try:
        outcome = await started.outcome()
    except Exception:
        log.exception("streamed invocation %s failed", started.request_id)
        await response.write(
            eventstream.invoke_complete("ServiceException", "An internal error occurred.")
        )
    else:
        if not started.streamed and outcome.payload:
            await response.write(eventstream.payload_chunk(outcome.payload))
        await response.write(_complete(outcome, tail))
    await response.write_eof()


class _ErrorMessage(msgspec.Struct):
    errorMessage: object = None


_error_message = msgspec.json.Decoder(_ErrorMessage)


def _complete(outcome: Outcome, tail: bool) -> bytes:
    """``InvokeComplete``: the function's error type and message, and the log tail if asked."""
    code = details = None
    if outcome.function_error:
        code = outcome.error_type or "Unhandled"
        details = _details(outcome.payload)
    log_result = base64.b64encode(outcome.log.encode()).decode() if tail else None
    return eventstream.invoke_complete(code, details, log_result)


def _details(payload: bytes) -> str:
    """An error body's ``errorMessage``; the whole body when it has none."""
    try:
        message = _error_message.decode(payload).errorMessage
    except msgspec.DecodeError:
        message = None
    if isinstance(message, str):
        return message
    return payload.decode("utf-8", "replace")
