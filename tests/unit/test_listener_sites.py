"""The API's listener serving a listening socket handed over to it (the cells' endpoint,
``HttpListener.serve_also``), and the relay handing its socket over (``EndpointRelay``)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from lambdad.api.http import HttpTimeouts
from lambdad.api.server import HttpListener
from lambdad.runtime.sandbox.network import EndpointRelay


def _app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        return web.Response(text=f"served {request.transport.get_extra_info('sockname')[1]}")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


async def _get(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer.decode().rpartition("\r\n\r\n")[2]


def test_a_socket_handed_over_before_start_is_served_once_listening_and_closed_with_it() -> None:
    """A socket handed to the listener before it starts is served (the same application, on
    that socket's own port) once it listens, and stops accepting when the listener closes."""

    async def main() -> None:
        listener = HttpListener(_app, "127.0.0.1", 0, HttpTimeouts())
        extra = _listening()
        port = extra.getsockname()[1]
        await listener.serve_also(extra)
        await listener.start()
        assert listener.port is not None
        assert await _get(listener.port) == f"served {listener.port}"
        assert await _get(port) == f"served {port}"
        await listener.close()
        with pytest.raises(ConnectionRefusedError):
            await _get(port)

    asyncio.run(main())


def test_a_socket_handed_over_while_listening_is_served_at_once() -> None:
    """A socket handed over to a listening listener is served at once; one handed over after
    it closed is closed."""

    async def main() -> None:
        listener = HttpListener(_app, "127.0.0.1", 0, HttpTimeouts())
        await listener.start()
        extra = _listening()
        port = extra.getsockname()[1]
        await listener.serve_also(extra)
        assert await _get(port) == f"served {port}"
        await listener.close()
        late = _listening()
        await listener.serve_also(late)
        assert late.fileno() == -1

    asyncio.run(main())


class _Gateway:
    """A stand-in for the cells' network: its listener is a loopback socket (with ``taken``,
    a port other than 0 is in use, as when lambdad listens on every address)."""

    def __init__(self, *, taken: bool = False) -> None:
        self.taken = taken

    def listener(self, port: int = 0) -> socket.socket:
        if self.taken and port:
            raise OSError(98, "Address already in use")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.2", port))
        sock.listen(16)
        sock.setblocking(False)
        return sock


def test_the_relay_hands_over_its_socket_only_at_the_apis_own_port() -> None:
    """The relay pipes to the API until it hands its listening socket over (then the API
    serves it: connections reach the API with no relay between); a relay that had to take
    another port than the API's keeps relaying (nothing to hand over)."""

    async def main() -> None:
        api = HttpListener(_app, "127.0.0.1", 0, HttpTimeouts())
        await api.start()
        assert api.port is not None
        gateway: Any = _Gateway()
        relay = EndpointRelay(gateway, "127.0.0.1", api.port)
        await relay.start()
        assert relay.port == api.port
        relayed = await _get_at("127.0.0.2", api.port)
        assert relayed == f"served {api.port}"
        taken = relay.hand_over()
        assert taken is not None
        assert relay.hand_over() is None
        await api.serve_also(taken)
        assert await _get_at("127.0.0.2", api.port) == f"served {api.port}"
        busy: Any = _Gateway(taken=True)
        elsewhere = EndpointRelay(busy, "127.0.0.1", api.port)
        await elsewhere.start()
        assert elsewhere.port is not None
        assert elsewhere.port != api.port
        assert elsewhere.hand_over() is None
        assert await _get_at("127.0.0.2", elsewhere.port) == f"served {api.port}"
        await elsewhere.close()
        await relay.close()
        await api.close()

    asyncio.run(main())


async def _get_at(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer.decode().rpartition("\r\n\r\n")[2]
