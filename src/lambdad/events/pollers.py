"""Keeps one poller running per ``Enabled`` event source mapping.

``Pollers`` loads every mapping when it starts and then follows the mappings' own
notifications (``EventSourceMappings.subscribe``): a mapping that settles ``Enabled`` gets a
poller (a changed one, after an update, is restarted with its new configuration), one that
settles ``Disabled`` or is deleted has its poller closed. Pollers are made by a factory
registered per source kind (``register("sqs", factory)``); a factory gets the mapping and a
``PollerContext`` (AWS clients, and ``processing_result`` to report into the mapping's
``LastProcessingResult``) and returns any object with ``async start()`` and ``async
close()``. A kind with no factory leaves its mappings ``Enabled`` and says so in their
``LastProcessingResult``.

In a cluster (``owners`` given), a mapping's poller runs only on the node holding its claim
``esm.<uuid>`` (``events/owners.py``); the others want the claim and start the poller when
they get it. There, mappings changed through other nodes are heard through the store's change
feed (``heard_stored``).

A mapping whose function (or version, alias) does not exist consumes nothing, as on AWS: it
stays as it is, and its ``LastProcessingResult`` says the function was not found. Pollers
follow the functions' change stream: deleting a function (version, alias) closes its mappings'
pollers, and writing it again (re-creating it) starts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.changes import AliasDeleted, Change, FunctionChanged, FunctionDeleted
from lambdad.control.functions import Functions
from lambdad.control.mapping_model import EventSourceMapping, MappingState
from lambdad.control.mappings import (
    EventSourceMappings,
    MappingEvent,
    MappingRemoved,
)
from lambdad.events.owners import Owners
from lambdad.invoke.aws_clients import AwsClients
from lambdad.invoke.service import Invoker
from lambdad.observe.mapping_metrics import EVENT_COUNT, MappingMetrics
from lambdad.store.base import StoreChange, StoreError, Table

log = logging.getLogger(__name__)


#: The services event sources live in, by botocore's names.
SOURCE_SERVICES = ("sqs", "kinesis", "dynamodbstreams")
#: The service a mapping of each kind reads.
_SERVICE_OF = {"sqs": "sqs", "kinesis": "kinesis", "dynamodb": "dynamodbstreams"}


class Poller(Protocol):
    """One mapping's consumer: started once, closed once (close must accept a failed start)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Lagging(Protocol):
    """A stream poller that knows how far behind it is: milliseconds behind the newest record,
    per shard it reads (Kinesis's MillisBehindLatest, or now minus the newest record's
    arrival); None when it does not know yet. Cheap and synchronous: no request is made."""

    def lag(self) -> dict[str, int] | None: ...


@runtime_checkable
class Backlogged(Protocol):
    """A queue poller that can ask its queue how many messages wait
    (``{"waiting": ApproximateNumberOfMessages, "in flight":
    ApproximateNumberOfMessagesNotVisible}``); None when it cannot tell."""

    async def backlog(self) -> dict[str, int] | None: ...


