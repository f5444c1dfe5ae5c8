"""Unit tests of the part that keeps one poller running per enabled event source mapping
(in-memory store behind the ``Store`` seam; fake pollers from a registered factory)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.mapping_model import EventSourceMapping
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.requests import UpdateEventSourceMappingRequest
from lambdad.events.pollers import PollerContext, Pollers, PollersState, no_poller
from lambdad.invoke.aws_clients import AwsClients, NoEndpoint
from lambdad.store.base import Table
from lambdad.store.memory import MemoryBlobStore, MemoryStore
from tests.conftest import Moto, unique

SCOPE = Scope("123456789012", "us-east-1")
QUEUE = "arn:aws:sqs:us-east-1:123456789012:q"
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/s"


@dataclasses.dataclass
class FakePoller:
    mapping: EventSourceMapping
    context: PollerContext
    fail: bool = False
    started: bool = False
    closed: int = 0

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.started = True

    async def close(self) -> None:
        self.closed += 1


class World:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.mappings = EventSourceMappings(self.store, Functions(self.store, MemoryBlobStore()))
        self.pollers = Pollers(self.mappings, AwsClients({}), cast(Any, None))
        self.made: list[FakePoller] = []
        self.fail = False
        self.pollers.register("sqs", self.factory)

    def factory(self, mapping: EventSourceMapping, context: PollerContext) -> FakePoller:
        poller = FakePoller(mapping, context, fail=self.fail)
        self.made.append(poller)
        return poller

    async def put(self, uuid: str, source: str, kind: str, *, enabled: bool = True) -> None:
        mapping = EventSourceMapping(
            uuid=uuid,
            account_id=SCOPE.account_id,
            region=SCOPE.region,
            source_arn=source,
            kind=kind,
            function_name="fn",
            qualifier=None,
            state="Enabled" if enabled else "Disabled",
            enabled=enabled,
        )
        await self.store.put(Table.EVENT_SOURCE_MAPPINGS, SCOPE.key(uuid), mapping.to_doc())

    def live(self) -> list[FakePoller]:
        return [p for p in self.made if p.started and not p.closed]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def eventually_async(
    step: Callable[[], Awaitable[None]], predicate: Callable[[], bool], timeout: float = 5.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    await step()
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
        await step()


def run(test: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        world = World()
        await world.store.open()
        try:
            await test(world)
        finally:
            await world.pollers.close()
            await world.mappings.close()
            await world.store.close()

    asyncio.run(main())


def test_enabled_mappings_get_a_poller_at_start_and_kinds_without_a_factory_say_so() -> None:
    """At start every Enabled mapping of a kind with a factory gets a started poller; a
    Disabled one none; a kind with no factory stays Enabled and says no poller is available."""

    async def test(world: World) -> None:
        await world.put("a", QUEUE, "sqs")
        await world.put("b", QUEUE + "2", "sqs", enabled=False)
        await world.put("c", STREAM, "kinesis")
        await world.mappings.start()
        await world.pollers.start()
        assert [p.mapping.uuid for p in world.live()] == ["a"]
        stream = await world.mappings.get(SCOPE, "c")
        assert stream.state == "Enabled"
        assert stream.last_processing_result == no_poller("kinesis")

    run(test)


def test_update_restarts_disable_stops_enable_starts_and_delete_stops() -> None:
    """An update restarts the poller with the new configuration; disabling closes it,
    enabling starts a new one, deleting closes it."""

    async def test(world: World) -> None:
        await world.put("a", QUEUE, "sqs")
        await world.mappings.start()
        await world.pollers.start()
        first = world.live()[0]
        await world.mappings.update(SCOPE, UpdateEventSourceMappingRequest(uuid="a", batch_size=5))
        await eventually(lambda: [p.mapping.batch_size for p in world.live()] == [5])
        assert first.closed == 1
        await world.mappings.update(SCOPE, UpdateEventSourceMappingRequest(uuid="a", enabled=False))
        await eventually(lambda: not world.live())
        await world.mappings.update(SCOPE, UpdateEventSourceMappingRequest(uuid="a", enabled=True))
        await eventually(lambda: len(world.live()) == 1)
        await world.mappings.delete(SCOPE, "a")
        await eventually(lambda: not world.live())
        assert all(p.closed == 1 for p in world.made)

    run(test)


def test_a_poller_reports_its_processing_result_into_the_mapping() -> None:
    """``processing_result(text)`` becomes the mapping's LastProcessingResult; with no
    endpoint configured, ``source_client()`` raises NoEndpoint naming the source's service."""

    async def test(world: World) -> None:
        await world.put("a", QUEUE, "sqs")
        await world.pollers.start()
        context = world.live()[0].context
        await context.processing_result("OK")
        assert (await world.mappings.get(SCOPE, "a")).last_processing_result == "OK"
        with pytest.raises(NoEndpoint) as caught:
            await context.source_client()
        assert caught.value.service == "sqs"

    run(test)


def test_a_poller_that_fails_to_start_is_closed_and_reported() -> None:
    """A poller whose start raises is closed, and the mapping says why."""

    async def test(world: World) -> None:
        world.fail = True
        await world.put("a", QUEUE, "sqs")
        await world.pollers.start()
        assert world.made[0].closed == 1
        result = (await world.mappings.get(SCOPE, "a")).last_processing_result
        assert result == "PROBLEM: the poller did not start: boom"

    run(test)


