"""A worker's side of routed invocations (docs/cluster.md): it takes ``Call``s on
``lambdad.invoke.<its node id>`` and runs each with its own local dispatch (a provisioned
environment first, then a concurrency lease; metrics recorded here), sending keep-alives,
streamed chunks and the outcome to the caller's reply subject (``remote_wire``).

The function's configuration comes from this node's own ``Functions`` (it follows the store's
change feed) by account, region, name and version: nothing of it travels with the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.model import FunctionConfig
from lambdad.invoke import remote_wire as wire
from lambdad.observe.metric_cells import CellKey
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.streaming import ResponseSink
from lambdad.store.base import StoreChange, StoreUnavailable, Table
from lambdad.store.nats_link import Message, NatsLink

log = logging.getLogger(__name__)

#: How a worker runs an invocation here (``Invoker.dispatch_here``; the last argument: the
#: version has provisioned environments on some worker, ``Call.provisioned``).
Dispatch = Callable[
    [CellKey, Scope, FunctionConfig, Invocation, bool], Coroutine[Any, Any, Outcome]
]


#: Seconds the parts of a payload wait for their call (an api node gone in between).
PARTS_KEPT = 60.0
#: Seconds a stopping worker waits for the invocations it runs to end (the runtime then
#: stops the rest, and their callers get the outcome of an environment stopped under them).
DRAIN = 10.0


class _Parts:
    """The parts of one call's payload, as they come (before or after the call itself)."""

    __slots__ = ("arrived", "chunks", "since")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.arrived = asyncio.Event()
        self.since = time.monotonic()

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.arrived.set()

    async def joined(self, count: int) -> bytes:
        while len(self.chunks) < count:
            self.arrived.clear()
            await self.arrived.wait()
        return b"".join(self.chunks)


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class InvokeServer:
    """Runs the invocations api nodes route to this worker."""

    def __init__(
        self,
        link: NatsLink,
        node_id: Callable[[], str],
        functions: Functions,
        dispatch: Dispatch,
    ) -> None:
        self._link = link
        self._node_id = node_id
        self._functions = functions
        self._dispatch = dispatch
        #: Reply subjects of the invocations running here (each gets the keep-alives).
        self._running: set[str] = set()
        #: Parts of large payloads by their call's reply subject.
        self._parts: dict[str, _Parts] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._subject = ""
        #: Set while no invocation runs here (a stop waits for it).
        self._idle = asyncio.Event()
        self._idle.set()
        self.state = ServerState.NEW

    async def start(self) -> None:
        if self.state is not ServerState.NEW:
            return
        self.state = ServerState.RUNNING
        node = self._node_id()
        await self._link.follow(wire.parts_subject(node), self._part)
        self._subject = wire.invoke_subject(node)
        await self._link.serve(self._subject, self._handle)
        self._ticker = asyncio.create_task(self._keep_alive(), name="invoke keep-alives")

    async def close(self) -> None:
        """Stop taking invocations (api nodes then hear that nobody listens here, and route
        to another worker), wait up to ``DRAIN`` seconds for those running to end, then stop
        the keep-alives. Idempotent."""
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.CLOSED
        if self._subject:
            await self._link.stop_serving(self._subject)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), DRAIN)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def _part(self, message: Message) -> None:
        if message.reply:
            self._parts.setdefault(message.reply, _Parts()).add(message.data)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(wire.KEEPALIVE)
            stale = time.monotonic() - PARTS_KEPT
            for reply, parts in list(self._parts.items()):
                if parts.since < stale:
                    del self._parts[reply]
            for reply in list(self._running):
                with contextlib.suppress(StoreUnavailable):
                    await self._link.publish(reply, wire.ALIVE)

    async def _handle(self, message: Message) -> None:
        reply = message.reply
        if not reply:
            return
        try:
            call = wire.decode_call(message.data)
        except msgspec.DecodeError as exc:
            log.warning("a routed invocation that is not a call: %s", exc)
            refused = errors.ServiceException(
                "The worker could not read the invocation (is it a lambdad of another version "
                f"than the api node?): {exc}"
            )
            with contextlib.suppress(StoreUnavailable):
                await self._link.publish(reply, wire.FAILED + wire.encode(wire.Failed.of(refused)))
            return
        self._running.add(reply)
        self._idle.clear()
        try:
            answer = await self._answer(call, reply)
            try:
                for part in answer:
                    await self._link.publish(reply, part)
            except StoreUnavailable as exc:
                log.warning("the outcome of %s was not sent: %s", call.request_id, exc)
        finally:
            self._running.discard(reply)
            if not self._running:
                self._idle.set()

    async def _payload(self, call: wire.Call, reply: str) -> bytes | None:
        """The call's payload joined from its parts (None when it came whole)."""
        if not call.parts:
            return None
        parts = self._parts.setdefault(reply, _Parts())
        try:
            return await asyncio.wait_for(parts.joined(call.parts), wire.LOST_AFTER)
        except TimeoutError:
            raise errors.ServiceException(
                "The invocation's payload did not reach its worker whole."
            ) from None
        finally:
            self._parts.pop(reply, None)

    async def _answer(self, call: wire.Call, reply: str) -> list[bytes]:
        """The messages that end the call: its outcome (in parts if large), or its error."""
        try:
            outcome = await self._run(call, reply, await self._payload(call, reply))
        except errors.LambdaError as exc:
            return [wire.FAILED + wire.encode(wire.Failed.of(exc))]
        except Exception as exc:  # an unexpected failure still answers the caller
            log.exception("routed invocation %s failed", call.request_id)
            failed = errors.ServiceException(f"The worker failed to run the invocation: {exc}")
            return [wire.FAILED + wire.encode(wire.Failed.of(failed))]
        size = self._part_size()
        payload = outcome.payload
        if len(payload) <= size:
            return [wire.DONE + wire.encode(wire.Done.of(outcome, payload))]
        parts = [wire.PART + payload[i : i + size] for i in range(0, len(payload), size)]
        return [*parts, wire.DONE + wire.encode(wire.Done.of(outcome, b""))]

    def _part_size(self) -> int:
        return max(1024, self._link.max_payload - wire.HEADROOM)

    async def _run(self, call: wire.Call, reply: str, payload: bytes | None) -> Outcome:
        scope = Scope(call.account, call.region)
        config = await self._functions.resolve(scope, call.name, call.version)
        if call.revision and config.revision_id != call.revision:
            # The api node saw a change this node's cache has not heard of yet: read again.
            self._functions.forget_stored(StoreChange(Table.FUNCTIONS, scope.key(call.name)))
            config = await self._functions.resolve(scope, call.name, call.version)
        key: CellKey = (call.account, call.region, call.name, call.qualifier, config.version)
        if not call.stream:
            return await self._dispatch(
                key, scope, config, call.invocation(None, payload), call.provisioned
            )
        sink = ResponseSink()
        streamed = call.invocation(sink, payload)
        running = asyncio.create_task(
            self._dispatch(key, scope, config, streamed, call.provisioned)
        )
        running.add_done_callback(lambda _: sink.end())
        try:
            await self._forward(sink, running, reply)
        except StoreUnavailable as exc:  # the caller cannot be reached: it runs on, unheard
            log.warning("streaming %s to its caller failed: %s", call.request_id, exc)
            sink.abandon()
        return await running

    async def _forward(
        self, sink: ResponseSink, running: asyncio.Task[Outcome], reply: str
    ) -> None:
        """Send the streamed response's start and chunks, in order, as they come."""
        started = asyncio.create_task(sink.started.wait())
        try:
            await asyncio.wait([started, running], return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if not sink.streamed:
            return
        await self._link.publish(reply, wire.BEGIN + sink.content_type.encode())
        size = self._part_size()
        while (chunk := await sink.get()) is not None:
            for i in range(0, len(chunk), size):
                await self._link.publish(reply, wire.CHUNK + chunk[i : i + size])
