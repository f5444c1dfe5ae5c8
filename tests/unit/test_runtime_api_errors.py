"""Unit tests of the Runtime API's error answers: every refusal has RAPID's one body shape.

RAPID renders every error of the Runtime, Extensions and Telemetry APIs with
``rendering.RenderJSON`` (Go's json.Encoder): ``{"errorMessage":…,"errorType":…}`` followed
by a newline, with ``Content-Type: application/json`` (wire spec §1.1, §1.5).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad.runtime import http11
from lambdad.runtime.channel import ChannelHooks, InvocationChannel, Tenant
from lambdad.runtime.extensions import Extensions, FunctionInfo
from lambdad.runtime.http11 import Request, Response
from lambdad.runtime.invocation import MAX_RUNTIME_PAYLOAD, Invocation
from lambdad.runtime.rapi import RuntimeApiServer
from lambdad.runtime.telemetry import Telemetry

Answer = tuple[int, bytes, str]
_SHAPE = re.compile(rb'^\{"errorMessage":"[^"]*","errorType":"[^"]*"\}\n$')


class _Environment:
    """What the server reaches of an environment; ``trusted`` decides who may connect."""

    def __init__(self, trusted: bool = True) -> None:
        self.channel = InvocationChannel(ChannelHooks())
        self.extensions = Extensions(FunctionInfo("f", "$LATEST", "h", "0"), _ignore, _ignore)
        self.telemetry = Telemetry(False)
        self.trusted = trusted

    async def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        return self.trusted


def _ignore(*_args: Any) -> None:
    return None


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        return status, headers, body
    finally:
        writer.close()


def _request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


Scenario = Callable[[RuntimeApiServer, int, _Environment], Awaitable[Answer]]


def _run(scenario: Scenario, trusted: bool = True) -> Answer:
    async def main() -> Answer:
        server = RuntimeApiServer()
        await server.start()
        env = _Environment(trusted)
        tenant: Tenant = env
        port = await server.attach(tenant)
        try:
            return await scenario(server, port, env)
        finally:
            await server.close()

    return asyncio.run(main())


async def _ask(port: int, raw: bytes) -> Answer:
    status, headers, body = await _exchange(port, raw)
    return status, body, headers.get("content-type", "")


def _assert_error(answer: Answer, status: int, error_type: str) -> dict[str, str]:
    got_status, body, content_type = answer
    assert got_status == status
    assert content_type == "application/json"
    assert _SHAPE.match(body), body
    document: dict[str, str] = json.loads(body)
    assert document["errorType"] == error_type
    return document


def test_a_reply_for_an_unknown_request_id_is_a_400_invalid_request_id() -> None:
    """RAPID answers a reply for no invocation under way 400 ``InvalidRequestID``."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        return await _ask(port, _request("POST", "/2018-06-01/runtime/invocation/x/response"))

    document = _assert_error(_run(scenario), 400, "InvalidRequestID")
    assert document["errorMessage"] == "Invalid request ID"


def test_an_init_error_outside_init_is_a_403_invalid_state_transition() -> None:
    """RAPID refuses ``/init/error`` once init is over with 403 ``InvalidStateTransition``."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        return await _ask(port, _request("POST", "/2018-06-01/runtime/init/error", b"{}"))

    document = _assert_error(_run(scenario), 403, "InvalidStateTransition")
    assert document["errorMessage"] == (
        "State transition from Ready to InitError failed for runtime. "
        "Error: State transition is not allowed"
    )


def test_a_second_response_is_a_403_and_too_large_a_response_is_a_413() -> None:
    """After a reply RAPID refuses another with 403; an oversized one gets 413
    ``RequestEntityTooLarge``: both in the one error shape."""

    async def scenario(_s: RuntimeApiServer, port: int, env: _Environment) -> Answer:
        exchange = asyncio.ensure_future(
            env.channel.exchange(Invocation("rid", b"{}", "arn"), 0, 10)
        )
        await _ask(port, _request("GET", "/2018-06-01/runtime/invocation/next"))
        path = "/2018-06-01/runtime/invocation/rid/response"
        too_large = _request("POST", path, b"x" * (MAX_RUNTIME_PAYLOAD + 1))
        _assert_error(await _ask(port, too_large), 413, "RequestEntityTooLarge")
        await exchange
        return await _ask(port, _request("POST", path, b"{}"))

    _assert_error(_run(scenario), 403, "InvalidStateTransition")


def test_unknown_paths_and_malformed_requests_get_the_same_shape() -> None:
    """A path RAPID does not route is 404 ``InvalidRequest``; bytes that are not HTTP get a 400
    in the same shape (not a bare status line)."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        _assert_error(
            await _ask(port, _request("GET", "/2018-06-01/nowhere")), 404, "InvalidRequest"
        )
        return await _ask(port, b"NOT HTTP AT ALL\r\n\r\n")

    _assert_error(_run(scenario), 400, "InvalidRequest")


