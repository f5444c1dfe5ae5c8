"""Runs queued ``Event`` invocations in the background through the ``Invoker``.

Retries, event age, destinations and DLQs come with the durable queue; for now every accepted
event runs once, and its outcome is in the function's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.invoke.service import Invoker
from lambdad.store.base import Queue, QueuedEvent

log = logging.getLogger(__name__)


class DispatcherState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Dispatcher:
    def __init__(self, queue: Queue, invoker: Invoker, account_id: str, workers: int = 64) -> None:
        self._queue = queue
        self._invoker = invoker
        self._account_id = account_id
        self._slots = asyncio.Semaphore(workers)
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.state = DispatcherState.NEW

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._take_forever(), name="event-dispatcher")
        self.state = DispatcherState.RUNNING

    async def _take_forever(self) -> None:
        while True:
            await self._slots.acquire()
            event = await self._queue.take()
            task = asyncio.create_task(self._run(event), name=f"event-{event.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, event: QueuedEvent) -> None:
        try:
            await self._invoker.run_queued(Scope(self._account_id, event.region), event)
        except errors.LambdaError as exc:
            log.warning("event %s for %s dropped: %s", event.id, event.function_name, exc)
        except Exception:
            log.exception("event %s for %s failed", event.id, event.function_name)
        finally:
            await self._queue.ack(event.id)
            self._slots.release()

    async def close(self) -> None:
        if self.state is DispatcherState.CLOSED:
            return
        self.state = DispatcherState.CLOSED
        tasks = [t for t in [self._loop_task, *self._running] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
