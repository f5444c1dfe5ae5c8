"""The Extensions API (2020-01-01) and Telemetry API (2022-07-01) over HTTP.

The Runtime API server (``rapi.py``) hands every request under ``PREFIXES`` to ``handle``, with
the environment its port names; the environment's ``extensions`` and ``telemetry`` answer. The
headers, bodies and errors are RAPID's (``rapi/handler``, ``rapi/middleware``): every refusal is
``{"errorMessage","errorType"}`` with 403 (400 ``ValidationError`` for a bad subscription).
The legacy Logs API (``PUT /2020-08-15/logs``, ``logs_api.py``) answers as AWS does: ``200
"OK"``, or 400 ``Logs.ValidationError`` for a bad subscription.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from lambdad.runtime import logs_api
from lambdad.runtime.extensions import ExtensionGone
from lambdad.runtime.http11 import Request, Response, error_response
from lambdad.runtime.replies import RuntimeApiError

if TYPE_CHECKING:
    from lambdad.runtime.channel import Tenant

EXTENSION = "/2020-01-01/extension/"
TELEMETRY = "/2022-07-01/telemetry"
LOGS = "/2020-08-15/logs"
PREFIXES = (EXTENSION, TELEMETRY, LOGS)
ID_HEADER = "Lambda-Extension-Identifier"


def _identifier(request: Request) -> str:
    value = request.header(ID_HEADER)
    if not value:
        raise RuntimeApiError(
            403,
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        )
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise RuntimeApiError(
            403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"
        ) from None


def _error_type(request: Request) -> str:
    name = "Lambda-Extension-Function-Error-Type"
    value = request.header(name)
    if not value:
        raise RuntimeApiError(403, "Extension.MissingHeader", f"{name} not found")
    return value


async def handle(env: Tenant, request: Request) -> Response:
    path, method = request.path.rstrip("/"), request.method
    try:
        if path.startswith(EXTENSION):
            return await _extension(env, request, path[len(EXTENSION) :], method)
        if path == TELEMETRY and method == "PUT":
            return await _subscribe(env, request)
        if path == LOGS and method == "PUT":
            return await _subscribe_logs(env, request)
    except RuntimeApiError as refusal:
        return error_response(refusal.status, refusal.error_type, refusal.message)
    return error_response(404, "InvalidRequest", "Not found")


async def _extension(env: Tenant, request: Request, action: str, method: str) -> Response:
    extensions = env.extensions
    if action == "register" and method == "POST":
        ext, body = extensions.register(
            request.header("Lambda-Extension-Name"),
            request.body or b"",
            request.header("Lambda-Extension-Accept-Feature"),
        )
        return Response(200, body, ((ID_HEADER, ext.id),))
    if action == "event/next" and method == "GET":
        return await _next(env, _identifier(request))
    if action in ("init/error", "exit/error") and method == "POST":
        ext_id = _identifier(request)
        error_type = _error_type(request)
        if action == "init/error":
            extensions.init_error(ext_id, error_type)
        else:
            extensions.exit_error(ext_id, error_type)
        return Response(202, b'{"status":"OK"}\n')
    return error_response(404, "InvalidRequest", "Not found")


async def _next(env: Tenant, ext_id: str) -> Response:
    try:
        event = await env.extensions.next(ext_id)
    except ExtensionGone:
        # The environment went away while the extension waited; it is being killed.
        return error_response(500, "InternalServerError", "Internal Server Error")
    return Response(200, event, (("Lambda-Extension-Event-Identifier", str(uuid.uuid4())),))


async def _subscribe(env: Tenant, request: Request) -> Response:
    ext = env.extensions.find(_identifier(request))
    env.telemetry.subscribe(ext.name, request.body or b"")
    return Response(200, b'"OK"')


async def _subscribe_logs(env: Tenant, request: Request) -> Response:
    ext = env.extensions.find(_identifier(request))
    logs_api.subscribe(env.telemetry, ext.name, request.body or b"")
    return Response(200, b'"OK"')