def test_a_stranger_gets_a_500_internal_server_error() -> None:
    """A connection that is not the environment's own gets RAPID's 500 body."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        return await _ask(port, _request("GET", "/2018-06-01/runtime/invocation/next"))

    document = _assert_error(_run(scenario, trusted=False), 500, "InternalServerError")
    assert document["errorMessage"] == "Internal Server Error"


def test_extensions_and_telemetry_refusals_have_the_same_shape() -> None:
    """The Extensions API's 403s and the Telemetry API's 400 ``ValidationError`` are written
    like the Runtime API's errors."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        missing = _request("GET", "/2020-01-01/extension/event/next")
        _assert_error(await _ask(port, missing), 403, "Extension.MissingExtensionIdentifier")
        register = _request(
            "POST",
            "/2020-01-01/extension/register",
            b'{"events":[]}',
            "Lambda-Extension-Name: e\r\n",
        )
        status, headers, _body = await _exchange(port, register)
        assert status == 200
        ext_id = headers["lambda-extension-identifier"]
        subscribe = _request(
            "PUT",
            "/2022-07-01/telemetry",
            b"not json",
            f"Lambda-Extension-Identifier: {ext_id}\r\n",
        )
        return await _ask(port, subscribe)

    _assert_error(_run(scenario), 400, "ValidationError")


def test_a_handler_that_fails_answers_500_in_the_same_shape() -> None:
    """An unexpected failure inside the server is RAPID's 500 body, not another shape."""

    async def main() -> Answer:
        async def broken(_request: Request) -> Response:
            raise RuntimeError("boom")

        server = http11.Server(broken, 1024)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        port = await server.listen(sock)
        try:
            return await _ask(port, _request("GET", "/anything"))
        finally:
            await server.close()

    _assert_error(asyncio.run(main()), 500, "InternalServerError")


_STREAMING = "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"


def _streamed(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{_STREAMING}\r\n".encode()
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_a_streamed_reply_for_an_unknown_request_id_is_a_400() -> None:
    """A streamed ``/response`` for no invocation under way is refused as a buffered one is,
    once its body has been read."""

    async def scenario(_s: RuntimeApiServer, port: int, _e: _Environment) -> Answer:
        return await _ask(port, _streamed("/2018-06-01/runtime/invocation/x/response", b"x"))

    _assert_error(_run(scenario), 400, "InvalidRequestID")


def test_a_streamed_reply_the_invocation_refused_as_too_large_is_a_413() -> None:
    """A streamed reply past the limit is answered 413 ``RequestEntityTooLarge`` at its end."""

    async def scenario(_s: RuntimeApiServer, port: int, env: _Environment) -> Answer:
        exchange = asyncio.ensure_future(
            env.channel.exchange(Invocation("rid", b"{}", "arn"), 0, 10)
        )
        await _ask(port, _request("GET", "/2018-06-01/runtime/invocation/next"))
        path = "/2018-06-01/runtime/invocation/rid/response"
        answer = asyncio.ensure_future(_ask(port, _streamed(path, b"too much")))
        reply = await exchange
        assert reply.stream is not None
        assert await reply.stream.read() == b"too much"
        reply.stream.too_large = True
        reply.stream.discard()
        return await answer

    _assert_error(_run(scenario), 413, "RequestEntityTooLarge")
