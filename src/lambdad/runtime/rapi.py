"""The Runtime API server (2018-06-01): the only place that speaks HTTP to runtimes.

The Extensions and Telemetry APIs share its address; their routes are in ``extensions_api.py``.

Every environment gets its own listening socket on loopback, so the port a request arrives
on says which environment is asking, and no environment can take another's invocations.
All sockets are served by one low-level aiohttp server.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import weakref
from typing import TYPE_CHECKING

from aiohttp import web

from lambdad.runtime import extensions_api
from lambdad.runtime.invocation import MAX_RUNTIME_PAYLOAD
from lambdad.runtime.replies import RuntimeApiError, json_error_body

if TYPE_CHECKING:
    from lambdad.runtime.environment import Environment

PREFIX = "/2018-06-01/runtime/"
_OK = b'{"status":"OK"}\n'
_JSON = "application/json"


class RapiState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def _json_error(status: int, error_type: str, message: str) -> web.Response:
    body = json_error_body(error_type, message)
    return web.Response(status=status, body=body, content_type=_JSON)


def _accepted() -> web.Response:
    return web.Response(status=202, body=_OK, content_type=_JSON)


class RuntimeApiServer:
    def __init__(self) -> None:
        self.state = RapiState.NEW
        self._server: web.Server | None = None
        self._runner: web.ServerRunner | None = None
        self._sites: dict[int, web.SockSite] = {}
        self._envs: dict[int, Environment] = {}
        self._verified: weakref.WeakKeyDictionary[asyncio.BaseTransport, bool] = (
            weakref.WeakKeyDictionary()
        )

    async def start(self) -> None:
        if self.state is not RapiState.NEW:
            raise RuntimeError("Runtime API server already started")
        self._server = web.Server(self._handle, access_log=None, max_field_size=2 * 1024 * 1024)
        self._runner = web.ServerRunner(self._server, handle_signals=False)
        await self._runner.setup()
        self.state = RapiState.RUNNING

    async def close(self) -> None:
        if self.state is RapiState.CLOSED:
            return
        self.state = RapiState.CLOSED
        if self._runner is not None:
            await self._runner.cleanup()
        self._sites.clear()
        self._envs.clear()

    async def attach(self, env: Environment) -> int:
        """Open a socket for ``env``; returns its port."""
        if self.state is not RapiState.RUNNING or self._runner is None:
            raise RuntimeError("Runtime API server is not running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock, shutdown_timeout=0.0)
        self._sites[port] = site
        self._envs[port] = env
        await site.start()
        return port

    async def detach(self, port: int) -> None:
        self._envs.pop(port, None)
        site = self._sites.pop(port, None)
        if site is not None:
            await site.stop()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        env = self._envs.get(sockname[1]) if sockname else None
        if env is None or sockname is None or not await self._trusted(request, env, sockname):
            return _json_error(500, "InternalServerError", "Internal Server Error")
        path = request.path
        if path.startswith(extensions_api.PREFIXES):
            return await extensions_api.handle(env, request)
        if not path.startswith(PREFIX):
            if path == "/ping" or path == "/2018-06-01/ping":
                return web.Response(text="pong")
            return _json_error(404, "InvalidRequest", "Not found")
        parts = path[len(PREFIX) :].split("/")
        try:
            if parts == ["invocation", "next"] and request.method == "GET":
                return await self._next(env)
            if len(parts) == 3 and parts[0] == "invocation" and request.method == "POST":
                return await self._post_invocation(env, request, parts[1], parts[2])
            if parts == ["init", "error"] and request.method == "POST":
                body = (await _read_capped(request))[0] or b""
                env.rapi_init_error(
                    body,
                    request.headers.get("Content-Type", ""),
                    request.headers.get("Lambda-Runtime-Function-Error-Type"),
                )
                return _accepted()
        except RuntimeApiError as exc:
            return _json_error(exc.status, exc.error_type, exc.message)
        return _json_error(404, "InvalidRequest", "Not found")

    async def _trusted(
        self, request: web.BaseRequest, env: Environment, sockname: tuple[str, int]
    ) -> bool:
        """Whether the connection is the environment's own (checked once per connection)."""
        transport = request.transport
        if transport is None:
            return False
        verdict = self._verified.get(transport)
        if verdict is None:
            peer = transport.get_extra_info("peername")
            verdict = bool(peer) and await env.owns_connection(
                (sockname[0], sockname[1]), (peer[0], peer[1])
            )
            self._verified[transport] = verdict
        return verdict

    async def _next(self, env: Environment) -> web.StreamResponse:
        invocation = await env.rapi_next()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(env.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_arn,
        }
        if invocation.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        if invocation.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = invocation.cognito_identity
        if invocation.tenant_id:
            headers["Lambda-Runtime-Aws-Tenant-Id"] = invocation.tenant_id
        headers["Content-Type"] = invocation.content_type
        return web.Response(body=invocation.payload, headers=headers)

    async def _post_invocation(
        self, env: Environment, request: web.BaseRequest, request_id: str, action: str
    ) -> web.StreamResponse:
        if action == "response":
            mode = request.headers.get("Lambda-Runtime-Function-Response-Mode")
            if mode is not None and mode.lower() != "streaming":
                return _json_error(
                    400, "InvalidFunctionResponseMode", "Invalid function response mode"
                )
            body, size = await _read_capped(request)
            if body is None:
                env.rapi_response_too_large(request_id, size)
                return _json_error(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RUNTIME_PAYLOAD} bytes).",
                )
            env.rapi_response(request_id, body, request.headers.get("Content-Type", ""))
            return _accepted()
        if action == "error":
            body, _ = await _read_capped(request)
            body = body or b'{"errorMessage":"Invalid error body","errorType":"Runtime.Unknown"}'
            env.rapi_error(
                request_id,
                body,
                request.headers.get("Content-Type", ""),
                request.headers.get("Lambda-Runtime-Function-Error-Type"),
            )
            return _accepted()
        return _json_error(404, "InvalidRequest", "Not found")


async def _read_capped(request: web.BaseRequest) -> tuple[bytes | None, int]:
    """The body if it fits the Runtime API's limit, else (None, its full size)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size <= MAX_RUNTIME_PAYLOAD:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > MAX_RUNTIME_PAYLOAD:
        return None, size
    return b"".join(chunks), size
