"""Durable retries of a time trigger's delivery: the backoff grows with jitter inside its
bounds, and a retry recorded by one engine is run by the next one on the same store."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from lambdad.events.trigger_retries import MAX_BACKOFF, RetryKey, TriggerRetries
from lambdad.store.base import Table
from lambdad.store.memory import MemoryStore

KEY: RetryKey = ("000000000000", "us-east-1", "test", "t1", "delivery-1")


def test_the_backoff_doubles_with_equal_jitter_up_to_a_minute() -> None:
    """Retry n waits between half and all of min(2 ** (n - 1), 60) units, and not always the
    same (EventBridge retries "with exponential backoff and jitter")."""
    retries = TriggerRetries(MemoryStore(), retry_delay=1.0, rng=random.Random(7))
    for retry in range(1, 12):
        base = min(2.0 ** (retry - 1), MAX_BACKOFF)
        delays = [retries.delay(retry) for _ in range(50)]
        assert all(base / 2 <= delay <= base for delay in delays)
        assert len(set(delays)) > 1


def test_a_recorded_retry_is_run_by_the_next_engine_and_forgotten_when_done() -> None:
    """A retry written by one engine (then closed, as by a crash) is handed to the handler of
    its kind by a new engine on the same store; ``done`` deletes its record."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        first = TriggerRetries(store, retry_delay=0.001)
        await first.start()
        await first.close()  # before its retry was due: only the record is left
        await first.later(KEY, {"payload": "x"}, 1)
        assert await store.get(Table.TRIGGER_RETRIES, KEY) is not None
        handed: asyncio.Queue[tuple[RetryKey, dict[str, Any]]] = asyncio.Queue()
        second = TriggerRetries(store, retry_delay=0.001)

        async def handler(key: RetryKey, record: dict[str, Any]) -> None:
            await handed.put((key, record))
            await second.done(key)

        second.handle("test", handler)
        await second.start()
        key, record = await asyncio.wait_for(handed.get(), 10)
        assert key == KEY
        assert (record["payload"], record["retry"]) == ("x", 1)
        assert await store.get(Table.TRIGGER_RETRIES, KEY) is None
        await second.close()
        await store.close()

    asyncio.run(scenario())
