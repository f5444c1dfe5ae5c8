"""The time-trigger engine: an occurrence recorded but not yet delivered when lambdad died is
delivered at the next start with the same id, and one that was delivered is offered again with
that id (the queue refuses the second), so no occurrence is lost or doubled."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable

from lambdad.control.clock import SchedulerClock
from lambdad.control.schedule_expressions import parse_expression
from lambdad.events.triggers import TimeTriggers, Trigger, TriggerId, fire_id
from lambdad.store.base import Table
from lambdad.store.memory import MemoryStore

START = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()
ID: TriggerId = ("000000000000", "us-east-1", "test", "t1")


class Source:
    """One ``rate(1 minute)`` trigger; ``fire`` records its calls, or hangs if told to."""

    kind = "test"

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.fired: list[tuple[float, str]] = []
        self.called = asyncio.Event()
        self.grew = asyncio.Event()

    def _trigger(self) -> Trigger:
        expression = parse_expression("rate(1 minute)")
        return Trigger(ID, expression, anchor=START, end=None, window=0.0, event_age=86400.0)

    async def triggers(self) -> list[Trigger]:
        return [self._trigger()]

    async def trigger(self, trigger_id: TriggerId) -> Trigger | None:
        return self._trigger()

    def subscribe(self, listener: Callable[[TriggerId], None]) -> None:
        return None

    async def fire(self, trigger: Trigger, occurrence: float, fired_id: str) -> None:
        self.called.set()
        if self.hang:
            await asyncio.Event().wait()  # killed before delivering
        self.fired.append((occurrence, fired_id))
        self.grew.set()

    async def finished(self, trigger: Trigger) -> None:
        return None


def test_a_recorded_occurrence_is_delivered_after_a_crash_with_its_id() -> None:
    """The first occurrence is recorded, its delivery is cut short; a new engine on the same
    store delivers that occurrence, with the same id, before any later one."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        clock = SchedulerClock(START + 59.9, speed=1.0)  # the first occurrence in 0.1 s
        dying = Source(hang=True)
        first = TimeTriggers(store, clock, [dying])
        await first.start()
        await asyncio.wait_for(dying.called.wait(), 5)
        await first.close()  # as a SIGKILL would leave it: recorded, not delivered
        record = await store.get(Table.TRIGGER_FIRES, ID)
        assert record is not None
        assert record["last"] == START + 60

        again = Source()
        second = TimeTriggers(store, SchedulerClock(START + 61, speed=1.0), [again])
        await second.start()
        await asyncio.wait_for(again.called.wait(), 5)
        await second.close()
        assert again.fired[0] == (START + 60, fire_id(ID, START + 60))
        await store.close()

    asyncio.run(scenario())


def test_the_next_occurrence_follows_the_recorded_one() -> None:
    """After a restart the engine plans from the recorded occurrence: the next one is a minute
    later, never the recorded one under another id."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        await store.put(Table.TRIGGER_FIRES, ID, {"last": START + 60, "at": 0.0})
        source = Source()
        engine = TimeTriggers(store, SchedulerClock(START + 119.8, speed=1.0), [source])
        await engine.start()
        await asyncio.wait_for(source.called.wait(), 5)
        await engine.close()
        assert source.fired == [(START + 120, fire_id(ID, START + 120))]
        await store.close()

    asyncio.run(scenario())


async def _fired_through(store: MemoryStore, clock: SchedulerClock, until: float) -> list[float]:
    """Start an engine on ``store`` and ``clock`` (the trigger last fired at START + 60), wait
    until it delivered the occurrence ``until``, and say which it delivered, in order."""
    await store.put(Table.TRIGGER_FIRES, ID, {"last": START + 60, "at": 0.0})
    source = Source()
    engine = TimeTriggers(store, clock, [source])
    await engine.start()
    async with asyncio.timeout(5):
        while until not in [at for at, _ in source.fired]:
            source.grew.clear()
            await source.grew.wait()
    await engine.close()
    return [at for at, _ in source.fired]


def test_occurrences_due_since_the_engine_began_each_fire_at_its_start() -> None:
    """An engine whose lambdad has been up since before five occurrences came due unfired
    (another node held them, then died) fires each of them, in order, once; an engine that
    began only now (lambdad was down) fires the latest of them only."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        up_since = START + 30  # the clock read this six real minutes ago
        taking_over = SchedulerClock(up_since, speed=1.0, origin=time.time() - 360)
        minutes = [START + 60 * m for m in range(2, 7)]
        assert await _fired_through(store, taking_over, minutes[-1]) == minutes
        restarted = SchedulerClock(START + 390, speed=1.0)
        assert await _fired_through(store, restarted, minutes[-1]) == [minutes[-1]]
        await store.close()

    asyncio.run(scenario())
