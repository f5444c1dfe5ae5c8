"""Ownership claims against a real NATS server: the bucket's create / renew / release by
revision and its TTL, and ``Owners`` (events/owners.py) spreading keys over nodes, handing a
dead node's keys over after the lease and a stopped node's at once, never to two nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from lambdad.events.owners import Owners
from lambdad.store.nats_link import NatsLink
from lambdad.store.nats_owners import NatsClaims
from tests.contract.conftest import run
from tests.nats_server import NatsServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

#: The lease of these tests (the bucket's TTL), seconds.
LEASE = 1.0


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Node:
    """One node's link, bucket and owners, and a record of the work it runs."""

    def __init__(self, url: str, name: str) -> None:
        self.link = NatsLink(url, name)
        self.claims = NatsClaims(self.link, LEASE)
        self.owners = Owners(self.claims, name)
        self.running: set[str] = set()

    async def open(self) -> None:
        await self.link.open()
        await self.claims.open()

    async def gained(self, key: str) -> None:
        self.running.add(key)

    async def lost(self, key: str) -> None:
        self.running.discard(key)

    async def close(self) -> None:
        await self.owners.close()
        await self.claims.close()
        await self.link.close()

    async def die(self) -> None:
        """As SIGKILL: nothing released; the loop and the connection just stop."""
        task = self.owners._task
        assert task is not None
        task.cancel()
        await self.claims.close()
        await self.link.close()


@run
async def test_a_claim_is_made_once_renewed_by_revision_and_expires(server: NatsServer) -> None:
    """A key is claimed by the first node only; a renewal needs the revision the holder last
    wrote; a released key can be claimed again; an unrenewed claim is gone after the lease."""
    a, b = Node(server.url, "a"), Node(server.url, "b")
    await a.open()
    await b.open()
    try:
        first = await a.claims.claim("esm.one", "a")
        assert first is not None
        assert await b.claims.claim("esm.one", "b") is None
        assert await b.claims.renew("esm.one", "b", first - 1) is None
        second = await a.claims.renew("esm.one", "a", first)
        assert second is not None
        assert second > first
        assert await a.claims.renew("esm.one", "a", first) is None  # a stale revision
        held = await b.claims.claims()
        assert (held["esm.one"].owner, held["esm.one"].revision) == ("a", second)
        await a.claims.release("esm.one", second)
        assert "esm.one" not in await b.claims.claims()
        third = await b.claims.claim("esm.one", "b")
        assert third is not None
        # b never renews it: it expires, and a can claim it (the server may still refuse the
        # claim just as the key goes: the owners' next turn tries again, and so does this).
        deadline = time.monotonic() + 15
        while await a.claims.claim("esm.one", "a") is None:
            assert time.monotonic() < deadline, "the claim did not expire"
            await asyncio.sleep(0.05)
        assert (await b.claims.claims())["esm.one"].owner == "a"
    finally:
        await a.close()
        await b.close()


@run
async def test_keys_spread_over_nodes_and_each_runs_on_one(server: NatsServer) -> None:
    """Two nodes wanting the same twenty keys each run some of them, and no key on both."""
    nodes = [Node(server.url, name) for name in ("a", "b")]
    keys = [f"esm.{n}" for n in range(20)]
    try:
        for node in nodes:
            await node.open()
            for key in keys:
                node.owners.want(key, node)
            await node.owners.start()
        await until(lambda: sorted(nodes[0].running | nodes[1].running) == sorted(keys))
        await until(lambda: all(node.running for node in nodes))
        assert not nodes[0].running & nodes[1].running
    finally:
        for node in nodes:
            await node.close()


@run
async def test_a_dead_nodes_keys_move_once_their_lease_ran_out(server: NatsServer) -> None:
    """A node that dies (nothing released) keeps its keys while their claims last: the other
    node runs none of them before the bucket lost them, and all of them after."""
    a, b = Node(server.url, "a"), Node(server.url, "b")
    keys = [f"esm.{n}" for n in range(8)]
    try:
        for node in (a, b):
            await node.open()
            for key in keys:
                node.owners.want(key, node)
            await node.owners.start()
        await until(lambda: len(a.running) + len(b.running) == len(keys))
        await until(lambda: bool(a.running) and bool(b.running))
        dead = set(a.running)
        await a.die()
        while b.running != set(keys):
            claims = await b.claims.claims()
            still_a = {k for k in dead if k in claims and claims[k].owner == "a"}
            assert not still_a & b.running  # never while the dead node's claim lasts
            await asyncio.sleep(0.02)
    finally:
        for node in (a, b):
            await node.close()


