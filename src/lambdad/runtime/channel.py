"""The hand-off between an environment and its runtime: one invocation channel per environment.

The environment puts invocations in (``exchange``) and waits for the reply; the Runtime API
server (``rapi.py``) takes them out and posts replies through the ``RuntimeSide`` protocol,
with RAPID's state checks. The channel alone owns that state, as h11's and httpcore's
connection objects own theirs. The runtime's states are RAPID's::

    Ready ──exchange, /next──▶ Running ──/response, /error──▶ RuntimeResponseSent ──/next──▶ Ready

and the channel is ``OPEN`` until ``close()``; a closed channel refuses ``/next``.

A runtime's ``/next`` during init ends the init; one that arrives while an invocation is
queued takes it; one that arrives while it runs gets the same event again (as RIE does); one
with nothing to take parks until ``exchange`` hands it an invocation. The deadline and the
request id travel with the ``Delivery``, not with the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from lambdad.runtime.body_stream import BodyStream
from lambdad.runtime.invocation import Invocation, error_body, runtime_error_type
from lambdad.runtime.replies import (
    Crashed,
    InitFailure,
    Reply,
    RuntimeApiError,
    forwardable_error,
)

if TYPE_CHECKING:
    from lambdad.runtime.extensions import Extensions
    from lambdad.runtime.telemetry import Telemetry

#: What the Runtime API answers a runtime whose environment is going away.
_GONE = ("InternalServerError", "Internal Server Error")


@dataclasses.dataclass(slots=True)
class Delivery:
    """One invocation handed to the runtime: its event, its deadline and its reply to come."""

    invocation: Invocation
    #: ``Lambda-Runtime-Deadline-Ms``: epoch milliseconds.
    deadline_ms: int
    reply: asyncio.Future[Reply]

    @property
    def request_id(self) -> str:
        return self.invocation.request_id


class RuntimeSide(Protocol):
    """What the Runtime API server may do to a channel: the runtime's four calls."""

    async def next(self) -> Delivery: ...

    def respond(self, request_id: str, body: bytes, content_type: str) -> None: ...

    def respond_too_large(self, request_id: str, size: int) -> None: ...

    def respond_stream(self, request_id: str, body: BodyStream) -> None: ...

    def error(
        self, request_id: str, body: bytes, content_type: str, error_type: str | None
    ) -> None: ...

    def init_error(self, body: bytes, content_type: str, error_type: str | None) -> None: ...


class Tenant(Protocol):
    """What the Runtime API server reaches of an environment (``Environment`` is one): its
    channel, its extensions and telemetry (``extensions_api.py``), and who may connect."""

    @property
    def channel(self) -> RuntimeSide: ...

    @property
    def extensions(self) -> Extensions: ...

    @property
    def telemetry(self) -> Telemetry: ...

    async def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool: ...


class ChannelState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _nothing() -> None:
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelHooks:
    """What the environment does when the runtime moves (each synchronous, each optional)."""

    #: Before a reply is accepted: read what the process printed, so it belongs to the reply's
    #: invocation.
    drain: Callable[[], None] = _nothing
    #: The runtime's first ``/next`` of an init: init is over.
    ready: Callable[[], None] = _nothing
    #: A ``/next`` after a reply: the runtime is done with that invocation.
    done: Callable[[], None] = _nothing
    #: The runtime waits in ``/next`` with nothing to take.
    parked: Callable[[], None] = _nothing


