"""Streamed requests of the Runtime API's HTTP/1.1 server (``lambdad.runtime.http11``) over
real loopback sockets: handed over at the end of their head, bodies read as they arrive under
backpressure, trailers, and the requests that follow on the same connection."""

from __future__ import annotations

import asyncio
import socket

from lambdad.runtime.http11 import Request, Response, Server

PATIENCE = 30.0
STREAMING = "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"


def streams(headers: dict[str, str]) -> bool:
    return headers.get("lambda-runtime-function-response-mode") == "streaming"


def chunked(*chunks: bytes, trailers: str = "") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return body + b"0\r\n" + trailers.encode() + b"\r\n"


def head(path: str, extra: str = STREAMING) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def serve(handler: object) -> tuple[Server, int]:
    server = Server(handler, 1024, streams)  # type: ignore[arg-type]
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    return server, await server.listen(sock)


async def status_of(reader: asyncio.StreamReader) -> str:
    """One response's status line (its body is read and dropped)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    lines = raw.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.startswith("Content-Length"))
    await asyncio.wait_for(reader.readexactly(length), PATIENCE)
    return lines[0]


def test_streamed_body_arrives_in_order_under_backpressure_with_trailers() -> None:
    """A body of 8 MiB, far over the body's high-water mark, reaches a handler that reads it
    chunk by chunk whole and in order, with its trailers; the answer follows the body."""

    async def scenario() -> None:
        received = bytearray()
        trailers: dict[str, str] = {}
        started = asyncio.Event()

        async def handler(request: Request) -> Response:
            assert request.stream is not None
            assert request.body is None
            started.set()
            while (chunk := await request.stream.read()) is not None:
                received.extend(chunk)
            trailers.update(request.stream.trailers)
            return Response(202, b"{}")

        server, port = await serve(handler)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head("/r"))
            await asyncio.wait_for(started.wait(), PATIENCE)  # handed over before any body
            piece = bytes(range(256)) * 256
            for _ in range(128):
                writer.write(chunked(piece)[: -len(b"0\r\n\r\n")])
                await writer.drain()
            writer.write(b"0\r\nX-Error: late\r\n\r\n")
            assert await status_of(reader) == "HTTP/1.1 202 Accepted"
            assert bytes(received) == piece * 128
            assert trailers == {"x-error": "late"}
            writer.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_unread_streamed_body_is_dropped_and_the_next_request_answered() -> None:
    """A handler that answers without reading its streamed body: the body is dropped, the
    answer follows the whole request, and a request pipelined after it is answered next."""

    async def scenario() -> None:
        async def handler(request: Request) -> Response:
            return Response(200 if request.stream is None else 400, b"{}")

        server, port = await serve(handler)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            big = b"x" * (3 * 1024 * 1024)
            plain = head("/next", "Content-Length: 0\r\n")
            writer.write(head("/r") + chunked(big, big) + plain)
            assert await status_of(reader) == "HTTP/1.1 400 Bad Request"
            assert await status_of(reader) == "HTTP/1.1 200 OK"
            writer.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_lost_connection_breaks_the_body() -> None:
    """A connection lost mid-body ends the handler's read with BodyBroken."""

    async def scenario() -> None:
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler(request: Request) -> Response:
            assert request.stream is not None
            try:
                while await request.stream.read() is not None:
                    pass
            except Exception as exc:
                outcome.set_result(type(exc).__name__)
            else:
                outcome.set_result("complete")
            return Response(202, b"{}")

        server, port = await serve(handler)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head("/r") + b"5\r\nhello\r\n")
            await writer.drain()
            writer.close()
            assert await asyncio.wait_for(outcome, PATIENCE) == "BodyBroken"
        finally:
            await server.close()

    asyncio.run(scenario())
