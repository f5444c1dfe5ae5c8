"""The JetStream queue across nodes and restarts, against real NATS servers: what the shared
contract (test_store_contract.py) cannot say with one queue object."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import pytest

from lambdad.invoke.payloads import EVENT_LIMIT
from lambdad.store import nats_queue
from lambdad.store.base import QueuedEvent, StoreConflict
from lambdad.store.nats_queue import PAYLOADS
from tests.contract.conftest import run
from tests.contract.nats_queues import OwnLinkQueue, delete_streams
from tests.nats_server import NatsServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _event(event_id: str, not_before: float = 0.0) -> QueuedEvent:
    return QueuedEvent(
        id=event_id,
        function_name="fn",
        qualifier="live",
        payload=b'{"n": 1}',
        region="us-east-1",
        enqueued_at=time.time(),
        not_before=not_before,
        account_id="123456789012",
    )


@run
async def test_events_attempts_and_delays_survive_a_new_node_and_a_killed_server(
    server: NatsServer,
) -> None:
    """After the node and the NATS server are both killed, every event not acknowledged is
    handed out again whole, a retried one with its attempt, attributes and delay."""
    first = OwnLinkQueue(server.url)
    await first.open()
    for event_id in ("done", "running", "retried", "waiting", "kept"):
        kept = event_id == "kept"
        await first.put(dataclasses.replace(_event(event_id), keep_id=kept))
    assert (await first.take()).id == "done"
    await first.ack("done")
    assert (await first.take()).id == "running"
    retried = await first.take()
    due = time.time() + 1.0
    await first.retry(dataclasses.replace(retried, attributes={"k": "v"}), due)
    assert (await first.take()).id == "waiting"
    await first.ack("waiting")
    await first.ack((await first.take()).id)  # the kept one
    await first.die()
    server.kill()
    server.start()
    second = OwnLinkQueue(server.url, ack_wait=1.0)
    await second.open()
    try:
        with pytest.raises(StoreConflict):
            await second.put(dataclasses.replace(_event("kept"), keep_id=True))
        await second.put(_event("waiting"))  # an ordinary id is free once acknowledged
        again = {}
        for _ in range(3):
            event = await asyncio.wait_for(second.take(), 10)
            again[event.id] = (event, time.time())
        assert sorted(again) == ["retried", "running", "waiting"]
        event, taken_at = again["retried"]
        assert (event.attempt, event.attributes, event.not_before) == (1, {"k": "v"}, due)
        assert taken_at >= due
        assert (event.payload, event.qualifier, event.account_id) == (
            b'{"n": 1}',
            "live",
            "123456789012",
        )
        assert again["running"][0].attempt == 0
    finally:
        await second.close()


@run
async def test_a_dead_nodes_event_goes_to_another_node_and_a_live_ones_stays(
    nats_server: NatsServer,
) -> None:
    """An event taken by a node that vanishes is handed to another once the ack wait has
    passed; one held by a node that lives stays with it however long it runs."""
    await delete_streams(nats_server.url)
    nodes = [OwnLinkQueue(nats_server.url, ack_wait=1.0) for _ in range(3)]
    doomed, living, other = nodes
    for node in nodes:
        await node.open()
    try:
        await doomed.put(_event("orphan"))
        assert (await doomed.take()).id == "orphan"
        await living.put(_event("long"))
        assert (await living.take()).id == "long"
        await doomed.die()
        began = time.monotonic()
        assert (await asyncio.wait_for(other.take(), 10)).id == "orphan"
        assert time.monotonic() - began >= 0.5
        await other.ack("orphan")
        # Two ack waits later "long" is still with the living node: nothing else to take.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.take(), 2.0)
        await living.ack("long")
        assert living.pending() == 0
    finally:
        for node in (living, other):
            await node.close()


@run
async def test_a_delayed_event_holds_nothing_back_and_comes_on_time(
    nats_server: NatsServer,
) -> None:
    """An event retried for later is not handed out early to any node, and events put after
    it are taken meanwhile; a node's clean close gives its events back at once."""
    await delete_streams(nats_server.url)
    one, two = OwnLinkQueue(nats_server.url), OwnLinkQueue(nats_server.url)
    await one.open()
    await two.open()
    try:
        await one.put(_event("slow"))
        due = time.time() + 2.0
        await one.retry(await one.take(), due)
        for i in range(5):
            await one.put(_event(f"quick{i}"))
        quick = [await asyncio.wait_for(two.take(), 5) for _ in range(5)]
        assert [e.id for e in quick] == [f"quick{i}" for i in range(5)]
        late = await asyncio.wait_for(two.take(), 10)
        assert (late.id, late.attempt) == ("slow", 1)
        assert time.time() >= due
        await two.close()  # not acknowledged: given back
        for event_id in sorted(await _take_all(one, 6)):
            await one.ack(event_id)
        assert one.pending() == 0
    finally:
        await one.close()
        await two.close()


