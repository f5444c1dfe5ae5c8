"""The Runtime API's HTTP/1.1 server (``lambdad.runtime.http11``), driven over real loopback
sockets: how it reads requests (pipelined, split across reads, with bodies of any size, kept
alive or not, malformed) and how it writes answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from lambdad.runtime.http11 import MAX_HEAD, Request, Response, Server

T = TypeVar("T")
#: Bodies larger than this arrive as ``body=None`` with their ``size``.
CAP = 1024
PATIENCE = 30.0


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


class Recorded:
    """A handler that keeps every request and answers ``200 <method> <path> <size>``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.arrived = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        self.arrived.set()
        text = f"{request.method} {request.path} {request.size}"
        return Response(200, text.encode(), content_type="text/plain")


@asynccontextmanager
async def serving(handler: Callable[[Request], Awaitable[Response]]) -> AsyncIterator[int]:
    """A ``Server`` of ``handler`` on a loopback port, closed at the end."""
    server = Server(handler, CAP)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = await server.listen(sock)
    try:
        yield port
    finally:
        await server.close()
        await server.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One response: its status line, headers (names in lower case) and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    status, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), PATIENCE)
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (end of file, nothing more sent)."""
    return await asyncio.wait_for(reader.read(), PATIENCE) == b""


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


# ------------------------------------------------------------------------------ reading


def test_a_request_is_parsed_whole() -> None:
    """Method, path (without its query), headers in lower case, body and size reach the
    handler; repeated headers are joined with commas; the connection's addresses are known."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            extra = (
                "X-Amz-Thing: one\r\nx-amz-thing: two\r\nLambda-Runtime-Function-Error-Type: E\r\n"
            )
            writer.write(post("/2018-06-01/runtime/invocation/abc/response?x=1", b"{}", extra))
            status, _, body = await read_response(reader)
            assert status == "HTTP/1.1 200 OK"
            assert body == b"POST /2018-06-01/runtime/invocation/abc/response 2"
            (request,) = handler.requests
            assert request.body == b"{}"
            assert request.headers["x-amz-thing"] == "one, two"
            assert request.header("Lambda-Runtime-Function-Error-Type") == "E"
            assert request.header("missing", "default") == "default"
            assert request.local == ("127.0.0.1", port)
            assert request.peer == writer.get_extra_info("sockname")
            writer.close()

    run(scenario)


def test_a_request_split_across_reads_is_put_together() -> None:
    """A request that arrives one byte at a time is the same request."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            for byte in post("/split", b'{"a": 1}'):
                writer.write(bytes([byte]))
                await writer.drain()
            _, _, body = await read_response(reader)
            assert body == b"POST /split 8"
            assert handler.requests[0].body == b'{"a": 1}'
            writer.close()

    run(scenario)


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    """Requests sent back to back in one write are handled one after the other (never two at
    once on a connection) and answered in the order they came."""

    async def scenario() -> None:
        running = 0
        most = 0
        first = asyncio.Event()
        release = asyncio.Event()
        seen: list[str] = []

        async def handler(request: Request) -> Response:
            nonlocal running, most
            running += 1
            most = max(most, running)
            seen.append(request.path)
            if len(seen) == 1:
                first.set()
                await release.wait()
            running -= 1
            return Response(200, request.path.encode())

        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(get("/one") + post("/two", b"2") + get("/three"))
            await asyncio.wait_for(first.wait(), PATIENCE)
            release.set()
            bodies = [(await read_response(reader))[2] for _ in range(3)]
            assert bodies == [b"/one", b"/two", b"/three"]
            assert seen == ["/one", "/two", "/three"]
            assert most == 1
            writer.close()

    run(scenario)


def test_bodies_up_to_the_cap_are_kept_larger_ones_only_counted() -> None:
    """A body of exactly the cap arrives whole; a larger one (sent in many pieces) arrives as
    ``body=None`` with its full size, and the connection stays usable."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(post("/fits", b"a" * CAP))
            await read_response(reader)
            large = b"b" * (CAP * 300)
            writer.write(post("/large", large))
            _, _, body = await read_response(reader)
            assert body == f"POST /large {len(large)}".encode()
            writer.write(get("/after"))
            await read_response(reader)
            fits, too_large, after = handler.requests
            assert fits.body == b"a" * CAP
            assert (too_large.body, too_large.size) == (None, len(large))
            assert (after.body, after.size) == (b"", 0)
            writer.close()

    run(scenario)


def test_a_chunked_body_is_decoded() -> None:
    """``Transfer-Encoding: chunked`` bodies reach the handler de-chunked."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            head = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            writer.write(head.encode() + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            await read_response(reader)
            assert handler.requests[0].body == b"abcde"
            writer.close()

    run(scenario)


def test_expect_100_continue_is_answered_before_the_body() -> None:
    """A client that asks ``Expect: 100-continue`` is told to go on before it sends the body."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            writer.write(head + b"Expect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{}")
            status, _, _ = await read_response(reader)
            assert status == "HTTP/1.1 200 OK"
            assert handler.requests[0].body == b"{}"
            writer.close()

    run(scenario)


# ------------------------------------------------------------------------------ keep-alive


