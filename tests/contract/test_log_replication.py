"""``LogReplication`` against a real NATS server with JetStream: one node's log store changes
reach another's store, whole and once, through a NATS restart, however large a put; a node
never applies its own changes, and a worker (not reading) gets nobody's."""

from __future__ import annotations

import asyncio
import time

import pytest

from lambdad.observe.logs import LogStore
from lambdad.store import log_replication
from lambdad.store.log_replication import LogReplication
from lambdad.store.nats_link import NatsLink
from tests.contract.conftest import run
from tests.nats_server import NatsServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

KEY = ("111122223333", "eu-west-1", "/aws/lambda/fn")


class Node:
    """A log store and its replication over a NATS link of its own."""

    def __init__(self, url: str, name: str, *, consume: bool = True) -> None:
        self.name = name
        self.link = NatsLink(url, name)
        self.store = LogStore(None, max_bytes=0)
        self.replication = LogReplication(
            self.link, self.store.apply, consume=consume, max_bytes=1 << 30, max_age=3600
        )

    async def open(self) -> Node:
        await self.link.open()
        await self.replication.open(self.name)
        self.store.outbox = self.replication
        return self

    async def close(self) -> None:
        self.store.outbox = None
        await self.replication.close()
        await self.link.close()

    def messages(self) -> list[str]:
        return [e.message for e in self.store.read(KEY, limit=1_000_000)]

    async def until(self, count: int, timeout: float = 20.0) -> list[str]:
        """The messages once there are ``count`` (fails at the deadline)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.messages()) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"{len(found)} of {count} messages arrived"
            await self.store.wait(KEY, self.store.position, min(left, 1.0))
        return found


def now_ms() -> int:
    return int(time.time() * 1000)


@run
async def test_changes_made_while_nats_is_away_arrive_once_it_is_back(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines put while the NATS server is down wait on the writer and reach the reader, in
    order and once each, when the server is back on the same store: the reader pulls again as
    soon as its connection is back (its waiting pull went with the server; here a pull would
    otherwise wait ten minutes)."""
    monkeypatch.setattr(log_replication, "FETCH_WAIT", 600.0)
    writer = await Node(server.url, "writer").open()
    reader = await Node(server.url, "reader").open()
    try:
        writer.store.put(KEY, "s", now_ms(), ["before"])
        assert await reader.until(1) == ["before"]
        server.kill()
        for i in range(50):
            writer.store.put(KEY, "s", now_ms(), [f"away {i}"])
        server.start()
        found = await reader.until(51)
        assert found == ["before"] + [f"away {i}" for i in range(50)]
    finally:
        await writer.close()
        await reader.close()


@run
async def test_a_large_put_is_split_and_arrives_whole(server: NatsServer) -> None:
    """A PutLogEvents-sized batch (3,000 events of 1,000 bytes: more than a NATS message
    holds) and a line of text that is not UTF-8 arrive whole and in order."""
    writer = await Node(server.url, "writer").open()
    reader = await Node(server.url, "reader").open()
    try:
        lines = [f"{i:05d}" + "x" * 995 for i in range(3000)]
        writer.store.put_events(KEY, "s", [(now_ms(), line) for line in lines])
        writer.store.put(KEY, "s", now_ms(), ["lone \udc80 surrogate"])
        found = await reader.until(3001)
        assert found[:3000] == lines
        assert found[3000] == "lone ? surrogate"  # as the log files keep it
    finally:
        await writer.close()
        await reader.close()


@run
async def test_many_small_puts_gathered_together_travel_in_messages_nats_takes(
    server: NatsServer,
) -> None:
    """Lines of many invocations gathered while the sender lingers (20,000 puts of 3 lines of
    100 bytes, 6 MB in all: far more than one NATS message holds) arrive whole: the sender
    cuts them into messages of at most ``MAX_MESSAGE`` bytes, never one message of it all."""
    writer = await Node(server.url, "writer").open()
    reader = await Node(server.url, "reader").open()
    try:
        lines = [f"{i:06d}" + "y" * 94 for i in range(60_000)]
        for i in range(0, len(lines), 3):
            writer.store.put(KEY, "s", now_ms(), lines[i : i + 3])
        assert await reader.until(60_000, timeout=60) == lines
    finally:
        await writer.close()
        await reader.close()


@run
async def test_no_node_applies_its_own_changes_and_a_worker_reads_none(
    server: NatsServer,
) -> None:
    """Two reading nodes each hold their own lines once and the other's; a node that only
    sends (a worker) holds only its own."""
    one = await Node(server.url, "one").open()
    two = await Node(server.url, "two").open()
    worker = await Node(server.url, "worker", consume=False).open()
    try:
        one.store.put(KEY, "a", now_ms(), ["from one"])
        two.store.put(KEY, "b", now_ms(), ["from two"])
        worker.store.put(KEY, "c", now_ms(), ["from the worker"])
        for node in (one, two):
            found = await node.until(3)
            assert sorted(found) == ["from one", "from the worker", "from two"]
        await asyncio.sleep(0)  # anything wrongly applied has had its chance by now
        assert worker.messages() == ["from the worker"]
    finally:
        for node in (one, two, worker):
            await node.close()


def test_changes_waiting_to_be_sent_are_bounded(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes gathering faster than they are sent (here: put without letting the sender
    run) are bounded by bytes: the oldest go, the newest arrive, in order."""
    monkeypatch.setattr(log_replication, "BACKLOG_BYTES", 10_000)

    async def scenario() -> None:
        writer = await Node(server.url, "writer").open()
        reader = await Node(server.url, "reader").open()
        try:
            for i in range(100):  # about 1,030 bytes each: the last 9 fit
                writer.store.put(KEY, "s", now_ms(), [f"{i:03d}" + "x" * 997])
            found = await reader.until(9)
            assert [line[:3] for line in found] == [f"{i:03d}" for i in range(91, 100)]
            writer.store.put(KEY, "s", now_ms(), ["after"])
            assert (await reader.until(10))[-1] == "after"
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(scenario())
