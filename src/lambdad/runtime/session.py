"""The Runtime API's side of an execution environment: what a runtime's ``/next``,
``/response``, ``/error`` and ``/init/error`` do to it, with RAPID's state checks.

``Environment`` (``environment.py``) owns the state these methods read and write: the
invocation being served and its reply, the runtime waiting in ``/next``, init's waiter. The
Runtime API server (``rapi.py``) calls the ``rapi_*`` methods.
"""

from __future__ import annotations

import asyncio
import enum
import json

from lambdad.runtime.extensions import Extensions
from lambdad.runtime.invocation import Invocation, error_body, runtime_error_type
from lambdad.runtime.replies import InitFailure, Reply, RuntimeApiError, forwardable_error
from lambdad.runtime.sandbox.base import SandboxProcess


class EnvState(enum.Enum):
    NEW = "new"
    INITIALIZING = "initializing"
    IDLE = "idle"
    BUSY = "busy"
    CLOSED = "closed"


class RuntimeSession:
    """The ``rapi_*`` half of ``Environment``, which sets every attribute below."""

    state: EnvState
    extensions: Extensions
    _process: SandboxProcess | None
    _init_waiter: asyncio.Future[InitFailure | None] | None
    _next_waiter: asyncio.Future[Invocation] | None
    _queued: Invocation | None
    _current: Invocation | None
    _reply: asyncio.Future[Reply] | None
    _responded: bool
    _freeze_when_parked: bool

    def _drain_output(self) -> None:
        raise NotImplementedError

    def _freeze_soon(self) -> None:
        raise NotImplementedError

    async def rapi_next(self) -> Invocation:
        """``GET /runtime/invocation/next``: the next event, waiting as long as it takes."""
        if self.state is EnvState.CLOSED:
            raise RuntimeApiError(500, "InternalServerError", "Internal Server Error")
        if self._init_waiter is not None and not self._init_waiter.done():
            if self._process is not None:
                self._process.end_init()
            self._init_waiter.set_result(None)
        if self._responded:
            self.extensions.runtime_next()
        self._responded = False
        current = self._current
        if current is not None and self._reply is not None and not self._reply.done():
            # Either the event queued for this /next, or a second /next during one invoke,
            # which re-renders the same event (as Lambda does).
            self._queued = None
            return current
        waiter: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
        self._next_waiter = waiter
        if self._freeze_when_parked:
            self._freeze_soon()
        try:
            return await waiter
        finally:
            if self._next_waiter is waiter:
                self._next_waiter = None

    def _runtime_state(self) -> str:
        """The runtime's state as RAPID names it in its 403 messages."""
        if self._responded:
            return "RuntimeResponseSent"
        if self._current is not None and self._queued is None:
            return "Running"
        return "Ready"

    def _refuse_transition(self, to: str) -> RuntimeApiError:
        return RuntimeApiError(
            403,
            "InvalidStateTransition",
            f"State transition from {self._runtime_state()} to {to} failed for runtime. "
            "Error: State transition is not allowed",
        )

    def _release_next_waiter(self) -> None:
        """A runtime still waiting in ``/next`` gets a 500: its environment is going away."""
        waiter = self._next_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                RuntimeApiError(500, "InternalServerError", "Internal Server Error")
            )
            waiter.exception()  # retrieved here: the handler may already be gone

    def _check_request(self, request_id: str, to: str) -> asyncio.Future[Reply]:
        """The reply future of ``request_id``; RAPID checks the state before the id."""
        current, reply = self._current, self._reply
        if self._responded or (reply is not None and reply.done()):
            raise self._refuse_transition(to)
        if current is None or reply is None or current.request_id != request_id:
            raise RuntimeApiError(400, "InvalidRequestID", "Invalid request ID")
        return reply

    def _accept_reply(self, reply: asyncio.Future[Reply], value: Reply) -> None:
        self._drain_output()
        self._responded = True
        reply.set_result(value)

    def rapi_response(self, request_id: str, body: bytes, content_type: str) -> None:
        reply = self._check_request(request_id, "InvocationResponse")
        self._accept_reply(reply, Reply(True, body, content_type or "application/json"))

    def rapi_response_too_large(self, request_id: str, size: int) -> None:
        reply = self._check_request(request_id, "InvocationResponse")
        message = (
            f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            "(6291556 bytes)."
        )
        self._accept_reply(
            reply,
            Reply(
                False,
                error_body("Function.ResponseSizeTooLarge", message),
                "application/json",
                "Function.ResponseSizeTooLarge",
            ),
        )

    def rapi_error(
        self, request_id: str, body: bytes, content_type: str, error_type: str | None
    ) -> None:
        reply = self._check_request(request_id, "InvocationErrorResponse")
        body, content_type = forwardable_error(body, content_type)
        kind = runtime_error_type(body, error_type) or "Unhandled"
        self._accept_reply(reply, Reply(False, body, content_type, kind))

    def rapi_init_error(self, body: bytes, content_type: str, error_type: str | None) -> None:
        waiter = self._init_waiter
        if waiter is None or waiter.done():
            raise self._refuse_transition("InitError")
        self._drain_output()
        try:
            json.loads(body)
            kind = "application/json"
        except ValueError:
            kind = "application/octet-stream"
        waiter.set_result(
            InitFailure(
                "error", runtime_error_type(body, error_type) or "Runtime.Unknown", body, kind
            )
        )