class StatusPeers(Protocol):
    """The other nodes of a cluster, for the status of pollers running there
    (``events/esm_peers.py``)."""

    async def offer(self, uuid: str, answer: Callable[[], Awaitable[dict[str, Any]]]) -> None: ...

    async def withdraw(self, uuid: str) -> None: ...

    async def ask(self, uuid: str) -> dict[str, Any] | None: ...

    def node(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class MappingStatus:
    """How one mapping is doing, for ``lambdad esm`` and ``lambdad doctor``."""

    mapping: EventSourceMapping
    #: Whether a poller runs for it now.
    polling: bool
    #: Milliseconds behind per shard (streams), or None.
    behind_ms: dict[str, int] | None = None
    #: Messages waiting and in flight (queues), or None.
    backlog: dict[str, int] | None = None
    #: In a cluster, the id of the node whose poller runs it (None: here on a single node,
    #: or no poller).
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        m = self.mapping
        return {
            "UUID": m.uuid,
            "State": m.state,
            "StateTransitionReason": m.state_reason,
            "EventSourceArn": m.source_arn,
            "FunctionArn": m.function_arn,
            "LastProcessingResult": m.last_processing_result,
            "Polling": self.polling,
            "MillisBehind": self.behind_ms,
            "Backlog": self.backlog,
            "Lag": self.lag_text(),
            "Node": self.node,
        }

    def lag_text(self) -> str:
        """One word: ``waiting=12,inflight=3`` (a queue), ``behind=1200ms`` (the shard
        furthest behind), ``-`` (unknown)."""
        if self.backlog is not None:
            waiting = self.backlog.get("waiting", 0)
            return f"waiting={waiting},inflight={self.backlog.get('in flight', 0)}"
        if self.behind_ms:
            return f"behind={max(self.behind_ms.values())}ms"
        if self.behind_ms is not None:
            return "behind=0ms"
        return "-"


@dataclasses.dataclass(frozen=True, slots=True)
class PollerContext:
    """What a poller reaches besides its mapping."""

    mapping: EventSourceMapping
    clients: AwsClients
    invoker: Invoker
    _mappings: EventSourceMappings

    async def source_client(self) -> Any:
        """The aiobotocore client of the mapping's source service (SQS, Kinesis or DynamoDB
        Streams) in the source's region, opened on first use, closed with the pollers;
        ``NoEndpoint`` when no endpoint is configured for it."""
        service = _SERVICE_OF[self.mapping.kind]
        return await self.clients.client(service, self.mapping.source_arn.split(":")[3])

    def metrics(self) -> MappingMetrics:
        """What the mapping's poller records in Lambda's metrics: IteratorAge, and the event
        counts when ``MetricsConfig`` asks for ``EventCount``."""
        mapping = self.mapping
        return MappingMetrics(
            self.invoker.metrics,
            account=mapping.account_id,
            region=mapping.region,
            uuid=mapping.uuid,
            function=mapping.function_name,
            qualifier=mapping.qualifier,
            event_counts=EVENT_COUNT in (mapping.metrics or ()),
        )

    async def processing_result(self, text: str) -> None:
        """Set the mapping's ``LastProcessingResult`` to ``text``."""
        mapping = self.mapping
        scope = Scope(mapping.account_id, mapping.region)
        await self._mappings.record_result(scope, mapping.uuid, text)


#: Seconds a poller's lag may take to be asked (a queue's attributes) before it is unknown.
LAG_TIMEOUT = 2.0


def _of_function(mapping: EventSourceMapping, name: str, qualifier: str | None) -> bool:
    """Whether ``mapping`` is of function ``name`` (and of ``qualifier``, when given)."""
    return mapping.function_name == name and (qualifier is None or mapping.qualifier == qualifier)


class ResultWriter:
    """A mapping poller's ``LastProcessingResult``: stored when it changes, by a task of its
    own (never awaited on the poller's path); ``stop`` ends the writes, ``drain`` awaits those
    under way."""

    def __init__(self, ctx: PollerContext) -> None:
        self._ctx = ctx
        self._last: str | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._stopped = False

    def __call__(self, text: str) -> None:
        if text == self._last or self._stopped:
            return
        self._last = text
        task = asyncio.get_running_loop().create_task(self._ctx.processing_result(text))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "mapping %s: result not stored: %r", self._ctx.mapping.uuid, task.exception()
            )

    def stop(self) -> None:
        """Store nothing more (the poller is closing)."""
        self._stopped = True

    async def drain(self) -> None:
        """Wait for the writes under way."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


PollerFactory = Callable[[EventSourceMapping, PollerContext], Poller]


def function_not_found(mapping: EventSourceMapping) -> str:
    """LastProcessingResult of a mapping whose function does not exist."""
    return f"PROBLEM: Function not found: {mapping.function_arn}"


def no_poller(kind: str) -> str:
    """LastProcessingResult of a mapping whose kind has no poller in this lambdad."""
    return f"PROBLEM: no poller is available for {kind} event sources yet"


def claim_key(uuid: str) -> str:
    """The claim of a mapping's poller in a cluster."""
    return f"esm.{uuid}"


