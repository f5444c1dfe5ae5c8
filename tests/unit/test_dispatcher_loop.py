"""The dispatcher's take loop keeps going through a queue that keeps failing, and ``close()``
stops it at once even while it waits before taking again."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.functions import Functions
from lambdad.invoke.dispatcher import Dispatcher, DispatcherState
from lambdad.invoke.retries import Retries
from lambdad.invoke.service import Invoker
from lambdad.store.base import QueuedEvent, StoreUnavailable
from lambdad.store.memory import MemoryBlobStore, MemoryQueue, MemoryStore


class BrokenQueue(MemoryQueue):
    """A queue whose ``take`` always fails, counting the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.takes = 0
        self.taken = asyncio.Event()

    async def take(self) -> QueuedEvent:
        self.takes += 1
        self.taken.set()
        raise StoreUnavailable("the queue is broken on purpose")


def _dispatcher(queue: MemoryQueue, time_scale: float) -> Dispatcher:
    store = MemoryStore()
    functions = Functions(store, MemoryBlobStore())
    # The loop under test never gets an event, so nothing is ever invoked.
    invoker = cast(Invoker, object())
    return Dispatcher(
        queue,
        invoker,
        "000000000000",
        retries=Retries(time_scale=time_scale),
        configs=EventInvokeConfigs(store, functions),
    )


def test_a_failing_take_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    """Each failing take is logged with the wait before the next one; the loop stays alive."""
    queue = BrokenQueue()

    async def scenario() -> None:
        dispatcher = _dispatcher(queue, time_scale=0.01)
        await dispatcher.start()
        while queue.takes < 5:
            queue.taken.clear()
            await queue.taken.wait()
        assert dispatcher.state is DispatcherState.RUNNING
        await dispatcher.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert caplog.text.count("taking the next event failed; again in") >= 4
    assert "the event dispatcher stopped" not in caplog.text


def test_close_stops_the_loop_while_it_backs_off() -> None:
    """With a backoff far longer than the test's timeout, close() still returns: it cancels
    the wait instead of sitting it out."""
    queue = BrokenQueue()

    async def scenario() -> None:
        dispatcher = _dispatcher(queue, time_scale=10_000.0)  # the first wait is 1000 s
        await dispatcher.start()
        await queue.taken.wait()
        await dispatcher.close()
        assert dispatcher.state is DispatcherState.CLOSED
        assert queue.takes == 1

    asyncio.run(scenario())
