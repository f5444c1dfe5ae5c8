"""The contract every ``ConcurrencyLedger`` passes (store/ledger.py): grants on a scope never
sum past its limit, expire with their lease, shrink and drop when given back; on memory and on
PostgreSQL (tests/postgres_server.py starts the real server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from lambdad.store.ledger import ConcurrencyLedger, MemoryLedger, share_of

T = TypeVar("T")
#: A lease no test outlives.
LONG = 600.0


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


@pytest.fixture(params=["memory", "postgres"])
def make_ledger(request: pytest.FixtureRequest) -> Callable[[], ConcurrencyLedger]:
    """Ledgers of one implementation, all on the same (new, empty) data."""
    if request.param == "memory":
        shared = MemoryLedger()
        return lambda: shared
    from lambdad.store.postgres_ledger import PostgresLedger

    url = request.getfixturevalue("postgres").database()
    return lambda: PostgresLedger(url)


async def _with(
    make: Callable[[], ConcurrencyLedger],
    body: Callable[[ConcurrencyLedger], Coroutine[Any, Any, None]],
) -> None:
    ledger = make()
    await ledger.open()
    try:
        await body(ledger)
    finally:
        await ledger.close()
        await ledger.close()  # idempotent


def test_the_share_of_a_claim_leaves_half_the_rest() -> None:
    """A claim gets what it needs and at most half of what is left after it, up to its spare;
    nothing when what it needs does not fit."""
    assert share_of(10, 1, 4) == 5
    assert share_of(5, 1, 4) == 3
    assert share_of(2, 1, 4) == 1
    assert share_of(1, 1, 4) == 1
    assert share_of(0, 1, 4) is None
    assert share_of(3, 4, 0) is None
    assert share_of(9, 2, 0) == 2


def test_grants_on_a_scope_never_pass_its_limit(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """Nodes claiming one slot each get one until the limit is reached, then None; a claim
    that grows a node's grant counts its own grant as replaced, not added; scopes are apart."""

    async def body(ledger: ConcurrencyLedger) -> None:
        assert await ledger.claim("a", "s", 1, 0, 2, LONG) == 1
        assert await ledger.claim("b", "s", 1, 0, 2, LONG) == 1
        assert await ledger.claim("c", "s", 1, 0, 2, LONG) is None
        assert await ledger.claim("a", "s", 2, 0, 2, LONG) is None
        assert await ledger.grants("s") == {"a": 1, "b": 1}  # a refused claim changed nothing
        assert await ledger.claim("c", "other", 1, 0, 2, LONG) == 1
        await ledger.release("b", "s", 0)
        assert await ledger.claim("a", "s", 2, 0, 2, LONG) == 2
        assert await ledger.grants("s") == {"a": 2}

    run(lambda: _with(make_ledger, body))


