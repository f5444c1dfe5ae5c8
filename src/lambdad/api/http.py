"""The HTTP/1.1 edge under the API: connection timeouts and AWS-shaped parser errors.

aiohttp parses requests; this module bounds how long a connection may hold the server:

- ``idle_timeout``: a connection with no request in flight (new, or between keep-alive
  requests) is closed after this long (aiohttp's keep-alive timer, which also starts when
  the connection is made);
- ``header_timeout``: once the first byte of a request head arrives, the whole head must
  arrive within this long;
- ``body_timeout``: once the head is in, the whole body must arrive within this long (a body
  shorter than its declared ``Content-Length`` ends here, with the connection closed).

A request line, header or chunk aiohttp cannot parse is answered with an AWS-shaped 400
(``InvalidRequestContentException``) instead of aiohttp's plain-text one. Body limits are
applied before reading by the error middleware (``lambdad.api.limits``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from lambdad import errors
from lambdad.api.errors import render
from lambdad.config import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpTimeouts:
    """How long a connection may wait for each part of a request (seconds)."""

    idle: float = 60.0
    header: float = 10.0
    body: float = 300.0

    @classmethod
    def of(cls, settings: Settings) -> HttpTimeouts:
        return cls(
            idle=settings.http_idle_timeout,
            header=settings.http_header_timeout,
            body=settings.http_body_timeout,
        )


class Protocol(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with head and body deadlines and AWS-shaped parse errors."""

    def __init__(self, manager: Any, timeouts: HttpTimeouts, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._timeouts = timeouts
        self._deadline: asyncio.TimerHandle | None = None
        #: The body of the newest request whose head has arrived (None: none yet).
        self._body: StreamReader | None = None
        self._heads = 0  # request heads received on this connection

    def data_received(self, data: bytes) -> None:
        messages = self._messages
        newest = messages[-1] if messages else None
        body = self._body
        in_body = body is not None and not body.is_eof()
        super().data_received(data)
        if messages and messages[-1] is not newest:
            message, payload = messages[-1]
            if in_body and body is not None and not isinstance(message, RawRequestMessage):
                # A body aiohttp could not parse (a bad chunk): its reader would wait forever.
                # The reader fails; its end is marked so that aiohttp does not linger on it.
                reason = str(getattr(message, "message", "") or "bad body").splitlines()[0]
                body.set_exception(BadHttpMessage(reason))
                body.feed_eof()
            self._head_arrived(payload)
        elif data and not in_body:
            # Part of a head is buffered. (aiohttp feeds b"" on every resume of reading, once a
            # request is handled: no byte arrived then, so no deadline starts.)
            self._arm_head_deadline()
        elif self._deadline is not None and body is not None and body.is_eof():
            self._disarm()

    def _head_arrived(self, body: StreamReader) -> None:
        self._heads += 1
        if self._deadline is not None:
            self._disarm()
        self._body = body
        if not body.is_eof():
            self._deadline = self._loop.call_later(self._timeouts.body, self._body_expired, body)

    def _arm_head_deadline(self) -> None:
        if self._deadline is not None:
            return
        self._deadline = self._loop.call_later(
            self._timeouts.header, self._head_expired, self._heads
        )

    def _head_expired(self, heads: int) -> None:
        self._deadline = None
        if self._heads == heads and self.transport is not None:
            log.info("closing a connection whose request head did not arrive in time")
            self.force_close()

    def _body_expired(self, body: StreamReader) -> None:
        self._deadline = None
        if not body.is_eof() and self.transport is not None:
            log.info("closing a connection whose request body did not arrive in time")
            self.force_close()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._body = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request aiohttp could not parse (or handle) in AWS's error shape."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started; cannot send an error")
        if status < 500:
            reason = (message or str(exc or "") or "bad request").strip().splitlines()[0]
            log.info("unparseable request from %s: %s", request.remote, reason)
            error: errors.LambdaError = errors.InvalidRequestContentException(
                f"Could not parse request: {reason}"
            )
        else:
            log.error("error handling request from %s", request.remote, exc_info=exc)
            error = errors.ServiceException("An internal error occurred.")
        response = render(error)
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's connection manager, making ``Protocol`` connections."""

    def __init__(self, handler: Any, *, timeouts: HttpTimeouts, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._timeouts = timeouts

    def __call__(self) -> RequestHandler:
        return Protocol(self, self._timeouts, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``AppRunner`` whose connections are ``Protocol`` connections bounded by ``timeouts``."""

    def __init__(self, app: web.Application, timeouts: HttpTimeouts) -> None:
        super().__init__(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=timeouts.idle,
            shutdown_timeout=1.0,
        )
        self._timeouts = timeouts

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            timeouts=self._timeouts,
            **self._kwargs,
        )