def test_close_closes_every_poller_once_and_is_idempotent() -> None:
    """Closing the part closes each running poller once; a second close does nothing and
    later notifications start nothing."""

    async def test(world: World) -> None:
        await world.put("a", QUEUE, "sqs")
        await world.put("b", QUEUE + "2", "sqs")
        await world.pollers.start()
        assert len(world.live()) == 2
        await world.pollers.close()
        await world.pollers.close()
        assert world.pollers.state is PollersState.CLOSED
        assert [p.closed for p in world.made] == [1, 1]
        await world.mappings.update(SCOPE, UpdateEventSourceMappingRequest(uuid="a", batch_size=3))
        settled: list[str] = []

        async def state() -> None:
            settled.append((await world.mappings.get(SCOPE, "a")).state)

        await eventually_async(state, lambda: settled[-1] == "Enabled")
        assert len(world.made) == 2

    run(test)


def test_a_poller_reaches_its_source_through_the_context(moto: Moto) -> None:
    """``source_client()`` is a client of the source's service at the configured endpoint:
    a poller can read the queue its mapping names."""
    name = unique("q")
    url = moto.client("sqs").create_queue(QueueName=name)["QueueUrl"]
    moto.client("sqs").send_message(QueueUrl=url, MessageBody="hello")
    arn = f"arn:aws:sqs:{moto.region}:123456789012:{name}"

    async def test(world: World) -> None:
        world.pollers = Pollers(world.mappings, AwsClients({"sqs": moto.endpoint}), cast(Any, None))
        world.pollers.register("sqs", world.factory)
        await world.put("a", arn, "sqs")
        await world.pollers.start()
        sqs = await world.live()[0].context.source_client()
        found = await sqs.get_queue_url(QueueName=name)
        got = await sqs.receive_message(QueueUrl=found["QueueUrl"], WaitTimeSeconds=1)
        assert [m["Body"] for m in got["Messages"]] == ["hello"]

    run(test)


@dataclasses.dataclass
class LaggingPoller(FakePoller):
    """A stream poller that knows how far behind each shard is."""

    def lag(self) -> dict[str, int] | None:
        return {"shardId-0": 1200, "shardId-1": 40}


@dataclasses.dataclass
class BackloggedPoller(FakePoller):
    """A queue poller whose queue answers, or hangs (``hang``), or fails (``broken``)."""

    hang: bool = False
    broken: bool = False

    async def backlog(self) -> dict[str, int] | None:
        if self.broken:
            raise RuntimeError("endpoint down")
        if self.hang:
            await asyncio.sleep(3600)
        return {"waiting": 12, "in flight": 3}


def test_status_gives_each_mappings_state_result_and_lag() -> None:
    """``Pollers.status`` lists the scope's mappings oldest first with their state and last
    result, whether a poller runs, and its lag: milliseconds behind per shard from a
    ``Lagging`` poller, messages waiting and in flight from a ``Backlogged`` one, unknown
    (``-``) without a poller or when asking it fails; a function filter keeps its mappings."""

    async def test(world: World) -> None:
        kinds: dict[str, type[FakePoller]] = {
            "kinesis": LaggingPoller,
            "sqs": BackloggedPoller,
        }

        def factory(mapping: EventSourceMapping, context: PollerContext) -> FakePoller:
            poller = kinds[mapping.kind](mapping, context)
            if mapping.uuid == "broken":
                cast(BackloggedPoller, poller).broken = True
            world.made.append(poller)
            return poller

        world.pollers.register("sqs", factory)
        world.pollers.register("kinesis", factory)
        await world.put("queue", QUEUE, "sqs")
        await world.put("stream", STREAM, "kinesis")
        await world.put("off", QUEUE + "2", "sqs", enabled=False)
        await world.put("broken", QUEUE + "3", "sqs")
        await world.mappings.start()
        await world.pollers.start()
        found = {s.mapping.uuid: s for s in await world.pollers.status(SCOPE)}
        assert set(found) == {"queue", "stream", "off", "broken"}
        queue = found["queue"].to_json()
        assert queue["Polling"] is True
        assert queue["State"] == "Enabled"
        assert queue["LastProcessingResult"] == "No records processed"
        assert queue["Backlog"] == {"waiting": 12, "in flight": 3}
        assert queue["Lag"] == "waiting=12,inflight=3"
        stream = found["stream"].to_json()
        assert stream["MillisBehind"] == {"shardId-0": 1200, "shardId-1": 40}
        assert stream["Lag"] == "behind=1200ms"
        assert found["off"].to_json()["Polling"] is False
        assert found["off"].lag_text() == "-"
        assert found["broken"].polling is True
        assert found["broken"].lag_text() == "-"
        assert await world.pollers.status(Scope("999999999999", "us-east-1")) == []
        assert [s.mapping.uuid for s in await world.pollers.status(SCOPE, ("other", None))] == []
        mine = await world.pollers.status(SCOPE, ("fn", None))
        assert len(mine) == 4

    run(test)


def test_a_hanging_backlog_is_unknown_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A queue that does not answer within ``LAG_TIMEOUT`` gives an unknown lag; the listing
    itself answers."""
    monkeypatch.setattr("lambdad.events.pollers.LAG_TIMEOUT", 0.05)

    async def test(world: World) -> None:
        def factory(mapping: EventSourceMapping, context: PollerContext) -> FakePoller:
            poller = BackloggedPoller(mapping, context, hang=True)
            world.made.append(poller)
            return poller

        world.pollers.register("sqs", factory)
        await world.put("queue", QUEUE, "sqs")
        await world.mappings.start()
        await world.pollers.start()
        (status,) = await world.pollers.status(SCOPE)
        assert status.polling is True
        assert status.backlog is None

    run(test)