def test_a_claim_takes_spare_slots_but_leaves_half_the_rest(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """A claim with spare slots gets them while the scope has room, at most half of what is
    left, so later nodes still get theirs; released slots are free again."""

    async def body(ledger: ConcurrencyLedger) -> None:
        assert await ledger.claim("a", "s", 1, 4, 10, LONG) == 5
        assert await ledger.claim("b", "s", 1, 4, 10, LONG) == 3
        assert await ledger.claim("c", "s", 1, 4, 10, LONG) == 1
        assert await ledger.claim("d", "s", 1, 4, 10, LONG) == 1
        assert await ledger.claim("e", "s", 1, 4, 10, LONG) is None
        await ledger.release("a", "s", 2)
        await ledger.release("a", "s", 9)  # a release never grows a grant
        assert await ledger.grants("s") == {"a": 2, "b": 3, "c": 1, "d": 1}
        assert await ledger.claim("e", "s", 1, 4, 10, LONG) == 2

    run(lambda: _with(make_ledger, body))


def test_an_expired_grant_holds_nothing_and_is_not_renewed(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """A grant whose lease has run out counts for nothing: another node gets its slots, and
    its node's renewal no longer names it; a live grant is renewed."""

    async def body(ledger: ConcurrencyLedger) -> None:
        assert await ledger.claim("a", "s", 1, 0, 1, LONG) == 1
        assert await ledger.claim("b", "s", 1, 0, 1, LONG) is None
        assert await ledger.renew("a", LONG) == {"s"}
        assert await ledger.claim("a", "t", 1, 0, 1, 0.001) == 1
        deadline = asyncio.get_running_loop().time() + 30
        while await ledger.claim("b", "t", 1, 0, 1, LONG) is None:
            assert asyncio.get_running_loop().time() < deadline, "a's grant never expired"
            await asyncio.sleep(0.01)
        assert await ledger.renew("a", LONG) == {"s"}
        assert await ledger.grants("t") == {"b": 1}

    run(lambda: _with(make_ledger, body))


def test_a_node_dropping_its_grants_frees_every_scope(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """``drop`` gives back every grant of a node, and only that node's."""

    async def body(ledger: ConcurrencyLedger) -> None:
        for scope in ("s", "t"):
            assert await ledger.claim("a", scope, 1, 0, 2, LONG) == 1
            assert await ledger.claim("b", scope, 1, 0, 2, LONG) == 1
        await ledger.drop("a")
        assert await ledger.grants("s") == await ledger.grants("t") == {"b": 1}
        assert await ledger.renew("a", LONG) == set()

    run(lambda: _with(make_ledger, body))


def test_claims_at_once_from_many_nodes_never_pass_the_limit(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """Forty claims of one slot on a scope of five, made at once through four ledgers (four
    nodes' connections), grant exactly five."""

    async def body() -> None:
        ledgers = [make_ledger() for _ in range(4)]
        for ledger in ledgers:
            await ledger.open()
        try:
            got = await asyncio.gather(
                *(ledgers[i % 4].claim(f"n{i}", "s", 1, 0, 5, LONG) for i in range(40))
            )
            assert sorted(g for g in got if g is not None) == [1] * 5
            assert sum((await ledgers[0].grants("s")).values()) == 5
        finally:
            for ledger in ledgers:
                await ledger.close()

    run(body)


def test_scaling_tokens_are_taken_in_batches_and_refill_over_the_window(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """A bucket never seen is full; a take gets what it needs and at most half of what is left
    as spare; an empty bucket takes nothing and says how long until a token is there; tokens
    given back return (never beyond the rate); the bucket refills at rate per window."""

    async def body(ledger: ConcurrencyLedger) -> None:
        assert await ledger.take_tokens("t", 1, 4, 10, 3600.0) == (5, 0.0)
        assert await ledger.take_tokens("t", 1, 4, 10, 3600.0) == (3, 0.0)
        assert await ledger.take_tokens("t", 1, 4, 10, 3600.0) == (1, 0.0)
        assert await ledger.take_tokens("t", 1, 0, 10, 3600.0) == (1, 0.0)
        granted, wait = await ledger.take_tokens("t", 1, 4, 10, 3600.0)
        assert granted == 0
        assert 0 < wait <= 360.0  # one token of 10 per hour
        await ledger.give_tokens("t", 3, 10)
        assert (await ledger.take_tokens("t", 1, 0, 10, 3600.0))[0] == 1
        await ledger.give_tokens("t", 50, 10)
        assert await ledger.take_tokens("t", 10, 0, 10, 3600.0) == (10, 0.0)
        assert await ledger.take_tokens("other", 2, 0, 2, 3600.0) == (2, 0.0)
        # A fast bucket: 1,000 tokens a second refill one within milliseconds.
        assert (await ledger.take_tokens("fast", 1000, 0, 1000, 1.0))[0] == 1000

        async def refilled() -> bool:
            return (await ledger.take_tokens("fast", 1, 0, 1000, 1.0))[0] == 1

        for _ in range(200):
            if await refilled():
                return
            await asyncio.sleep(0.01)  # polls for up to 2 s
        raise AssertionError("the bucket never refilled")

    run(lambda: _with(make_ledger, body))


def test_takes_at_once_from_many_nodes_never_get_more_tokens_than_the_bucket_holds(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """Forty takes of one token, made at once through four ledgers (four nodes' connections)
    on a bucket of five per hour, get exactly five."""

    async def body() -> None:
        ledgers = [make_ledger() for _ in range(4)]
        for ledger in ledgers:
            await ledger.open()
        try:
            got = await asyncio.gather(
                *(ledgers[i % 4].take_tokens("b", 1, 0, 5, 3600.0) for i in range(40))
            )
            assert sum(granted for granted, _ in got) == 5
        finally:
            for ledger in ledgers:
                await ledger.close()

    run(body)


def test_a_sweep_forgets_only_buckets_untouched_for_the_age(
    make_ledger: Callable[[], ConcurrencyLedger],
) -> None:
    """A sweep deletes the buckets untouched for its age, which are full again when next
    taken; a bucket used since is kept, with its tokens."""

    async def body(ledger: ConcurrencyLedger) -> None:
        assert (await ledger.take_tokens("old", 2, 0, 2, 3600.0))[0] == 2
        assert await ledger.sweep_tokens(0.0) >= 1
        assert (await ledger.take_tokens("old", 2, 0, 2, 3600.0))[0] == 2  # full again
        assert await ledger.sweep_tokens(3600.0) == 0
        assert (await ledger.take_tokens("old", 1, 0, 2, 3600.0))[0] == 0  # kept, empty

    run(lambda: _with(make_ledger, body))
