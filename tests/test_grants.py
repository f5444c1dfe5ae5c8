"""A node's side of the concurrency ledger (invoke/grants.py), over the in-memory ledger: slots
within a grant cost no claim, a full scope refuses, a slot given back lingers on its node and
then frees, a stopped node gives everything back, a grant this node cannot renew stops being
used."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lambdad.invoke.grants import Grants
from lambdad.store.base import StoreUnavailable
from lambdad.store.ledger import MemoryLedger

T = TypeVar("T")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


class CountingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim(
        self, node: str, scope: str, need: int, spare: int, limit: int, lease: float
    ) -> int | None:
        self.claims += 1
        return await super().claim(node, scope, need, spare, limit, lease)


async def _until(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def test_slots_within_a_grant_cost_no_claim() -> None:
    """A run of invocations one after another claims once: the slot stays granted between
    them; spare slots let a few at once run on one claim."""

    async def body() -> None:
        ledger = CountingLedger()
        grants = Grants(ledger, lambda: "a", 600.0)
        await grants.start()
        for _ in range(50):
            assert await grants.take("s", 100)
            grants.give("s")
        assert ledger.claims == 1
        for _ in range(5):  # the first claim took one needed and four spare
            assert await grants.take("s", 100)
        assert ledger.claims == 1
        assert await grants.take("s", 100)
        assert ledger.claims == 2
        assert grants.held("s") == (6, 6 + 4)
        await grants.close()
        await grants.close()
        assert await ledger.grants("s") == {}

    run(body)


def test_a_full_scope_refuses_and_a_lingering_slot_frees_later() -> None:
    """Two nodes share a limit of 2: a third take is refused on either; a slot given back on
    one node still refuses the other until it has lingered, then the other gets it."""

    async def body() -> None:
        ledger = MemoryLedger()
        one = Grants(ledger, lambda: "one", 600.0, linger=0.05)
        two = Grants(ledger, lambda: "two", 600.0, linger=0.05)
        await one.start()
        await two.start()
        assert await one.take("s", 2)
        assert await two.take("s", 2)
        assert not await one.take("s", 2)
        assert not await two.take("s", 2)
        one.give("s")
        assert not await two.take("s", 2)  # it lingers on one
        await _until(lambda: two.take("s", 2))
        assert await ledger.grants("s") == {"two": 2}
        assert not await one.take("s", 2)
        await one.close()
        await two.close()

    run(body)


def test_a_refused_node_nudges_the_others_for_their_idle_slots() -> None:
    """With nudges wired (NATS in a cluster), a slot given back on one node goes at once to
    another node refused on the scope; a slot still in use is not given back."""

    async def body() -> None:
        ledger = MemoryLedger()
        nodes = {name: Grants(ledger, lambda n=name: n, 600.0) for name in ("one", "two")}
        asked: list[tuple[str, list[str]]] = []

        def nudge_from(name: str) -> Callable[[str, list[str]], Coroutine[Any, Any, None]]:
            async def nudge(scope: str, others: list[str]) -> None:
                asked.append((name, others))
                for other in others:
                    await nodes[other].trim_idle(scope)

            return nudge

        for name, grants in nodes.items():
            grants.nudge = nudge_from(name)
            await grants.start()
        one, two = nodes["one"], nodes["two"]
        assert await one.take("s", 2)
        assert await one.take("s", 2)
        assert not await two.take("s", 2)  # both in use on one: nothing to give back
        assert asked == [("two", ["one"])]
        one.give("s")
        assert await two.take("s", 2)  # at once, not after the linger
        assert await ledger.grants("s") == {"one": 1, "two": 1}
        assert one.held("s") == (1, 1)
        await one.close()
        await two.close()

    run(body)


class UnrenewableLedger(MemoryLedger):
    """A ledger that cannot be reached for renewals (claims still pass)."""

    async def renew(self, node: str, lease: float) -> set[str]:
        raise StoreUnavailable("the ledger is down")


def test_a_grant_not_renewed_is_claimed_again() -> None:
    """A grant whose renewals fail expires in the ledger and is no longer used from the
    node's own count: another node gets the slot, and the node's next take claims again and
    is refused."""

    async def body() -> None:
        ledger = UnrenewableLedger()
        one = Grants(ledger, lambda: "one", 0.1)
        two = Grants(ledger, lambda: "two", 600.0)
        await one.start()
        await two.start()
        assert await one.take("s", 1)
        one.give("s")
        await _until(lambda: two.take("s", 1))
        assert not await one.take("s", 1)
        await one.close()
        await two.close()

    run(body)


def test_a_lowered_limit_is_not_overrun_from_a_grant_held_before() -> None:
    """A node holding spare slots claimed under a limit of 3 does not fill them once the
    limit it is given is 1: it claims again, and the ledger refuses a second slot."""

    async def body() -> None:
        ledger = MemoryLedger()
        grants = Grants(ledger, lambda: "one", 600.0)
        await grants.start()
        assert await grants.take("s", 3)
        assert grants.held("s") == (1, 2)  # one needed, one spare (half of what was left)
        assert not await grants.take("s", 1)
        assert grants.held("s")[0] == 1
        await grants.close()

    run(body)
