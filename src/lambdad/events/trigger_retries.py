"""Durable retries of a time trigger's delivery: an ``Event`` invoke that Lambda refused with an
answer worth trying again (throttling, a function not ready, a fault), tried again with
exponential backoff and jitter until the target's ``RetryPolicy`` runs out, across restarts.

A source (``events/schedules.py``, ``events/rule_triggers.py``) makes the first attempt itself
when the occurrence fires. On a retriable refusal it calls :meth:`TriggerRetries.later` with
everything the next attempt needs (target, payload, policy, dead-letter queue): the record is a
row of ``Table.TRIGGER_RETRIES`` keyed by the trigger's id and the delivery's id, written before
the failed attempt returns. When it is due (here, or after a restart: every row is loaded at
start), the handler the source registered for its kind makes the next attempt and calls
``later`` again, or :meth:`done` once the invoke was accepted, was queued before, or was
dead-lettered. A delivery's request id is its idempotency key in the queue (``once``), so an
attempt repeated after a crash between the queue's accept and the ``done`` queues nothing twice.

**Backoff.** Retry ``n`` (1, 2, ...) waits ``b = min(2 ** (n - 1), 60)`` seconds (on lambdad's
time scale) with *equal jitter*: ``b / 2 + uniform(0, b / 2)``. EventBridge documents
"exponential backoff and jitter, or randomized delay" without the numbers; equal jitter keeps
the growth (a retry never comes back at once) while occurrences throttled together spread
out. Rejected: full jitter (``uniform(0, b)``: half the retries of a throttled burst would come
back within half the base, into the same throttle), no jitter (every occurrence refused at
once retries at once, for ever in step).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad import errors
from lambdad.store.base import Store, StoreError, Table

log = logging.getLogger(__name__)

#: What Lambda answers that Scheduler and EventBridge try again (throttling, a function not
#: ready, a fault); anything else goes to the dead-letter queue at once.
RETRIED = (
    errors.TooManyRequestsException,
    errors.ResourceConflictException,
    errors.ServiceException,
)

#: ``(*trigger id, delivery id)``: ``(account, region, kind, *name, delivery id)``.
RetryKey = tuple[str, ...]
#: Makes the next attempt of a delivery from its record (and calls ``later`` or ``done``).
Handler = Callable[[RetryKey, dict[str, Any]], Awaitable[None]]
#: The longest base wait between two attempts (seconds, before the time scale).
MAX_BACKOFF = 60.0
#: Where the trigger kind is in a key.
_KIND = 2


class RetriesState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class TriggerRetries:
    """The pending retries of every time trigger's deliveries, kept in ``store``."""

    def __init__(
        self, store: Store, retry_delay: float = 1.0, rng: random.Random | None = None
    ) -> None:
        self._store = store
        #: Seconds of one unit of backoff (1 s on lambdad's time scale).
        self._retry_delay = retry_delay
        self._rng = rng or random.Random()
        self._handlers: dict[str, Handler] = {}
        self._heap: list[tuple[float, int, RetryKey]] = []
        self._pending: dict[RetryKey, tuple[int, dict[str, Any]]] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.state = RetriesState.NEW

    def handle(self, kind: str, handler: Handler) -> None:
        """Due retries of triggers of ``kind`` go to ``handler``."""
        self._handlers[kind] = handler

    def delay(self, retry: int) -> float:
        """The wait before retry ``retry`` (1 for the first): exponential, equal jitter."""
        base = self._retry_delay * min(2.0 ** (retry - 1), MAX_BACKOFF)
        return base / 2 + self._rng.uniform(0.0, base / 2)

    async def later(self, key: RetryKey, doc: dict[str, Any], retry: int) -> None:
        """Record that the delivery ``key`` is to be tried again (its retry number ``retry``),
        after the backoff; ``doc`` is what the handler needs (JSON). Durable on return."""
        record = {**doc, "retry": retry, "at": time.time() + self.delay(retry)}
        await self._store.put(Table.TRIGGER_RETRIES, key, record)
        self._push(key, record)

    async def done(self, key: RetryKey) -> None:
        """The delivery ``key`` needs no more attempts."""
        self._pending.pop(key, None)
        await self._store.delete(Table.TRIGGER_RETRIES, key)

    def _push(self, key: RetryKey, record: dict[str, Any]) -> None:
        self._seq += 1
        self._pending[key] = (self._seq, record)
        heapq.heappush(self._heap, (float(record["at"]), self._seq, key))
        self._wake.set()

    async def start(self) -> None:
        """Load every pending retry (those of a previous run too) and run them when due."""
        if self.state is not RetriesState.NEW:
            raise RuntimeError(f"trigger retries are {self.state.value}")
        for key, record in await self._store.scan(Table.TRIGGER_RETRIES):
            self._push(tuple(key), record)
        self.state = RetriesState.RUNNING
        self._task = asyncio.create_task(self._run(), name="trigger-retries")

    async def close(self) -> None:
        """Stop; retries under way are cancelled (their record makes the next start run them
        again). Idempotent."""
        if self.state is RetriesState.CLOSED:
            return
        self.state = RetriesState.CLOSED
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                _, seq, key = heapq.heappop(self._heap)
                pending = self._pending.get(key)
                if pending is None or pending[0] != seq:
                    continue  # done, or planned again since
                del self._pending[key]
                self._spawn(key, pending[1])
            delay = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _spawn(self, key: RetryKey, record: dict[str, Any]) -> None:
        handler = self._handlers.get(key[_KIND])
        if handler is None:
            log.error("no handler for the retry %s: dropped", "/".join(key))
            return

        async def attempt() -> None:
            try:
                await handler(key, record)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # the record stays: try again after the next backoff
                log.error("retrying %s: %s", "/".join(key), exc)
                self._push(key, {**record, "at": time.time() + self.delay(record["retry"])})
            except Exception:
                log.exception("retrying %s failed", "/".join(key))

        task = asyncio.create_task(attempt(), name=f"retry-{key[-1]}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
