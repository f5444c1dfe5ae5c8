"""An api node's way to run invocations: on a worker, over NATS (docs/cluster.md,
"Invocations across nodes").

``RemoteDispatch.dispatch`` is what the ``Invoker`` calls instead of running an invocation
here: it picks a worker (``WorkerChoice``), publishes the call to the worker's subject with a
reply subject of this node's, and waits for the outcome, passing streamed chunks on to the
caller's sink in order. A worker nobody listens for (it is gone) before anything ran: the
next one is tried. A worker silent for ``LOST_AFTER`` seconds mid-invocation (its keep-alives
stopped: killed, cut off): ``ServiceException``, as Lambda answers when it fails to run an
invocation, and the worker is avoided. No worker at all: ``ServiceException`` too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.model import FunctionConfig
from lambdad.invoke import remote_wire as wire
from lambdad.invoke.worker_choice import REFRESH, UNHEARD_AVOID, WorkerChoice
from lambdad.observe.metric_cells import CellKey
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.streaming import ResponseSink
from lambdad.store.base import Document, Key, StoreError, StoreUnavailable
from lambdad.store.nats_link import Message, NatsLink

log = logging.getLogger(__name__)

NO_WORKER = (
    "Lambda could not run the function now: no worker node that can run it is up "
    "(cluster mode: start a node of role worker or all)."
)


class _Lost(Exception):
    """The worker stopped answering mid-invocation."""


class _Unheard(Exception):
    """Nobody listens on the worker's subject: it is gone, and nothing ran."""


class _Call:
    """One invocation under way on a worker, as this node hears of it."""

    __slots__ = ("future", "last_seen", "parts", "pump", "queue", "sink", "woken")

    def __init__(self, sink: ResponseSink | None, future: asyncio.Future[Outcome]) -> None:
        self.sink = sink
        self.future = future
        self.last_seen = time.monotonic()
        self.parts: list[bytes] = []
        #: Streamed chunks (and then the end) for the sink, in order, when there is a stream.
        self.queue: collections.deque[bytes | Outcome | BaseException] = collections.deque()
        self.pump: asyncio.Task[None] | None = None
        self.woken = asyncio.Event()

    def begin(self, content_type: str) -> None:
        if self.sink is not None and self.pump is None:
            self.sink.begin(content_type)
            self.pump = asyncio.create_task(self._pump(self.sink))

    def chunk(self, data: bytes) -> None:
        if self.pump is not None:
            self.queue.append(data)
            self._wake()

    def finish(self, result: Outcome | BaseException) -> None:
        if self.pump is not None:
            self.queue.append(result)
            self._wake()
        else:
            _settle(self.future, result)

    def _wake(self) -> None:
        self.woken.set()

    async def _pump(self, sink: ResponseSink) -> None:
        while True:
            while not self.queue:
                self.woken.clear()
                await self.woken.wait()
            item = self.queue.popleft()
            if isinstance(item, bytes):
                await sink.put(item)
                continue
            _settle(self.future, item)
            return


