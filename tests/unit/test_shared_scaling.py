"""The scaling rate shared by a cluster's nodes (runtime/shared_scaling.py), over the in-memory
ledger: nodes take tokens from one bucket per function in batches, an empty bucket is Lambda's
rate throttle, and tokens a node did not spend go back for the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from lambdad import errors
from lambdad.runtime.scaling import REASON
from lambdad.runtime.shared_scaling import SharedScaleRate
from lambdad.runtime.spec import Place
from lambdad.store.ledger import MemoryLedger

T = TypeVar("T")
PLACE = Place("000000000000", "us-east-1")
#: A window no test outlives: the bucket does not refill meanwhile.
HOUR = 3600.0


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


def test_nodes_share_one_bucket_per_function_and_give_back_what_they_did_not_spend() -> None:
    """Rate 3: the first node's take holds a spare token, the second gets the last one, a third
    start on the second is Lambda's rate throttle; once the first node's spare token has
    lingered it goes back and the second node starts one more; another function has a bucket of
    its own."""

    async def body() -> None:
        ledger = MemoryLedger()
        one = SharedScaleRate(ledger, 3, HOUR, linger=0.05)
        two = SharedScaleRate(ledger, 3, HOUR, linger=0.05)
        await one.start()
        await two.start()
        await one.take(PLACE, "fn")  # takes 2: one spent, one held
        await two.take(PLACE, "fn")  # the bucket's last
        with pytest.raises(errors.TooManyRequestsException) as refused:
            await two.take(PLACE, "fn")
        assert refused.value.reason == REASON
        assert str(refused.value) == "Rate Exceeded."
        await two.take(PLACE, "other")
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # polls until the first node's spare token is back in the bucket
            try:
                await two.take(PLACE, "fn")
                break
            except errors.TooManyRequestsException:
                assert asyncio.get_running_loop().time() < deadline, "never given back"
                await asyncio.sleep(0.01)
        with pytest.raises(errors.TooManyRequestsException):
            await one.take(PLACE, "fn")
        await one.close()
        await two.close()
        await one.close()  # idempotent

    run(body)


def test_a_node_spends_its_batch_without_asking_the_ledger() -> None:
    """With a full bucket of 1,000 a cold start takes five tokens at once: the next four starts
    cost no round trip to the ledger."""

    class CountingLedger(MemoryLedger):
        takes = 0

        async def take_tokens(
            self, scope: str, need: int, spare: int, rate: int, window: float
        ) -> tuple[int, float]:
            self.takes += 1
            return await super().take_tokens(scope, need, spare, rate, window)

    async def body() -> None:
        ledger = CountingLedger()
        rate = SharedScaleRate(ledger, 1000, HOUR)
        for _ in range(5):
            await rate.take(PLACE, "fn")
        assert ledger.takes == 1
        await rate.take(PLACE, "fn")
        assert ledger.takes == 2

    run(body)
