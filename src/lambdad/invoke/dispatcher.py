"""Runs queued ``Event`` invocations in the background through the ``Invoker``.

Retries, event age, destinations and DLQs come with the durable queue; for now every accepted
event runs once, and its outcome is in the function's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time

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
    def __init__(
        self,
        queue: Queue,
        invoker: Invoker,
        account_id: str,
        workers: int = 64,
        *,
        throttle_delay: float = 1.0,
    ) -> None:
        self._queue = queue
        #: The first delay before a throttled event runs again (doubled per throttle, capped).
        self._throttle_delay = throttle_delay
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
        except asyncio.CancelledError:
            # Interrupted by shutdown: left unacked, so it runs again after a restart.
            self._slots.release()
            raise
        except errors.TooManyRequestsException:
            try:
                await self._put_back(event)
            finally:
                self._slots.release()
            return
        except errors.LambdaError as exc:
            log.warning("event %s for %s dropped: %s", event.id, event.function_name, exc)
        except Exception:
            log.exception("event %s for %s failed", event.id, event.function_name)
        try:
            await self._queue.ack(event.id)
        finally:
            self._slots.release()

    async def _put_back(self, event: QueuedEvent) -> None:
        """Queue a throttled event again, later, without counting an attempt (as Lambda does).

        ``Queue.retry`` counts one attempt more than the event it is given carries, so it is
        given one less. The backoff doubles per throttle (kept in the event's attributes), up
        to 5 minutes (scaled). TODO: drop the event at its maximum age once events expire.
        """
        throttles = int(event.attributes.get("throttles", "0")) + 1
        delay = min(self._throttle_delay * 2 ** (throttles - 1), self._throttle_delay * 300)
        again = dataclasses.replace(
            event,
            attempt=event.attempt - 1,
            attributes={**event.attributes, "throttles": str(throttles)},
        )
        log.debug(
            "event %s for %s throttled; again in %.3f s", event.id, event.function_name, delay
        )
        await self._queue.retry(again, time.time() + delay)

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