def test_http11_connections_are_kept_alive() -> None:
    """An HTTP/1.1 request is answered without ``Connection: close`` and the connection takes
    the next request."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            for path in ("/a", "/b", "/c"):
                writer.write(get(path))
                _, headers, body = await read_response(reader)
                assert "connection" not in headers
                assert body == f"GET {path} 0".encode()
            writer.close()

    run(scenario)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /bye HTTP/1.0\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_a_request_without_keep_alive_is_answered_then_closed(request_bytes: bytes) -> None:
    """``Connection: close`` (or HTTP/1.0 without keep-alive): the answer says
    ``Connection: close`` and the server closes the connection after it."""

    async def scenario() -> None:
        async with serving(Recorded()) as port:
            reader, writer = await connect(port)
            writer.write(request_bytes)
            _, headers, body = await read_response(reader)
            assert headers["connection"] == "close"
            assert body == b"GET /bye 0"
            assert await closed(reader)
            writer.close()

    run(scenario)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"GET /x HTTP/9.9\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header Name: 1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"\x00\x01\x02\r\n\r\n",
    ],
    ids=[
        "request-line",
        "version",
        "header-name",
        "header-without-colon",
        "content-length",
        "two-content-lengths",
        "binary",
    ],
)
def test_a_malformed_request_is_a_400_and_the_connection_closes(garbage: bytes) -> None:
    """A request the parser refuses is answered 400 with ``Connection: close``, the handler is
    not called, and the server goes on serving other connections."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(garbage)
            status, headers, _ = await read_response(reader)
            assert status == "HTTP/1.1 400 Bad Request"
            assert headers["connection"] == "close"
            assert await closed(reader)
            assert handler.requests == []
            writer.close()
            reader, writer = await connect(port)
            writer.write(get("/fine"))
            assert (await read_response(reader))[2] == b"GET /fine 0"
            writer.close()

    run(scenario)


@pytest.mark.parametrize("where", ["url", "header"])
def test_a_request_head_over_the_limit_is_a_431(where: str) -> None:
    """A request line or headers larger than ``MAX_HEAD`` are refused with 431 and the
    connection closed, before the server buffers any more of them."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            big = "a" * (MAX_HEAD + 1)
            if where == "url":
                writer.write(f"GET /{big} HTTP/1.1\r\n\r\n".encode())
            else:
                writer.write(get("/x", f"X-Big: {big}\r\n"))
            status, headers, _ = await read_response(reader)
            assert status == "HTTP/1.1 431 Request Header Fields Too Large"
            assert headers["connection"] == "close"
            assert await closed(reader)
            assert handler.requests == []

    run(scenario)


def test_headers_just_under_the_limit_are_served() -> None:
    """A request head under ``MAX_HEAD`` is served as usual."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(get("/x", f"X-Big: {'a' * (MAX_HEAD // 2)}\r\n"))
            assert (await read_response(reader))[0] == "HTTP/1.1 200 OK"
            writer.close()

    run(scenario)


def test_a_client_closing_mid_body_never_reaches_the_handler() -> None:
    """A request whose client goes away before its body is complete is dropped unanswered;
    the server is unharmed."""

    async def scenario() -> None:
        handler = Recorded()
        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            reader, writer = await connect(port)
            writer.write(get("/next"))
            assert (await read_response(reader))[2] == b"GET /next 0"
            assert [r.path for r in handler.requests] == ["/next"]
            writer.close()

    run(scenario)


def test_a_failing_handler_is_a_500_and_the_connection_goes_on() -> None:
    """A handler that raises is answered 500 with a JSON error; the next request is served."""

    async def scenario() -> None:
        async def handler(request: Request) -> Response:
            if request.path == "/boom":
                raise RuntimeError("boom")
            return Response(202)

        async with serving(handler) as port:
            reader, writer = await connect(port)
            writer.write(get("/boom"))
            status, headers, body = await read_response(reader)
            assert status == "HTTP/1.1 500 Internal Server Error"
            assert headers["content-type"] == "application/json"
            assert (
                body
                == b'{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}\n'
            )
            writer.write(get("/fine"))
            assert (await read_response(reader))[0] == "HTTP/1.1 202 Accepted"
            writer.close()

    run(scenario)


def test_closing_the_server_ends_its_connections() -> None:
    """``close`` ends open connections (idle ones too) and stops listening; twice is harmless."""

    async def scenario() -> None:
        server = Server(Recorded(), CAP)
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setblocking(False)
        port = await server.listen(sock)
        reader, writer = await connect(port)
        writer.write(get("/x"))
        await read_response(reader)
        await server.close()
        await server.close()
        assert await closed(reader)
        writer.close()
        with pytest.raises(OSError):  # noqa: PT011 - refused, whatever its errno
            await connect(port)

    run(scenario)


# ------------------------------------------------------------------------------ writing


def test_a_response_is_encoded_as_one_http11_message() -> None:
    """Status line with the reason phrase, Content-Length, Content-Type, extra headers in
    order, then the body; ``Connection: close`` only when not kept alive."""
    response = Response(
        202, b'{"status":"OK"}', headers=(("Lambda-Runtime-Aws-Request-Id", "r-1"), ("X", "y"))
    )
    assert response.encode(True) == (
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\nContent-Type: application/json\r\n"
        b'Lambda-Runtime-Aws-Request-Id: r-1\r\nX: y\r\n\r\n{"status":"OK"}'
    )
    assert response.encode(False).split(b"\r\n\r\n")[0].endswith(b"\r\nConnection: close")


def test_a_response_without_content_type_or_known_reason() -> None:
    """No Content-Type when it is None; an unknown status gets the reason ``Unknown``."""
    assert Response(299, b"", content_type=None).encode(True) == (
        b"HTTP/1.1 299 Unknown\r\nContent-Length: 0\r\n\r\n"
    )
