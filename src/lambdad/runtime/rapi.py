"""The Runtime API server (2018-06-01): the only place that speaks HTTP to runtimes.

The Extensions and Telemetry APIs share its address; their routes are in ``extensions_api.py``.

Every environment gets its own listening socket (on loopback, or on the cells' gateway where
cells have networks of their own: ``Reach``), so the port a request arrives on says which
environment is asking, and no environment can take another's invocations.
All sockets are served by one small HTTP/1.1 server (``http11.py``).
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable

from lambdad.runtime import extensions_api, http11
from lambdad.runtime.body_stream import BodyBroken, BodyStream
from lambdad.runtime.channel import RuntimeSide, Tenant
from lambdad.runtime.http11 import Request, Response, error_response
from lambdad.runtime.invocation import MAX_RUNTIME_PAYLOAD, MAX_STREAMED_RESPONSE
from lambdad.runtime.replies import RuntimeApiError
from lambdad.runtime.sandbox.base import Reach

PREFIX = "/2018-06-01/runtime/"
_OK = b'{"status":"OK"}\n'
_TRUSTED = "trusted"


class RapiState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def _accepted() -> Response:
    return Response(202, _OK)


def _streamed(headers: dict[str, str]) -> bool:
    """A ``/response`` in streaming mode is read as it arrives (``BodyStream``)."""
    mode = headers.get("lambda-runtime-function-response-mode")
    return mode is not None and mode.lower() == "streaming"


async def _whole(stream: BodyStream) -> bytes | None:
    """A streamed body read whole (a streaming-mode header on another call); None if over
    the Runtime API's cap."""
    chunks: list[bytes] = []
    while (chunk := await stream.read()) is not None:
        if stream.size <= MAX_RUNTIME_PAYLOAD:
            chunks.append(chunk)
    return b"".join(chunks) if stream.size <= MAX_RUNTIME_PAYLOAD else None


