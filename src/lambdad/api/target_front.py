"""The front door of the JSON 1.1 services lambdad serves on its port (EventBridge's ``events``).

Their clients send ``POST /`` with ``X-Amz-Target: <prefix>.<Operation>`` (``AWSEvents.PutRule``)
and a JSON body. This route reads the target, decodes the body once against that service's
botocore model into the operation's Struct (``lambdad.api.wire``, as for Lambda's routes) and
calls the handler registered with :func:`target`. From the moment the target is read, errors
are rendered as JSON 1.1 gives them (``{"__type": ..., "message": ...}``, ``api/errors.py``).
A ``POST /`` without ``X-Amz-Target`` is not one of these and keeps Lambda's
``UnknownOperationException``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from lambdad import errors
from lambdad.api.errors import JSON11, JSON11_TYPE
from lambdad.api.wire.decode import OTHER_SERVICES, decode
from lambdad.api.wire.model import operation

T = TypeVar("T")
TargetHandler = Callable[[web.Request, Any], Awaitable[web.Response]]
#: Reads a target's request value itself: (request, operation, request type) -> the value.
Reader = Callable[[web.Request, str, type[Any]], Awaitable[Any]]

routes = web.RouteTableDef()


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    service: str
    name: str
    kind: type[Any]
    handler: TargetHandler
    reader: Reader | None


_TARGETS: dict[str, _Target] = {}


def target(
    prefix: str, service: str, name: str, kind: type[T], reader: Reader | None = None
) -> Callable[[Callable[[web.Request, T], Awaitable[web.Response]]], TargetHandler]:
    """Register a handler of ``<prefix>.<name>`` (operation ``name`` of the ``service``
    model); it is called with the body decoded into ``kind`` (by ``reader``, when the service
    checks something before the model's decoding)."""
    operation(name, service)  # an unknown name fails at import, not on the first request

    def register(handler: Callable[[web.Request, T], Awaitable[web.Response]]) -> TargetHandler:
        _TARGETS[f"{prefix}.{name}"] = _Target(service, name, kind, handler, reader)
        OTHER_SERVICES.add((service, name))
        return handler

    return register


def targets() -> dict[str, tuple[str, str, type[Any]]]:
    """Every ``X-Amz-Target`` served, with its (service, operation, request type) (for
    tests)."""
    return {key: (t.service, t.name, t.kind) for key, t in _TARGETS.items()}


def answer(data: dict[str, Any] | None = None) -> web.Response:
    """A JSON 1.1 success (``{}`` for an operation without output)."""
    return web.Response(body=json.dumps(data or {}).encode(), headers={"Content-Type": JSON11_TYPE})


@routes.post("/")
async def json_target(request: web.Request) -> web.Response:
    name = request.headers.get("X-Amz-Target")
    if name is None:
        raise errors.UnknownOperationException("Unknown operation")
    request[JSON11] = True
    entry = _TARGETS.get(name)
    if entry is None:
        raise errors.UnknownOperationException(f"Unknown operation {name[:256]}")
    if entry.reader is not None:
        decoded = await entry.reader(request, entry.name, entry.kind)
    else:
        decoded = await decode(request, entry.name, entry.kind, entry.service)
    return await entry.handler(request, decoded)