def _settle(future: asyncio.Future[Outcome], result: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class DispatchState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RemoteDispatch:
    """Runs invocations on workers (an api node's ``Invoker.remote``)."""

    def __init__(
        self,
        link: NatsLink,
        node_id: Callable[[], str],
        nodes: Callable[[], Awaitable[list[dict[str, Any]]]],
        choice: WorkerChoice,
        shares: Callable[[], Awaitable[list[tuple[Key, Document]]]] | None = None,
    ) -> None:
        self._link = link
        self._node_id = node_id
        self._nodes = nodes
        #: The workers' published shares of provisioned concurrency (read at each refresh).
        self._shares = shares
        self.choice = choice
        self._calls: dict[int, _Call] = {}
        self._tokens = itertools.count(1)
        self._prefix = ""
        self._tasks: list[asyncio.Task[None]] = []
        #: The read of the shares the store's feed asked for, while it runs.
        self._shares_read: asyncio.Task[None] | None = None
        self._shares_again = False
        self.state = DispatchState.NEW

    async def start(self) -> None:
        if self.state is not DispatchState.NEW:
            return
        self.state = DispatchState.RUNNING
        self._prefix = wire.reply_prefix(self._node_id())
        await self._link.follow(f"{self._prefix}.*", self._received)
        await self._refresh()
        self._tasks = [
            asyncio.create_task(self._watch(), name="routed invocations' keep-alives"),
            asyncio.create_task(self._follow_registry(), name="worker list"),
        ]

    async def close(self) -> None:
        """Stop listening; invocations still waiting fail with ``ServiceException``."""
        if self.state is DispatchState.CLOSED:
            return
        self.state = DispatchState.CLOSED
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        reading, self._shares_read = self._shares_read, None
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        for call in list(self._calls.values()):
            call.finish(errors.ServiceException("lambdad is stopping"))

    async def dispatch(
        self, key: CellKey, scope: Scope, config: FunctionConfig, invocation: Invocation
    ) -> Outcome:
        """Run ``invocation`` on a worker and return its outcome (its errors raised here)."""
        if self.state is not DispatchState.RUNNING:
            raise errors.ServiceException("lambdad is not routing invocations now")
        version = (scope.account_id, scope.region, config.name, config.version)
        provisioned = any(self.choice.provisioned.get(version, {}).values())
        call = wire.call_of(*version, key[3], invocation, config.revision_id, provisioned)
        size = max(1024, self._link.max_payload - wire.HEADROOM)
        parts = [call.payload[i : i + size] for i in range(0, len(call.payload), size)]
        if len(parts) > 1:
            call = msgspec.structs.replace(call, payload=b"", parts=len(parts))
        else:
            parts = []
        data = wire.encode(call)
        reading = self._shares_read
        if reading is not None and not reading.done():
            await asyncio.shield(reading)
        tried: set[str] = set()
        refreshed = False
        while True:
            worker = self.choice.pick(version, config.runtime, tried)
            if worker is None and not refreshed:  # one that just joined, or came back
                refreshed = True
                await self._refresh()
                continue
            if worker is None:  # the last resort: those avoided
                worker = self.choice.pick(version, config.runtime, tried, avoided=True)
            if worker is None:
                raise errors.ServiceException(NO_WORKER)
            tried.add(worker)
            try:
                return await self._on(worker, version, data, parts, invocation.sink)
            except _Unheard:
                log.info("worker %s is gone (nobody listens): trying another", worker)
                self.choice.avoid(worker, UNHEARD_AVOID)
            except _Lost:
                self.choice.avoid(worker)
                raise errors.ServiceException(
                    f"RequestId: {invocation.request_id} Error: the execution environment was "
                    f"lost: its worker stopped answering for {wire.LOST_AFTER:g} s."
                ) from None

    async def _on(
        self,
        worker: str,
        version: tuple[str, str, str, str],
        data: bytes,
        parts: list[bytes],
        sink: ResponseSink | None,
    ) -> Outcome:
        token = next(self._tokens)
        call = _Call(sink, asyncio.get_running_loop().create_future())
        self._calls[token] = call
        self.choice.began(worker, version)
        reply = f"{self._prefix}.{token}"
        try:
            for part in parts:
                await self._link.publish(wire.parts_subject(worker), part, reply=reply)
            await self._link.publish(wire.invoke_subject(worker), data, reply=reply)
            return await call.future
        except StoreUnavailable as exc:
            raise errors.ServiceException(f"Lambda could not reach its workers: {exc}") from exc
        finally:
            del self._calls[token]
            self.choice.ended(worker, version)
            if call.pump is not None and not call.pump.done():
                call.pump.cancel()

    # ---------------------------------------------------------------- what comes back

    def _received(self, message: Message) -> None:
        """A worker's message about one of this node's invocations (in the order sent)."""
        try:
            self._take(message)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning("a reply on %s that does not decode: %s", message.subject, exc)

    def _take(self, message: Message) -> None:
        call = self._calls.get(int(message.subject.rpartition(".")[2]))
        if call is None:
            return  # the caller went away, or gave the worker up
        call.last_seen = time.monotonic()
        if message.is_no_responders:
            call.finish(_Unheard())
            return
        data = message.data
        kind, body = data[:1], data[1:]
        if kind == wire.CHUNK:
            call.chunk(body)
        elif kind == wire.DONE:
            done = wire.decode_done(body)
            call.finish(done.outcome(b"".join(call.parts) if call.parts else done.payload))
        elif kind == wire.PART:
            call.parts.append(body)
        elif kind == wire.BEGIN:
            call.begin(body.decode(errors="replace"))
        elif kind == wire.FAILED:
            call.finish(wire.decode_failed(body).error())

    async def _watch(self) -> None:
        """Give up the invocations whose worker went silent."""
        while True:
            await asyncio.sleep(wire.KEEPALIVE / 2)
            now = time.monotonic()
            for call in list(self._calls.values()):
                if now - call.last_seen > wire.LOST_AFTER:
                    call.finish(_Lost())

    async def _follow_registry(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            records = await self._nodes()
        except StoreError as exc:  # routing goes on with what it knew
            log.warning("reading the node registry failed: %s", exc)
            return
        self.choice.update(records, self._node_id())
        await self.refresh_shares()

    def shares_changed(self) -> None:
        """A worker published or withdrew provisioned environments (the store's feed said
        so): read the shares again. Invocations routed meanwhile wait for the read, so a
        client that saw a config's environments ready (the feed brings the change within a
        millisecond of its commit) is routed to them."""
        if self.state is not DispatchState.RUNNING:
            return
        reading = self._shares_read
        if reading is not None and not reading.done():
            self._shares_again = True  # read once more when this read ends
            return
        self._shares_read = asyncio.create_task(self._read_shares(), name="provisioned shares")

    async def _read_shares(self) -> None:
        self._shares_again = True
        while self._shares_again:
            self._shares_again = False
            await self.refresh_shares()

    async def refresh_shares(self) -> None:
        """Read the workers' shares of provisioned concurrency again (each refresh, and when
        the store's feed says one changed)."""
        if self._shares is None:
            return
        try:
            rows = await self._shares()
        except StoreError as exc:
            log.warning("reading the provisioned shares failed: %s", exc)
            return
        shares: dict[tuple[str, str, str, str], dict[str, int]] = {}
        for key, doc in rows:
            if len(key) == 5 and int(doc.get("allocated", 0)) > 0:
                shares.setdefault((key[0], key[1], key[2], key[3]), {})[key[4]] = int(
                    doc["allocated"]
                )
        self.choice.provisioned = shares