async def _take_all(queue: OwnLinkQueue, count: int) -> set[str]:
    return {(await asyncio.wait_for(queue.take(), 5)).id for _ in range(count)}


@run
async def test_a_payload_of_the_largest_event_size_is_kept_whole(nats_server: NatsServer) -> None:
    """A 1 MiB Event payload (Lambda's async limit, NATS's default largest message) is queued,
    taken whole, retried and taken whole again; its chunks are gone once it is acknowledged."""
    await delete_streams(nats_server.url)
    payload = os.urandom(EVENT_LIMIT)
    queue = OwnLinkQueue(nats_server.url)
    await queue.open()
    try:
        await queue.put(dataclasses.replace(_event("big"), payload=payload))
        with pytest.raises(StoreConflict):
            await queue.put(dataclasses.replace(_event("big"), payload=b"other"))
        taken = await asyncio.wait_for(queue.take(), 10)
        assert taken.payload == payload
        await queue.retry(taken, time.time())
        again = await asyncio.wait_for(queue.take(), 10)
        assert (again.payload, again.attempt) == (payload, 1)
        await queue.ack("big")
        js = queue.link.client.jetstream()
        assert (await js.stream_info(PAYLOADS)).state.messages == 0
    finally:
        await queue.close()


@run
async def test_streams_lost_under_a_node_are_made_again(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the streams and the consumer vanish under an open queue (a NATS server started on
    an empty store), the next put makes them again and the take waiting meanwhile pulls again
    at once (from the consumer made again; here its pull would otherwise wait ten minutes)."""
    monkeypatch.setattr(nats_queue, "FETCH_WAIT", 600.0)
    await delete_streams(nats_server.url)
    queue = OwnLinkQueue(nats_server.url)
    await queue.open()
    try:
        await queue.put(_event("before"))
        assert (await asyncio.wait_for(queue.take(), 5)).id == "before"
        await queue.ack("before")
        taking = asyncio.ensure_future(queue.take())
        await delete_streams(nats_server.url)
        await queue.put(_event("after"))
        assert (await asyncio.wait_for(taking, 20)).id == "after"
        await queue.ack("after")
    finally:
        await queue.close()


@run
async def test_events_pulled_ahead_by_a_busy_node_go_to_another(nats_server: NatsServer) -> None:
    """In a burst a take pulls several events at once; those the node does not take next
    (its slots are busy) are given back, and another node takes them long before the ack
    wait (30 s here)."""
    await delete_streams(nats_server.url)
    busy, idle = OwnLinkQueue(nats_server.url), OwnLinkQueue(nats_server.url)
    await busy.open()
    await idle.open()
    try:
        for i in range(10):
            await busy.put(_event(f"e{i}"))
        first = await asyncio.wait_for(busy.take(), 5)
        assert first.id == "e0"
        # Within 20 s, so before the ack wait: given back, not redelivered.
        rest = [await asyncio.wait_for(idle.take(), 20) for _ in range(9)]
        assert sorted(e.id for e in rest) == sorted(f"e{i}" for i in range(1, 10))
        for event in rest:
            await idle.ack(event.id)
        await busy.ack("e0")
    finally:
        await busy.close()
        await idle.close()
