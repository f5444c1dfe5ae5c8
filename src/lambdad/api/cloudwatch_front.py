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
from lambdad.api.wire.decode import OTHER_SERVICES, decode_document, json_document, read_body
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

        @target_front.target(CLOUDWATCH_PREFIX, SERVICE, name, kind, reader=_read_json)
        async def json_answer(request: web.Request, decoded: T) -> web.Response:
            request[CLOUDWATCH] = "json"
            return _json(await handler(request, decoded))

        return handler

    return register


async def _read_json(request: web.Request, name: str, kind: type[Any]) -> Any:
    """A JSON 1.0 request of ``name``, read as a CBOR one is."""
    document = json_document(model_operation(name, SERVICE), await read_body(request, name))
    return _checked(request, name, kind, document)


def _checked(request: web.Request, name: str, kind: type[T], document: dict[str, Any]) -> T:
    """``document`` decoded into ``kind`` against the model, a missing required parameter
    first answered as CloudWatch does: ``MissingParameter`` "The parameter X is required."
    (one line each, paths as its query protocol names them: ``MetricData.member.1.MetricName``)."""
    missing = missing_parameters(model_operation(name, SERVICE).shape, document, "")
    if missing:
        raise errors.MissingRequiredParameterException("\n".join(missing[:_MISSING_SHOWN]))
    return decode_document(request, name, kind, SERVICE, document)


#: At most this many missing parameters are named in one answer.
_MISSING_SHOWN = 100


def missing_parameters(shape: Any, value: Any, prefix: str) -> list[str]:
    """Every required member missing from ``value`` (of structure ``shape``), nested
    structures and lists of them included; values of the wrong type are left to the decoder."""
    if shape is None or not isinstance(value, dict):
        return []
    found: list[str] = []
    required = set(shape.required_members)
    for member, member_shape in shape.members.items():
        item = value.get(member)
        path = f"{prefix}{member}"
        if item is None:
            if member in required:
                found.append(f"The parameter {path} is required.")
            continue
        if member_shape.type_name == "structure":
            found += missing_parameters(member_shape, item, f"{path}.")
        elif member_shape.type_name == "list" and isinstance(item, list):
            inner = member_shape.member
            if inner.type_name == "structure":
                for index, element in enumerate(item, 1):
                    found += missing_parameters(inner, element, f"{path}.member.{index}.")
        if len(found) >= _MISSING_SHOWN:
            break
    return found


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
    decoded = _checked(request, name, entry.kind, document)
    answer = await entry.handler(request, decoded)
    return web.Response(
        body=cbor.write(answer),
        headers={"Content-Type": cbor.CBOR_TYPE, "smithy-protocol": "rpc-v2-cbor"},
    )
