"""The front door of CloudWatch's metrics API (botocore's ``cloudwatch`` model).

The current botocore speaks Smithy RPC v2 CBOR to it: ``POST
/service/GraniteServiceVersion20100801/operation/<Operation>`` with ``smithy-protocol:
rpc-v2-cbor`` and a CBOR body. Older botocore and other SDKs speak JSON 1.0: ``POST /`` with
``X-Amz-Target: GraniteServiceVersion20100801.<Operation>`` (routed by
``lambdad.api.target_front``). Either way the body is decoded once against the model into the
operation's Struct (``lambdad.api.wire``) and the handler registered with :func:`operation`
answers a plain document, written back in the request's protocol (timestamps as CBOR tag 1 or
JSON epoch seconds). Errors are CloudWatch's (``api/errors.render_cloudwatch``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from lambdad import errors
from lambdad.api import target_front
from lambdad.api.errors import CLOUDWATCH, CLOUDWATCH_PREFIX, JSON10_TYPE
from lambdad.api.wire import cbor
from lambdad.api.wire.decode import OTHER_SERVICES, decode_document, read_body
from lambdad.api.wire.model import operation as model_operation

T = TypeVar("T")
SERVICE = "cloudwatch"
Answer = dict[str, Any]
Handler = Callable[[web.Request, Any], Awaitable[Answer]]

routes = web.RouteTableDef()


@dataclasses.dataclass(frozen=True, slots=True)
class _Operation:
    kind: type[Any]
    handler: Handler


_OPERATIONS: dict[str, _Operation] = {}


def operation(
    name: str, kind: type[T]
) -> Callable[[Callable[[web.Request, T], Awaitable[Answer]]], Handler]:
    """Register the handler of CloudWatch's operation ``name`` in both protocols; it is called
    with the body decoded into ``kind`` and answers the output document."""
    model_operation(name, SERVICE)  # an unknown name fails at import

    def register(handler: Callable[[web.Request, T], Awaitable[Answer]]) -> Handler:
        _OPERATIONS[name] = _Operation(kind, handler)
        OTHER_SERVICES.add((SERVICE, name))

        @target_front.target(CLOUDWATCH_PREFIX, SERVICE, name, kind)
        async def json_answer(request: web.Request, decoded: T) -> web.Response:
            request[CLOUDWATCH] = "json"
            return _json(await handler(request, decoded))

        return handler

    return register


def operations() -> dict[str, type[Any]]:
    """Every operation served, with its request type (for tests)."""
    return {name: op.kind for name, op in _OPERATIONS.items()}


def _timestamps(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _json(document: Answer) -> web.Response:
    return web.Response(
        body=json.dumps(document, default=_timestamps).encode(),
        headers={"Content-Type": JSON10_TYPE},
    )


@routes.post(f"/service/{CLOUDWATCH_PREFIX}/operation/{{Operation}}")
async def cbor_operation(request: web.Request) -> web.Response:
    request[CLOUDWATCH] = "cbor"
    name = request.match_info["Operation"]
    entry = _OPERATIONS.get(name)
    if entry is None:
        raise errors.UnknownOperationException(f"Unknown operation {name[:256]}")
    document = cbor.read(await read_body(request, name))
    decoded = decode_document(request, name, entry.kind, SERVICE, document)
    answer = await entry.handler(request, decoded)
    return web.Response(
        body=cbor.write(answer),
        headers={"Content-Type": cbor.CBOR_TYPE, "smithy-protocol": "rpc-v2-cbor"},
    )