class RuntimeApiServer:
    def __init__(self, reach: Callable[[], Reach] = Reach) -> None:
        #: Where environments' sockets are bound, asked at each ``attach`` (the sandbox knows
        #: once it is open).
        self._reach = reach
        self.state = RapiState.NEW
        self._server: http11.Server | None = None
        self._envs: dict[int, Tenant] = {}

    async def start(self) -> None:
        if self.state is not RapiState.NEW:
            raise RuntimeError("Runtime API server already started")
        self._server = http11.Server(self._handle, MAX_RUNTIME_PAYLOAD, _streamed)
        self.state = RapiState.RUNNING

    async def close(self) -> None:
        if self.state is RapiState.CLOSED:
            return
        self.state = RapiState.CLOSED
        if self._server is not None:
            await self._server.close()
        self._envs.clear()

    async def attach(self, env: Tenant) -> int:
        """Open a socket for ``env``; returns its port."""
        if self.state is not RapiState.RUNNING or self._server is None:
            raise RuntimeError("Runtime API server is not running")
        reach = self._reach()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reach.mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, reach.mark)
        sock.bind((reach.api_host, 0))
        sock.listen(16)
        sock.setblocking(False)
        port = int(sock.getsockname()[1])
        self._envs[port] = env
        await self._server.listen(sock)
        return port

    async def detach(self, port: int) -> None:
        self._envs.pop(port, None)
        if self._server is not None:
            await self._server.unlisten(port)

    async def _handle(self, request: Request) -> Response:
        env = self._envs.get(request.local[1])
        if env is None:
            return error_response(500, "InternalServerError", "Internal Server Error")
        # A connection's verdict is kept after its first request: no coroutine for the rest.
        trusted = request.connection.get(_TRUSTED)
        if trusted is None:
            trusted = await self._trusted(request, env)
        if not trusted:
            return error_response(500, "InternalServerError", "Internal Server Error")
        path = request.path
        if path.startswith(extensions_api.PREFIXES):
            return await extensions_api.handle(env, request)
        if not path.startswith(PREFIX):
            if path == "/ping" or path == "/2018-06-01/ping":
                return Response(200, b"pong", content_type="text/plain; charset=utf-8")
            return error_response(404, "InvalidRequest", "Not found")
        parts = path[len(PREFIX) :].split("/")
        try:
            if parts == ["invocation", "next"] and request.method == "GET":
                return await self._next(env.channel)
            if len(parts) == 3 and parts[0] == "invocation" and request.method == "POST":
                if request.stream is not None:
                    if parts[2] == "response":
                        return await self._post_stream(env.channel, request.stream, parts[1])
                    try:
                        request.body = await _whole(request.stream)
                    except BodyBroken:
                        return error_response(400, "InvalidRequest", "Bad Request")
                    request.size = request.stream.size
                return self._post_invocation(env.channel, request, parts[1], parts[2])
            if parts == ["init", "error"] and request.method == "POST":
                env.channel.init_error(
                    request.body or b"",
                    request.header("Content-Type"),
                    request.headers.get("lambda-runtime-function-error-type"),
                )
                return _accepted()
        except RuntimeApiError as exc:
            return error_response(exc.status, exc.error_type, exc.message)
        return error_response(404, "InvalidRequest", "Not found")

    async def _trusted(self, request: Request, env: Tenant) -> bool:
        """Whether the connection is the environment's own (checked once per connection)."""
        verdict = request.connection.get(_TRUSTED)
        if verdict is None:
            verdict = bool(request.peer[1]) and await env.owns_connection(
                request.local, request.peer
            )
            request.connection[_TRUSTED] = verdict
        return bool(verdict)

    async def _next(self, channel: RuntimeSide) -> Response:
        delivery = await channel.next()
        invocation = delivery.invocation
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(delivery.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", invocation.invoked_arn),
        ]
        if invocation.trace_id:
            headers.append(("Lambda-Runtime-Trace-Id", invocation.trace_id))
        if invocation.client_context:
            headers.append(("Lambda-Runtime-Client-Context", invocation.client_context))
        if invocation.cognito_identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", invocation.cognito_identity))
        if invocation.tenant_id:
            headers.append(("Lambda-Runtime-Aws-Tenant-Id", invocation.tenant_id))
        return Response(200, invocation.payload, tuple(headers), invocation.content_type)

    async def _post_stream(
        self, channel: RuntimeSide, body: BodyStream, request_id: str
    ) -> Response:
        """A streamed ``/response``: the invocation reads the body as it arrives; the runtime is
        answered once it has sent all of it (413 when the invocation refused it as too large)."""
        try:
            channel.respond_stream(request_id, body)
        except RuntimeApiError:
            body.discard()
            await body.ended()
            raise
        await body.settled()  # the invocation has decided (e.g. too large) …
        await body.ended()  # … and the runtime has sent it all
        if body.too_large:
            return error_response(
                413,
                "RequestEntityTooLarge",
                f"Exceeded maximum allowed payload size ({MAX_STREAMED_RESPONSE} bytes).",
            )
        return _accepted()

    def _post_invocation(
        self, channel: RuntimeSide, request: Request, request_id: str, action: str
    ) -> Response:
        if action == "response":
            mode = request.headers.get("lambda-runtime-function-response-mode")
            if mode is not None and mode.lower() != "streaming":
                return error_response(
                    400, "InvalidFunctionResponseMode", "Invalid function response mode"
                )
            if request.body is None:
                channel.respond_too_large(request_id, request.size)
                return error_response(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RUNTIME_PAYLOAD} bytes).",
                )
            channel.respond(request_id, request.body, request.header("Content-Type"))
            return _accepted()
        if action == "error":
            body = request.body or (
                b'{"errorMessage":"Invalid error body","errorType":"Runtime.Unknown"}'
            )
            channel.error(
                request_id,
                body,
                request.header("Content-Type"),
                request.headers.get("lambda-runtime-function-error-type"),
            )
            return _accepted()
        return error_response(404, "InvalidRequest", "Not found")
