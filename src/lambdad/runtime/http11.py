"""A small HTTP/1.1 server for the Runtime API's loopback sockets, on ``httptools``' parser.

The Runtime API is three requests per invocation (``/next``'s answer, the ``/response`` post,
the next ``/next``) from one client that speaks plain HTTP/1.1 with keep-alive. A general web
framework spends most of lambdad's CPU per warm invocation on request and response objects
this traffic never needs (docs/benchmarks.md); here a connection is a ``Protocol`` that parses
with llhttp (through httptools), hands each whole request to one handler coroutine, and writes
the answer as one buffer. Requests on a connection are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import json
import logging
import socket
import typing
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools

from lambdad.runtime.body_stream import BodyState, BodyStream

log = logging.getLogger(__name__)

#: The most a request line and headers may take together (the Runtime API's are small); a
#: larger head is refused with 431 before more of it is kept.
MAX_HEAD = 64 * 1024


@dataclasses.dataclass(slots=True)
class Request:
    """One request, read whole; ``body`` is None when it was larger than the server's cap."""

    method: str
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes | None
    size: int
    #: The local and the peer address of the connection it came on.
    local: tuple[str, int]
    peer: tuple[str, int]
    #: Per-connection memo for the handler (e.g. whether the peer was checked).
    connection: dict[str, object]
    #: A streamed request's body, handed over at the end of its head (``body`` is then None).
    stream: BodyStream | None = None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = "application/json"

    def head(self, keep_alive: bool) -> bytes:
        """The status line and headers, ready to write before ``body``.

        No header can carry CR, LF or NUL (they would split the answer into forged headers or
        a second response): such a character is written percent-encoded (``%0D``, ``%0A``,
        ``%00``), and anything outside Latin-1 as UTF-8.
        """
        reason = _REASONS.get(self.status, "Unknown")
        lines = [f"HTTP/1.1 {self.status} {reason}", f"Content-Length: {len(self.body)}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        if not keep_alive:
            lines.append("Connection: close")
        text = "\r\n".join(lines)
        # One look over the whole head: the only CR and LF are the line ends joined in.
        if text.count("\r") >= len(lines) or text.count("\n") >= len(lines) or "\0" in text:
            text = "\r\n".join(self._safe_lines(reason, keep_alive))
        text += "\r\n\r\n"
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")

    def _safe_lines(self, reason: str, keep_alive: bool) -> list[str]:
        lines = [f"HTTP/1.1 {self.status} {reason}", f"Content-Length: {len(self.body)}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {_safe(self.content_type)}")
        lines.extend(f"{_safe(name)}: {_safe(value)}" for name, value in self.headers)
        if not keep_alive:
            lines.append("Connection: close")
        return lines

    def encode(self, keep_alive: bool) -> bytes:
        """The whole answer as one buffer (``head`` + ``body``; copies the body)."""
        return self.head(keep_alive) + self.body


#: Bodies larger than this are joined in a thread (``bytes.join`` releases the GIL for it).
_JOIN_IN_THREAD = 1024 * 1024


async def _joined(chunks: list[bytes], size: int) -> bytes:
    if len(chunks) == 1:
        return chunks[0]
    if size > _JOIN_IN_THREAD:
        return await asyncio.to_thread(b"".join, chunks)
    return b"".join(chunks)


#: Bodies up to this size go out in one buffer with the head (one segment); larger ones are
#: written apart so that an event or response of megabytes is not copied on the loop.
_JOIN_LIMIT = 64 * 1024


def _write(transport: asyncio.Transport, response: Response, keep_alive: bool) -> None:
    head = response.head(keep_alive)
    if len(response.body) <= _JOIN_LIMIT:
        transport.write(head + response.body)
    else:
        transport.write(head)
        transport.write(response.body)


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_UNSAFE = str.maketrans({"\r": "%0D", "\n": "%0A", "\0": "%00"})


def _safe(text: str) -> str:
    """``text`` with CR, LF and NUL percent-encoded: a header value cannot end its line."""
    if "\r" in text or "\n" in text or "\0" in text:
        log.warning("Runtime API header with CR, LF or NUL encoded: %r", text[:200])
        return text.translate(_UNSAFE)
    return text


Handler = Callable[[Request], Awaitable[Response]]
#: Whether a request (by its lower-case headers) is streamed rather than read whole.
Streams = Callable[[dict[str, str]], bool]


def _never(headers: dict[str, str]) -> bool:
    return False


def error_response(status: int, error_type: str, message: str) -> Response:
    """The one error body of the Runtime, Extensions and Telemetry APIs, as RAPID renders it
    (``rendering.RenderJSON``: Go's json.Encoder, so compact, ``errorMessage`` first, and a
    trailing newline), with ``Content-Type: application/json``."""
    document = {"errorMessage": message, "errorType": error_type}
    return Response(status, (json.dumps(document, separators=(",", ":")) + "\n").encode())


class _Connection(asyncio.Protocol):
    """Parses requests off one connection and answers them in order."""

    def __init__(
        self, handler: Handler, body_cap: int, server: Server, streams: Streams = _never
    ) -> None:
        self._handler = handler
        self._cap = body_cap
        self._streams = streams
        #: The body of the request being read, when it is streamed.
        self._body: BodyStream | None = None
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._local: tuple[str, int] = ("", 0)
        self._peer: tuple[str, int] = ("", 0)
        self._memo: dict[str, object] = {}
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._pending: collections.deque[tuple[Request, list[bytes] | None, bool]] = (
            collections.deque()
        )
        self._worker: asyncio.Task[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but are one.
        self._transport = typing.cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local, peer = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        self._local = (str(local[0]), int(local[1])) if local else ("", 0)
        self._peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400)
        except httptools.HttpParserError:
            self._fail(431 if self._head > MAX_HEAD else 400)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._body is not None:
            self._body.fail()
            self._body = None
        self._server.connections.discard(self)
        # A handler already running finishes (its answer is dropped): the environment, not the
        # connection, decides what a runtime that went away means.

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._head = 0
        self._headers = {}
        self._chunks = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        if self._head > MAX_HEAD:
            raise ValueError("request head too large")  # stops the parser: a 431
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value)
        if self._head > MAX_HEAD:
            raise ValueError("request head too large")  # stops the parser: a 431
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if self._body is not None:
            self._body.trailer(key, text)  # a trailer field, after a streamed body
            return
        if key in self._headers:
            self._headers[key] += ", " + text
        else:
            self._headers[key] = text

    def on_headers_complete(self) -> None:
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._streams(self._headers):
            self._stream_request()

    def _stream_request(self) -> None:
        """Hand the request to its handler now; its body follows through a ``BodyStream``."""
        transport = self._transport
        if transport is None:
            return
        body = BodyStream(
            self._headers.get("content-type", ""), transport.pause_reading, self._resume
        )
        self._body = body
        method = self._parser.get_method().decode("latin-1")
        path = httptools.parse_url(self._url).path.decode("latin-1")
        request = Request(
            method, path, self._headers, None, 0, self._local, self._peer, self._memo, body
        )
        self._pending.append((request, None, self._parser.should_keep_alive()))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._answer_all())

    def _resume(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.feed(body)
            return
        self._size += len(body)
        if self._size <= self._cap:
            self._chunks.append(body)
        else:
            self._chunks.clear()

    def on_message_complete(self) -> None:
        if self._body is not None:
            self._body.finish()
            self._body = None
            return
        method = self._parser.get_method().decode("latin-1")
        path = httptools.parse_url(self._url).path.decode("latin-1")
        # The body is joined by the worker (a large one in a thread), not in this callback.
        request = Request(
            method, path, self._headers, None, self._size, self._local, self._peer, self._memo
        )
        chunks = self._chunks if self._size <= self._cap else None
        self._pending.append((request, chunks, self._parser.should_keep_alive()))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._answer_all())

    # answering

    async def _answer_all(self) -> None:
        try:
            while self._pending:
                request, chunks, keep_alive = self._pending.popleft()
                if chunks is not None:
                    # One chunk (or none) is the usual case: no coroutine for it.
                    if len(chunks) <= 1:
                        request.body = chunks[0] if chunks else b""
                    else:
                        request.body = await _joined(chunks, request.size)
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception("Runtime API %s %s failed", request.method, request.path)
                    response = error_response(500, "InternalServerError", "Internal Server Error")
                if request.stream is not None and request.stream.state is BodyState.OPEN:
                    # What the handler left of a streamed body is dropped; the answer follows
                    # the whole request, as for any other.
                    request.stream.discard()
                    await request.stream.ended()
                transport = self._transport
                if transport is None:
                    return
                _write(transport, response, keep_alive)
                if not keep_alive:
                    transport.close()
                    return
        finally:
            self._worker = None

    def _fail(self, status: int) -> None:
        if self._transport is not None:
            response = error_response(status, "InvalidRequest", HTTPStatus(status).phrase)
            self._transport.write(response.encode(False))
            self._transport.close()

    @property
    def local_port(self) -> int:
        return self._local[1]

    def close(self) -> None:
        if self._body is not None:
            self._body.fail()
            self._body = None
        if self._transport is not None:
            self._transport.close()
        if self._worker is not None:
            self._worker.cancel()


class ServerState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


class Server:
    """Serves ``handler`` on any number of listening sockets; ``close`` ends every connection."""

    def __init__(self, handler: Handler, body_cap: int, streams: Streams = _never) -> None:
        self._handler = handler
        self._cap = body_cap
        self._streams = streams
        self._listeners: dict[int, asyncio.AbstractServer] = {}
        self.connections: set[_Connection] = set()
        self.state = ServerState.RUNNING

    async def listen(self, sock: socket.socket) -> int:
        """Serve ``sock`` (bound, listening); returns its port."""
        port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        self._listeners[port] = await loop.create_server(
            lambda: _Connection(self._handler, self._cap, self, self._streams), sock=sock
        )
        return port

    async def unlisten(self, port: int) -> None:
        """Stop accepting on ``port`` and end its open connections: their peer (a cell with a
        network namespace of its own) may vanish without a FIN ever reaching us."""
        listener = self._listeners.pop(port, None)
        if listener is not None:
            listener.close()
        for connection in [c for c in self.connections if c.local_port == port]:
            connection.close()

    async def close(self) -> None:
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.CLOSED
        for port in list(self._listeners):
            await self.unlisten(port)
        for connection in list(self.connections):
            connection.close()
        self.connections.clear()