class InvocationChannel:
    def __init__(self, hooks: ChannelHooks) -> None:
        self._hooks = hooks
        self.state = ChannelState.OPEN
        self._init: asyncio.Future[InitFailure | None] | None = None
        self._parked: asyncio.Future[Delivery] | None = None
        #: The invocation under way; ``_queued`` while no ``/next`` has taken it yet.
        self._current: Delivery | None = None
        self._queued = False
        #: The runtime posted its reply and has not asked for the next event yet.
        self._responded = False
        #: The body of a streamed reply, while the runtime may still be sending it.
        self._streaming: BodyStream | None = None

    # ------------------------------------------------------------ the environment's side

    @property
    def parked(self) -> bool:
        """Whether the runtime waits in ``/next``."""
        return self._parked is not None and not self._parked.done()

    @property
    def busy(self) -> bool:
        return self._current is not None

    def begin_init(self) -> asyncio.Future[InitFailure | None]:
        """Init starts: the returned future ends it (None at the first ``/next``)."""
        self._init = asyncio.get_running_loop().create_future()
        return self._init

    def end_init(self) -> None:
        self._init = None

    def fail_init(self, failure: InitFailure) -> bool:
        """End an init under way with ``failure``; False when none is."""
        if self._init is None or self._init.done():
            return False
        self._init.set_result(failure)
        return True

    def crash(self, crash: Crashed) -> bool:
        """The invocation under way ends with ``crash``; False when none awaits its reply."""
        current = self._current
        streaming = self._streaming
        if streaming is not None and self._responded:
            streaming.fail(crash)  # a streamed reply's body ends with the crash
            self._streaming = None
            return True
        if current is None or current.reply.done():
            return False
        current.reply.set_exception(crash)
        return True

    def release_parked(self) -> None:
        """A runtime waiting in ``/next`` gets a 500: its environment is going away."""
        waiter = self._parked
        if waiter is not None and not waiter.done():
            waiter.set_exception(RuntimeApiError(500, *_GONE))
            waiter.exception()  # retrieved here: the handler may already be gone

    def close(self) -> None:
        """From now on ``/next`` is refused; what waits is ended by the calls above."""
        self.state = ChannelState.CLOSED

    async def exchange(self, invocation: Invocation, deadline_ms: int, timeout: float) -> Reply:
        """Hand ``invocation`` to the runtime and wait for its reply (``TimeoutError`` after
        ``timeout`` s, ``Crashed`` when the runtime dies first)."""
        loop = asyncio.get_running_loop()
        delivery = Delivery(invocation, deadline_ms, loop.create_future())
        self._current = delivery
        waiter = self._parked
        if waiter is not None and not waiter.done():
            waiter.set_result(delivery)
        else:
            self._queued = True
        try:
            return await asyncio.wait_for(delivery.reply, max(0.0, timeout))
        finally:
            self._current = None
            self._queued = False

    # ------------------------------------------------------------ the runtime's side

    async def next(self) -> Delivery:
        """``GET /runtime/invocation/next``: the next event, waiting as long as it takes."""
        if self.state is ChannelState.CLOSED:
            raise RuntimeApiError(500, *_GONE)
        if self._init is not None and not self._init.done():
            self._hooks.ready()
            self._init.set_result(None)
        if self._responded:
            self._hooks.done()
        self._responded = False
        self._streaming = None
        current = self._current
        if current is not None and not current.reply.done():
            # Either the event queued for this /next, or a second /next during one invoke,
            # which re-renders the same event (as Lambda does).
            self._queued = False
            return current
        waiter: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._parked = waiter
        self._hooks.parked()
        try:
            return await waiter
        finally:
            if self._parked is waiter:
                self._parked = None

    def respond(self, request_id: str, body: bytes, content_type: str) -> None:
        reply = self._check(request_id, "InvocationResponse")
        self._accept(reply, Reply(True, body, content_type or "application/json"))

    def respond_too_large(self, request_id: str, size: int) -> None:
        reply = self._check(request_id, "InvocationResponse")
        message = (
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            "(6291556 bytes)."
        )
        kind = "Function.ResponseSizeTooLarge"
        self._accept(reply, Reply(False, error_body(kind, message), "application/json", kind))

    def respond_stream(self, request_id: str, body: BodyStream) -> None:
        """A streamed ``/response`` began: the invocation's reply is its body, to be read."""
        reply = self._check(request_id, "InvocationResponse")
        self._streaming = body
        content_type = body.content_type or "application/octet-stream"
        self._accept(reply, Reply(True, b"", content_type, stream=body))

    def error(
        self, request_id: str, body: bytes, content_type: str, error_type: str | None
    ) -> None:
        reply = self._check(request_id, "InvocationErrorResponse")
        body, content_type = forwardable_error(body, content_type)
        kind = runtime_error_type(body, error_type) or "Unhandled"
        self._accept(reply, Reply(False, body, content_type, kind))

    def init_error(self, body: bytes, content_type: str, error_type: str | None) -> None:
        waiter = self._init
        if waiter is None or waiter.done():
            raise self._refuse("InitError")
        self._hooks.drain()
        try:
            json.loads(body)
            kind = "application/json"
        except ValueError:
            kind = "application/octet-stream"
        error = runtime_error_type(body, error_type) or "Runtime.Unknown"
        waiter.set_result(InitFailure("error", error, body, kind))

    # ------------------------------------------------------------ RAPID's checks

    def _runtime_state(self) -> str:
        """The runtime's state as RAPID names it in its 403 messages."""
        if self._responded:
            return "RuntimeResponseSent"
        if self._current is not None and not self._queued:
            return "Running"
        return "Ready"

    def _refuse(self, to: str) -> RuntimeApiError:
        return RuntimeApiError(
            403,
            "InvalidStateTransition",
            f"State transition from {self._runtime_state()} to {to} failed for runtime. "
            "Error: State transition is not allowed",
        )

    def _check(self, request_id: str, to: str) -> asyncio.Future[Reply]:
        """The reply future of ``request_id``; RAPID checks the state before the id."""
        current = self._current
        if self._responded or (current is not None and current.reply.done()):
            raise self._refuse(to)
        if current is None or current.request_id != request_id:
            raise RuntimeApiError(400, "InvalidRequestID", "Invalid request ID")
        return current.reply

    def _accept(self, reply: asyncio.Future[Reply], value: Reply) -> None:
        self._hooks.drain()
        self._responded = True
        reply.set_result(value)
