"""Reading a streamed reply: from the runtime's ``/response`` body to the caller, as it comes.

The environment calls ``read_reply`` once the runtime has begun a streamed ``/response``. Each
chunk goes on to the caller's ``ResponseSink`` at once; a caller without a sink (a plain
``Invoke`` of a streaming function) gets the response gathered, as Lambda buffers it, up to
the buffered limit. The reply ends as Lambda ends it:

- the body's end: success, unless the trailers ``Lambda-Runtime-Function-Error-Type`` /
  ``Lambda-Runtime-Function-Error-Body`` (base64 of the error JSON) report a function error;
- more than ``MAX_STREAMED_RESPONSE`` bytes (``MAX_RESPONSE_PAYLOAD`` gathered):
  ``Function.ResponseSizeTooLarge``; the rest of the body is dropped and the runtime is
  answered 413;
- the deadline: ``TimeoutError`` (the environment's timeout path);
- the runtime's death or a lost connection: ``Crashed``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time

from lambdad.runtime.body_stream import BodyBroken, BodyStream
from lambdad.runtime.invocation import (
    MAX_RESPONSE_PAYLOAD,
    MAX_STREAMED_RESPONSE,
    error_body,
    runtime_error_type,
)
from lambdad.runtime.replies import Crashed, Reply
from lambdad.runtime.streaming import ResponseSink

ERROR_TYPE = "lambda-runtime-function-error-type"
ERROR_BODY = "lambda-runtime-function-error-body"
TOO_LARGE = "Function.ResponseSizeTooLarge"
TRUNCATED = "Runtime.TruncatedResponse"


async def read_reply(
    body: BodyStream, sink: ResponseSink | None, deadline: float, limit: int | None = None
) -> Reply:
    """Read ``body`` to its end (``deadline`` on ``time.perf_counter``'s clock)."""
    if limit is None:
        limit = MAX_STREAMED_RESPONSE if sink is not None else MAX_RESPONSE_PAYLOAD
    gathered: list[bytes] = []
    size = 0
    if sink is not None:
        sink.begin(body.content_type)
    try:
        async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
            while (chunk := await body.read()) is not None:
                size += len(chunk)
                if size > limit:
                    body.too_large = True
                    return _too_large(body.size, limit, sink is not None)
                if sink is not None:
                    await sink.put(chunk)
                else:
                    gathered.append(chunk)
    except BodyBroken as exc:
        if isinstance(exc.cause, Crashed):
            raise exc.cause from None
        raise Crashed("HTTP request detected as truncated", TRUNCATED) from exc
    finally:
        body.discard()
        if sink is not None:
            sink.end()
    return _ended(body, b"".join(gathered))


def _ended(body: BodyStream, payload: bytes) -> Reply:
    """The reply of a body read to its end: an error when the trailers report one."""
    error_type = body.trailers.get(ERROR_TYPE)
    raw = body.trailers.get(ERROR_BODY)
    if not error_type and raw is None:
        return Reply(True, payload, body.content_type or "application/octet-stream", stream=body)
    document = b""
    if raw is not None:
        try:
            document = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            document = raw.encode("utf-8", "replace")
    kind = runtime_error_type(document, error_type) or "Unhandled"
    if not document:
        document = error_body(kind, "")
    return Reply(False, document, "application/json", kind, stream=body)


def _too_large(size: int, limit: int, streaming: bool) -> Reply:
    if streaming:
        message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
    else:
        message = (
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({limit} bytes)."
        )
    return Reply(False, error_body(TOO_LARGE, message), "application/json", TOO_LARGE)