class PollersState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclasses.dataclass(slots=True)
class _Running:
    mapping: EventSourceMapping
    poller: Poller


class Pollers:
    """The running pollers, one per enabled mapping."""

    def __init__(
        self,
        mappings: EventSourceMappings,
        clients: AwsClients,
        invoker: Invoker,
        functions: Functions | None = None,
        owners: Owners | None = None,
    ) -> None:
        self._mappings = mappings
        self._owners = owners
        #: In a cluster: the enabled mappings whose claim this node wants, by claim key.
        self._claimed: dict[str, EventSourceMapping] = {}
        self._feed: set[asyncio.Task[None]] = set()
        self._functions = functions
        self._clients = clients
        self._invoker = invoker
        self._factories: dict[str, PollerFactory] = {}
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        #: In a cluster: the nodes asked for the status of a poller running elsewhere, and
        #: told of this node's (set by the composition root); None on a single node.
        self.peers: StatusPeers | None = None
        self.state = PollersState.NEW
        mappings.subscribe(self._heard)
        if functions is not None:
            functions.changes.subscribe(self._function_changed)

    def register(self, kind: str, factory: PollerFactory) -> None:
        """Make pollers of mappings of ``kind`` (``sqs``, ``kinesis``, ``dynamodb``) with
        ``factory`` (register before ``start``)."""
        self._factories[kind] = factory

    def report(self) -> dict[str, str]:
        """What ``lambdad doctor`` shows: which kinds have pollers, how many run, and the
        endpoint each source service is reached at."""
        kinds = ", ".join(sorted(self._factories)) or "none yet"
        endpoints = {s: self._clients.endpoint(s) or "none" for s in SOURCE_SERVICES}
        return {
            "pollers": kinds,
            "running": str(len(self._running)),
            **{f"endpoint {s}": url for s, url in endpoints.items()},
        }

    async def status(
        self, scope: Scope, function: tuple[str, str | None] | None = None
    ) -> list[MappingStatus]:
        """Every mapping of ``scope`` (of ``function``'s name and qualifier, when given), oldest
        first, with its poller's lag: asked of the poller (``Lagging``, ``Backlogged``), each
        answer bounded by ``LAG_TIMEOUT`` seconds (then unknown)."""
        found = [
            m
            for m in await self._mappings.all()
            if (m.account_id, m.region) == (scope.account_id, scope.region)
            and (function is None or _of_function(m, *function))
        ]
        found.sort(key=lambda m: (m.last_modified, m.uuid))
        return list(await asyncio.gather(*(self._status(m) for m in found)))

    async def _status(self, mapping: EventSourceMapping) -> MappingStatus:
        entry = self._running.get(mapping.uuid)
        found: dict[str, Any] | None
        if entry is not None:
            found = await self._measure(entry.poller, mapping.uuid)
            if self.peers is not None:
                found["Node"] = self.peers.node()
        elif self.peers is not None and mapping.state == MappingState.ENABLED:
            found = await self.peers.ask(mapping.uuid)  # polled on another node, or nowhere
            if found is None:
                return MappingStatus(mapping, polling=False)
        else:
            return MappingStatus(mapping, polling=False)
        return MappingStatus(
            mapping,
            polling=True,
            behind_ms=found.get("MillisBehind"),
            backlog=found.get("Backlog"),
            node=found.get("Node"),
        )

    async def _measure(self, poller: Poller, uuid: str) -> dict[str, Any]:
        """A running poller's lag: ``{"MillisBehind": ..., "Backlog": ...}``."""
        behind = poller.lag() if isinstance(poller, Lagging) else None
        backlog: dict[str, int] | None = None
        if isinstance(poller, Backlogged):
            try:
                async with asyncio.timeout(LAG_TIMEOUT):
                    backlog = await poller.backlog()
            except Exception as exc:  # unknown (timed out, refused): not the listing's error
                log.info("backlog of mapping %s unknown: %r", uuid, exc)
        return {"MillisBehind": behind, "Backlog": backlog}

    def running(self) -> list[EventSourceMapping]:
        """The mappings a poller runs for (their configuration as the poller got it)."""
        return [entry.mapping for entry in self._running.values()]

    async def start(self) -> None:
        """Start a poller for every enabled mapping."""
        if self.state is not PollersState.NEW:
            raise RuntimeError(f"pollers are {self.state.value}")
        self.state = PollersState.RUNNING
        for mapping in await self._mappings.all():
            await self._follow(mapping)

    async def close(self) -> None:
        """Close every poller, then the AWS clients. Idempotent."""
        if self.state is PollersState.CLOSED:
            return
        self.state = PollersState.CLOSED
        for task in list(self._feed):
            task.cancel()
        async with self._lock:
            running, self._running = list(self._running.values()), {}
        for entry in reversed(running):
            await self._close(entry)
        await self._clients.close()

    async def _heard(self, event: MappingEvent) -> None:
        if self.state is not PollersState.RUNNING:
            return
        if isinstance(event, MappingRemoved):
            await self._forget(event.mapping.uuid)
        else:
            await self._follow(event.mapping)

    async def _follow(self, mapping: EventSourceMapping) -> None:
        """Run, restart or stop the poller of ``mapping`` as its state says."""
        if mapping.state != MappingState.ENABLED:
            if mapping.state == MappingState.DISABLED:
                await self._forget(mapping.uuid)
            return
        if self._owners is not None:
            key = claim_key(mapping.uuid)
            self._claimed[key] = mapping
            self._owners.want(key, self)
            if not self._owners.holds(key):
                await self._stop(mapping.uuid)
                return
        async with self._lock:
            if self.state is not PollersState.RUNNING:
                return
            entry = self._running.get(mapping.uuid)
            if entry is not None and entry.mapping.last_modified == mapping.last_modified:
                return
            if entry is not None:
                del self._running[mapping.uuid]
                await self._close(entry)
            await self._launch(mapping)

    async def _function_changed(self, change: Change) -> None:
        """Close the pollers of a deleted function, version or alias; start those of a
        function written again."""
        if self.state is not PollersState.RUNNING or not isinstance(
            change, FunctionChanged | FunctionDeleted | AliasDeleted
        ):
            return
        gone: str | None = None
        if isinstance(change, FunctionDeleted):
            gone = change.qualifier or ""
        elif isinstance(change, AliasDeleted):
            gone = change.alias
        for mapping in await self._mappings.of_function(change.scope, change.name):
            if gone is None:
                await self._follow(mapping)
            elif gone == "" or mapping.qualifier == gone:
                await self._forget(mapping.uuid)
                if mapping.state == MappingState.ENABLED:
                    await self._mappings.record_result(
                        change.scope, mapping.uuid, function_not_found(mapping)
                    )

    async def _function_exists(self, mapping: EventSourceMapping) -> bool:
        """Whether the mapping's function exists (its record: no lock taken, since this runs
        inside the functions' change stream; a missing version or alias is the poller's to
        find when it invokes)."""
        if self._functions is None:
            return True
        scope = Scope(mapping.account_id, mapping.region)
        try:
            await self._functions.record(scope, mapping.function_name)
        except errors.ResourceNotFoundException:
            return False
        return True

    async def _launch(self, mapping: EventSourceMapping) -> None:
        """Make and start the mapping's poller (the lock held)."""
        context = PollerContext(mapping, self._clients, self._invoker, self._mappings)
        if not await self._function_exists(mapping):
            await context.processing_result(function_not_found(mapping))
            return
        factory = self._factories.get(mapping.kind)
        if factory is None:
            await context.processing_result(no_poller(mapping.kind))
            return
        try:
            poller = factory(mapping, context)
        except Exception as exc:
            await self._failed(context, exc)
            return
        entry = _Running(mapping, poller)
        try:
            await poller.start()
        except Exception as exc:
            await self._close(entry)
            await self._failed(context, exc)
            return
        self._running[mapping.uuid] = entry
        if self.peers is not None:
            await self.peers.offer(mapping.uuid, lambda: self._measure(poller, mapping.uuid))

    async def _failed(self, context: PollerContext, exc: Exception) -> None:
        log.error(
            "the poller of event source mapping %s did not start",
            context.mapping.uuid,
            exc_info=exc,
        )
        await context.processing_result(f"PROBLEM: the poller did not start: {exc}")

    async def gained(self, key: str) -> None:
        """This node now holds the claim ``key``: run the mapping's poller."""
        mapping = self._claimed.get(key)
        if mapping is not None and self.state is PollersState.RUNNING:
            await self._follow(mapping)

    async def lost(self, key: str) -> None:
        """This node no longer holds the claim ``key``: stop the mapping's poller."""
        mapping = self._claimed.get(key)
        if mapping is not None:
            await self._stop(mapping.uuid)

    def heard_stored(self, change: StoreChange) -> None:
        """A change another node made (the store's feed): follow the mappings it names."""
        if self.state is not PollersState.RUNNING:
            return
        if change.table not in (None, Table.EVENT_SOURCE_MAPPINGS, Table.FUNCTIONS):
            return
        task = asyncio.get_running_loop().create_task(self._heard_stored(change))
        self._feed.add(task)
        task.add_done_callback(self._feed.discard)

    async def _heard_stored(self, change: StoreChange) -> None:
        try:
            if change.table is None or change.prefix or len(change.key) != 3:
                await self._follow_all()
                return
            if change.table == Table.FUNCTIONS:
                await self._function_stored(Scope(*change.key[:2]), change.key[2])
                return
            account, region, uuid = change.key
            try:
                mapping = await self._mappings.get(Scope(account, region), uuid)
            except errors.ResourceNotFoundException:
                await self._forget(uuid)
                return
            await self._follow(mapping)
        except (StoreError, errors.LambdaError) as exc:
            log.warning("following a mapping changed elsewhere: %s", exc)

    async def _function_stored(self, scope: Scope, name: str) -> None:
        """A function written or deleted through another node: its mappings' pollers start
        again, or stop (the node that held the claim says why in LastProcessingResult)."""
        for mapping in await self._mappings.of_function(scope, name):
            if await self._function_exists(mapping):
                await self._follow(mapping)
                continue
            held = self._owners is not None and self._owners.holds(claim_key(mapping.uuid))
            await self._forget(mapping.uuid)
            if held and mapping.state == MappingState.ENABLED:
                await self._mappings.record_result(scope, mapping.uuid, function_not_found(mapping))

    async def _follow_all(self) -> None:
        """Follow every mapping again (the feed could not say which changed)."""
        every = await self._mappings.all()
        known = {m.uuid for m in every}
        for uuid in [m.uuid for m in self._claimed.values()] + list(self._running):
            if uuid not in known:
                await self._forget(uuid)
        for mapping in every:
            await self._follow(mapping)

    async def _forget(self, uuid: str) -> None:
        """The mapping is deleted, disabled or has no function: stop its poller and (in a
        cluster) give its claim up."""
        if self._owners is not None:
            key = claim_key(uuid)
            if self._claimed.pop(key, None) is not None:
                self._owners.unwant(key)
        await self._stop(uuid)

    async def _stop(self, uuid: str) -> None:
        async with self._lock:
            entry = self._running.pop(uuid, None)
            if entry is not None:
                if self.peers is not None:
                    await self.peers.withdraw(uuid)
                await self._close(entry)

    async def _close(self, entry: _Running) -> None:
        try:
            await entry.poller.close()
        except Exception:
            log.exception(
                "closing the poller of event source mapping %s failed", entry.mapping.uuid
            )