@run
async def test_a_joining_node_takes_its_share_and_a_stopping_one_hands_it_back(
    server: NatsServer,
) -> None:
    """With a lease of a minute, a node that joins gets its share from the running one, and
    when it stops cleanly it stops its work and the other runs it again at once (long before
    any lease could have run out): releases and joins are heard, not waited out."""
    b = Node(server.url, "b")
    c = Node(server.url, "c")
    b.claims = NatsClaims(b.link, 60.0)
    b.owners = Owners(b.claims, "b")
    keys = [f"esm.{n}" for n in range(8)]
    try:
        await b.open()
        assert b.claims.lease == 60.0
        for key in keys:
            b.owners.want(key, b)
        await b.owners.start()
        await until(lambda: b.running == set(keys))
        await c.open()
        assert c.claims.lease == 60.0  # the bucket's, not c's own setting
        for key in keys:
            c.owners.want(key, c)
        await c.owners.start()
        await until(lambda: bool(c.running) and len(b.running) + len(c.running) == len(keys))
        assert not b.running & c.running
        await c.owners.close()
        assert not c.running
        await until(lambda: b.running == set(keys))
    finally:
        for node in (b, c):
            await node.close()


@run
async def test_work_that_fails_to_start_gives_its_claim_up_and_is_tried_again(
    server: NatsServer,
) -> None:
    """A key whose work fails to start (its store was down) is released, not held idle, and
    taken again at a later turn, when the work starts."""
    node = Node(server.url, "a")
    failures = [RuntimeError("the store is down")]

    async def gained(key: str) -> None:
        if failures:
            raise failures.pop()
        node.running.add(key)

    node.gained = gained  # type: ignore[method-assign]
    try:
        await node.open()
        node.owners.want("esm.x", node)
        await node.owners.start()
        assert not node.running  # the first turn's start failed (and gave the claim up)
        await until(lambda: node.running == {"esm.x"})
        assert node.owners.holds("esm.x")
    finally:
        await node.close()


@run
async def test_work_stops_while_nats_is_away_and_resumes_on_one_node_each_after(
    server: NatsServer,
) -> None:
    """The NATS server stopped under two nodes: both stop the work they can no longer renew
    (a request to the bucket never waits past a quarter of the lease); started again on its
    store, every key runs again, each on one node."""
    nodes = [Node(server.url, name) for name in ("a", "b")]
    keys = [f"esm.{n}" for n in range(8)]
    try:
        for node in nodes:
            await node.open()
            for key in keys:
                node.owners.want(key, node)
            await node.owners.start()
        await until(lambda: len(nodes[0].running) + len(nodes[1].running) == len(keys))
        await asyncio.to_thread(server.stop)
        await until(lambda: not nodes[0].running and not nodes[1].running)
        await asyncio.to_thread(server.start)
        await until(lambda: nodes[0].running | nodes[1].running == set(keys))
        assert not nodes[0].running & nodes[1].running
    finally:
        for node in nodes:
            await node.close()


@run
async def test_reads_of_the_claims_make_no_consumer_each(server: NatsServer) -> None:
    """Twelve hundred reads of the claims (a node reads four times a lease) all answer and
    leave the bucket's stream with the one watcher it had: a consumer per read piled up on
    the server until it refused them all ("maximum consumers limit reached", 1000)."""
    node = Node(server.url, "a")
    node.claims = NatsClaims(node.link, 60.0)  # the claim outlasts the reads
    try:
        await node.open()
        revision = await node.claims.claim("esm.x", "a")
        js = node.link.client.jetstream()
        before = (await js.stream_info("KV_LAMBDAD_OWNERS")).state.consumer_count
        for _ in range(1200):
            claims = await node.claims.claims()
            assert claims["esm.x"].revision == revision
        after = (await js.stream_info("KV_LAMBDAD_OWNERS")).state.consumer_count
        assert after == before == 1
    finally:
        await node.close()


@run
async def test_a_holder_whose_turn_hangs_stops_the_work_before_another_node_starts_it(
    server: NatsServer,
) -> None:
    """A holder whose renewal hangs (a turn stuck on a loaded host) stops the key's work by
    itself once its last renewal is past the fence, without waiting for its next turn; the
    other node starts the work only after that, once the claim expired."""
    a, b = Node(server.url, "a"), Node(server.url, "b")
    events: list[tuple[str, str]] = []
    stuck = asyncio.Event()

    async def hang(key: str, owner: str, revision: int) -> int | None:
        stuck.set()
        await asyncio.Event().wait()
        return None

    for node in (a, b):
        node.gained = (  # type: ignore[method-assign]
            lambda key, node=node: _note(events, node, "gained", key)
        )
        node.lost = (  # type: ignore[method-assign]
            lambda key, node=node: _note(events, node, "lost", key)
        )
    try:
        await a.open()
        a.owners.want("esm.x", a)
        await a.owners.start()
        await until(lambda: a.running == {"esm.x"})
        a.claims.renew = hang  # type: ignore[method-assign]
        await stuck.wait()
        await until(lambda: not a.running)
        assert not a.owners.holds("esm.x")
        await b.open()
        b.owners.want("esm.x", b)
        await b.owners.start()
        await until(lambda: b.running == {"esm.x"})
        assert events.index(("a", "lost")) < events.index(("b", "gained"))
    finally:
        for node in (a, b):
            await node.close()


async def _note(events: list[tuple[str, str]], node: Node, what: str, key: str) -> None:
    events.append((node.owners.node, what))
    if what == "gained":
        node.running.add(key)
    else:
        node.running.discard(key)
