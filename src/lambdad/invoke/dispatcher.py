"""Runs queued ``Event`` invocations in the background through the ``Invoker``, with Lambda's
rules for what comes after an attempt (docs/async-delivery.md):

- a function error (handler exception, timeout, crash, init failure) is retried up to the
  qualifier's ``MaximumRetryAttempts``, about 1 then 2 minutes later (scaled); the attempt
  count is kept with the event in the queue, so a restart does not reset it;
- a throttle (429) or lambdad's own failure puts the event back with a growing delay, without
  counting an attempt (also under a reserved concurrency of 0, where AWS documents sending
  new events straight to the DLQ: see docs/async-delivery.md);
- an event older than ``MaximumEventAgeInSeconds`` (scaled) is not run again: it fails with
  ``EventAgeExceeded``; a stopped recursive loop fails at once; a deleted function's events
  are dropped;
- a success goes to the on-success destination; a final failure to the on-failure destination
  and the function's dead-letter queue. The event is acknowledged after those deliveries, so
  a crash before then runs it again (at least once).

The delays are the ``RetryPolicy``'s (``invoke/retries.py``). No failure of one step stops the
dispatcher: a failing ``take`` is logged and tried again after a bounded exponential backoff; a
failing ``ack`` or ``retry`` is tried again the same way while the event stays owned (a restart
runs it again); a failing invoke puts the event back; a failing delivery is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.event_config import AsyncPolicy, EventInvokeConfigs
from lambdad.control.model import FunctionConfig
from lambdad.invoke import lineage, records
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.records import Condition, Response
from lambdad.invoke.retries import Retries
from lambdad.invoke.service import Invoker, cell_key
from lambdad.store.base import Queue, QueuedEvent

log = logging.getLogger(__name__)

#: The status a stopped recursive invocation has (as a synchronous caller would see it).
RECURSION_STATUS = 400
#: Events whose outcome is being settled at once, per worker slot (``_Slot``).
SETTLING_PER_WORKER = 8


class _Slot:
    """One event's hold on the dispatcher: a worker slot while its attempt runs, then a
    settling slot while its outcome is acknowledged, requeued or delivered.

    The worker slots bound the invocations under way; waiting for the queue's commit of an
    acknowledgement (an fsync, tens of milliseconds on a busy disk) in one would make a burst
    of short invocations run at the pace of the commits, not of the function.
    """

    __slots__ = ("_settling", "_state", "_workers")

    def __init__(self, workers: asyncio.Semaphore, settling: asyncio.Semaphore) -> None:
        self._workers = workers
        self._settling = settling
        self._state = "worker"

    async def attempt_ended(self) -> None:
        """Trade the worker slot for a settling one (waiting while too many settle)."""
        if self._state == "worker":
            await self._settling.acquire()
            self._workers.release()
            self._state = "settling"

    def release(self) -> None:
        """Give back whichever slot is held. Idempotent."""
        if self._state == "worker":
            self._workers.release()
        elif self._state == "settling":
            self._settling.release()
        self._state = "released"


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
        retries: Retries,
        configs: EventInvokeConfigs,
        destinations: Destinations | None = None,
    ) -> None:
        self._queue = queue
        self._retries = retries
        self._invoker = invoker
        self._account_id = account_id
        self._configs = configs
        self._destinations = destinations or Destinations(invoker, retry_delay=retries.time_scale)
        self._slots = asyncio.Semaphore(workers)
        self._settling = asyncio.Semaphore(workers * SETTLING_PER_WORKER)
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.state = DispatcherState.NEW

    async def start(self) -> None:
        if self.state is not DispatcherState.NEW:
            raise RuntimeError(f"dispatcher is {self.state.value}")
        self._loop_task = asyncio.create_task(self._take_forever(), name="event-dispatcher")
        self._loop_task.add_done_callback(_report_end)
        self.state = DispatcherState.RUNNING

    async def _take_forever(self) -> None:
        """Take due events and run each in a task of its own, one per free worker slot. A
        failing ``take`` is logged and tried again after a growing (bounded) wait."""
        backoff = self._retries.step_backoff()
        while True:
            await self._slots.acquire()
            try:
                event = await self._queue.take()
            except Exception:
                self._slots.release()
                delay = backoff.next_delay()
                log.exception("taking the next event failed; again in %.3f s", delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            slot = _Slot(self._slots, self._settling)
            task = asyncio.create_task(self._run(event, slot), name=f"event-{event.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, event: QueuedEvent, slot: _Slot) -> None:
        """One attempt at ``event``. Cancelled by shutdown, it is left unacked (it runs again
        after a restart); a failure of lambdad's own puts it back for later."""
        try:
            await self._attempt(event, slot)
        except Exception:
            log.exception("event %s for %s failed in lambdad", event.id, event.function_name)
            await slot.attempt_ended()
            await self._put_back(event, None)
        finally:
            slot.release()

    async def _settle(
        self, event: QueuedEvent, what: str, op: Callable[[], Awaitable[None]]
    ) -> None:
        """Run the queue operation ``op`` on ``event`` until it succeeds, waiting longer after
        each failure; meanwhile the event stays owned, so a restart runs it again."""
        backoff = self._retries.step_backoff()
        while True:
            try:
                await op()
                return
            except Exception:
                delay = backoff.next_delay()
                log.exception("%s of event %s failed; again in %.3f s", what, event.id, delay)
                await asyncio.sleep(delay)

    async def _ack(self, event: QueuedEvent) -> None:
        await self._settle(event, "acknowledging", lambda: self._queue.ack(event.id))

    async def _requeue(self, event: QueuedEvent, not_before: float) -> None:
        await self._settle(event, "requeueing", lambda: self._queue.retry(event, not_before))

    async def _deliver(self, event: QueuedEvent, what: str, send: Awaitable[bool]) -> bool:
        """A delivery never fails the event it reports on: a failure is logged and dropped
        (``Destinations`` has already tried it again). False when it was not delivered."""
        try:
            return await send
        except Exception:
            log.exception("the %s of event %s was not delivered", what, event.id)
            return False

    async def _attempt(self, event: QueuedEvent, slot: _Slot) -> None:
        scope = Scope(event.account_id or self._account_id, event.region)
        try:
            config = await self._invoker.queued_target(scope, event)
            policy = await self._configs.policy(scope, event.function_name, event.qualifier)
        except errors.ResourceNotFoundException as exc:
            log.warning("event %s for %s dropped: %s", event.id, event.function_name, exc)
            await slot.attempt_ended()  # no attempt: settling holds no worker slot
            await self._ack(event)
            return
        retry = self._retries.for_config(policy)
        if retry.expired(event.enqueued_at, time.time()):
            last = Response.from_attributes(event.attributes)
            await slot.attempt_ended()
            await self._fail(scope, event, config, policy, Condition.EVENT_AGE_EXCEEDED, last)
            return
        self._invoker.metrics.async_age(
            cell_key(scope, config, event.qualifier), (time.time() - event.enqueued_at) * 1000
        )
        try:
            outcome = await self._invoker.run_queued(scope, config, event)
        except errors.LambdaError as exc:
            await slot.attempt_ended()
            await self._refused(scope, event, config, policy, exc)
            return
        await slot.attempt_ended()
        response = Response.of_outcome(outcome)
        delay = retry.retry_delay(event.attempt)
        if not outcome.function_error:
            await self._succeed(scope, event, config, policy, response)
        elif delay is None:
            await self._fail(scope, event, config, policy, Condition.RETRIES_EXHAUSTED, response)
        else:
            await self._retry(event, response, delay)

    async def _refused(
        self,
        scope: Scope,
        event: QueuedEvent,
        config: FunctionConfig,
        policy: AsyncPolicy,
        exc: errors.LambdaError,
    ) -> None:
        """The attempt did not run: a throttle or lambdad's own error waits (no attempt used);
        a stopped recursive loop fails at once, as on Lambda."""
        if isinstance(exc, errors.RecursiveInvocationException):
            refused = Response.refused(RECURSION_STATUS, config.version, exc.code, exc.message)
            await self._fail(scope, event, config, policy, Condition.RETRIES_EXHAUSTED, refused)
        elif isinstance(exc, errors.TooManyRequestsException):
            await self._put_back(
                event, Response.refused(429, config.version, exc.code, exc.message)
            )
        else:
            log.warning("event %s for %s: %s; again later", event.id, event.function_name, exc)
            await self._put_back(event, None)

    async def _retry(self, event: QueuedEvent, response: Response, delay: float) -> None:
        """Run a failed event again after ``delay``, one attempt more (kept durably)."""
        again = dataclasses.replace(
            event, attributes={**event.attributes, **response.to_attributes()}
        )
        log.info(
            "event %s for %s failed (attempt %d); again in %.3f s",
            event.id,
            event.function_name,
            event.attempt + 1,
            delay,
        )
        await self._requeue(again, time.time() + delay)

    async def _put_back(self, event: QueuedEvent, response: Response | None) -> None:
        """Queue a throttled event again, later, without counting an attempt (as Lambda does).

        ``Queue.retry`` counts one attempt more than the event it is given carries, so it is
        given one less. The backoff doubles per throttle (kept in the event's attributes), up
        to 5 minutes (scaled, ``Retries.throttled_delay``); the event's maximum age ends it.
        """
        throttles = int(event.attributes.get("throttles", "0")) + 1
        delay = self._retries.throttled_delay(throttles)
        kept = response.to_attributes() if response is not None else {}
        again = dataclasses.replace(
            event,
            attempt=event.attempt - 1,
            attributes={**event.attributes, **kept, "throttles": str(throttles)},
        )
        log.debug(
            "event %s for %s throttled; again in %.3f s", event.id, event.function_name, delay
        )
        await self._requeue(again, time.time() + delay)

    async def _record(
        self,
        scope: Scope,
        event: QueuedEvent,
        condition: Condition,
        response: Response | None,
        invoke_count: int,
    ) -> records.Record:
        return await records.record(
            request_id=event.id,
            function_arn=self._invoked_arn(scope, event),
            condition=condition,
            invoke_count=invoke_count,
            request_payload=event.payload,
            response=response,
            now=time.time(),
            embed=self._invoker.payloads.embedded,
        )

    @staticmethod
    def _invoked_arn(scope: Scope, event: QueuedEvent) -> str:
        return scope.function_arn(event.function_name, event.qualifier or "$LATEST")

    @staticmethod
    def _trace_after(scope: Scope, event: QueuedEvent) -> str:
        """The event's trace header one hop of its function further (as it ran)."""
        header = event.attributes.get("trace_id")
        return lineage.next_hop(header, scope.function_arn(event.function_name))[0]

    async def _succeed(
        self,
        scope: Scope,
        event: QueuedEvent,
        config: FunctionConfig,
        policy: AsyncPolicy,
        response: Response,
    ) -> None:
        if policy.on_success:
            document = await self._record(
                scope, event, Condition.SUCCESS, response, event.attempt + 1
            )
            send = self._destinations.send_record(
                policy.on_success,
                document,
                success=True,
                function_arn=self._invoked_arn(scope, event),
                trace_id=self._trace_after(scope, event),
            )
            if not await self._deliver(event, "success record", send):
                self._invoker.metrics.destination_failed(cell_key(scope, config, event.qualifier))
        await self._ack(event)

    async def _fail(
        self,
        scope: Scope,
        event: QueuedEvent,
        config: FunctionConfig,
        policy: AsyncPolicy,
        condition: Condition,
        response: Response | None,
    ) -> None:
        """The event's last failure: its record to the on-failure destination, its body to the
        dead-letter queue, then it is acknowledged."""
        metrics = self._invoker.metrics
        key = cell_key(scope, config, event.qualifier)
        metrics.async_dropped(key)
        ran = condition is not Condition.EVENT_AGE_EXCEEDED
        invoke_count = event.attempt + 1 if ran else event.attempt
        log.warning(
            "event %s for %s failed for good (%s after %d invocations)",
            event.id,
            event.function_name,
            condition.value,
            invoke_count,
        )
        if policy.on_failure:
            document = await self._record(scope, event, condition, response, invoke_count)
            send = self._destinations.send_record(
                policy.on_failure,
                document,
                success=False,
                function_arn=self._invoked_arn(scope, event),
                trace_id=self._trace_after(scope, event),
            )
            if not await self._deliver(event, "failure record", send):
                metrics.destination_failed(key)
        if config.dead_letter_target:
            body = (event.payload or b"{}").decode("utf-8", "replace")
            attributes = await records.dead_letter_attributes(
                event.id, response, self._invoker.payloads.error_message
            )
            dead = self._destinations.send_dead_letter(config.dead_letter_target, body, attributes)
            if not await self._deliver(event, "dead letter", dead):
                metrics.dead_letter_failed(key)
        await self._ack(event)

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
        await self._destinations.close()


def _report_end(task: asyncio.Task[None]) -> None:
    """The take loop ends only when the dispatcher is closed; anything else is said loudly."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the event dispatcher stopped", exc_info=task.exception())
