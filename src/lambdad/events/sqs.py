"""The SQS poller of an event source mapping: queue messages become batches of a function.

``SqsPoller`` long-polls one queue (``WaitTimeSeconds`` 20) with a few workers. Each worker
gathers a batch (several receives, up to ``BatchSize``, within the batching window), deletes
what the mapping's filter drops, invokes the function synchronously (``RequestResponse``, so
concurrency limits and START/END/REPORT apply as to any caller), and deletes what succeeded.
A failed batch is left alone: its messages reappear after the queue's visibility timeout and
the queue's own redrive policy applies. A worker whose receive brought messages while no other
worker was waiting on the queue starts one more (up to ``MaximumConcurrency``); a worker whose
long poll came back empty stops, down to one. FIFO order needs nothing more: SQS hands out no
message of a group while another of that group is in flight, so one batch per group runs at
a time. Decisions and differences from AWS: docs/event-source-mappings.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.events.sqs_records import AllFailed, failed_ids, record_of
from lambdad.invoke.aws_clients import AwsClients, AwsEndpoint
from lambdad.invoke.service import Accepted, Invoker, InvokeRequest
from lambdad.observe.mapping_metrics import (
    DELETED,
    FAILED_INVOKE,
    FILTERED_OUT,
    INVOKED,
    POLLED,
    MappingMetrics,
)

if TYPE_CHECKING:
    from lambdad.runtime.invocation import Outcome

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: ``LastProcessingResult`` values. ``OK`` and ``PROBLEM: Function call failed`` are AWS's;
#: the others follow their form (AWS's exact words for them are not documented).
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
THROTTLED = "PROBLEM: Function call throttled"
FUNCTION_UNUSABLE = "PROBLEM: Function cannot be invoked: {}"
SOURCE_FAILED = "PROBLEM: Cannot read from the queue: {}"

#: AWS's default (and the API's largest) ``ScalingConfig.MaximumConcurrency``.
DEFAULT_MAXIMUM_CONCURRENCY = 1000
#: SQS's limits: messages per receive or delete, seconds of one long poll.
RECEIVE_MAX = 10
LONG_POLL = 20
#: A batch stops growing at this many bytes of bodies (the invoke payload limit is 6 MB).
PAYLOAD_BUDGET = 5 * 1024 * 1024
#: Backoff after a failed receive or an invoke refused (scaled by the time scale).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


#: What ``backlog`` reports, and the queue attribute each is read from.
_BACKLOG = {
    "waiting": "ApproximateNumberOfMessages",
    "in flight": "ApproximateNumberOfMessagesNotVisible",
}


class PollerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class SqsSource:
    """One SQS event source mapping, as the poller needs it."""

    scope: Scope
    function_name: str
    qualifier: str | None
    queue_arn: str
    queue_url: str
    endpoint: AwsEndpoint
    batch_size: int = 10
    #: ``MaximumBatchingWindowInSeconds`` as configured (the poller applies the time scale).
    batching_window: float = 0.0
    #: ``ScalingConfig.MaximumConcurrency``; None: AWS's default, 1000.
    maximum_concurrency: int | None = None
    report_batch_item_failures: bool = False
    #: True for the records the mapping's ``FilterCriteria`` let through; None: all of them.
    record_filter: Callable[[dict[str, Any]], bool] | None = None

    @property
    def region(self) -> str:
        return self.queue_arn.split(":")[3]

    @property
    def concurrency_cap(self) -> int:
        return self.maximum_concurrency or DEFAULT_MAXIMUM_CONCURRENCY


@dataclasses.dataclass(slots=True)
class _Batch:
    messages: list[dict[str, Any]]
    received_at: float

    @property
    def size(self) -> int:
        return sum(len(m.get("Body", "")) for m in self.messages)


class SqsPoller:
    """Polls ``source``'s queue and invokes its function through ``invoker``; ``on_result`` is
    told each batch's ``LastProcessingResult``. ``start`` once, ``close`` (idempotent) to stop:
    long polls under way are cancelled, and messages taken but not yet invoked are made
    visible again."""

    def __init__(
        self,
        source: SqsSource,
        invoker: Invoker,
        on_result: Callable[[str], None],
        *,
        time_scale: float = 1.0,
        metrics: MappingMetrics | None = None,
    ) -> None:
        self.source = source
        self._invoker = invoker
        self._on_result = on_result
        self._scale = time_scale
        self._metrics = metrics
        # A long poll's answer takes up to 20 s; the read timeout leaves it room. Every
        # worker may hold a long poll and a delete at once: connections enough for both.
        endpoint = dataclasses.replace(
            source.endpoint,
            read_timeout=LONG_POLL + 10,
            connections=2 * source.concurrency_cap + 2,
        )
        self._clients = AwsClients.of(endpoint)
        self._workers: set[asyncio.Task[None]] = set()
        #: Workers alive (counted synchronously, so two never both decide to be the last).
        self._alive = 0
        #: Workers waiting on a receive right now.
        self._receiving = 0
        #: The queue's visibility timeout (read at the first receive; never scaled).
        self._visibility = 30.0
        self._visibility_read = False
        self._last_result = ""
        #: Receives whose answer no worker has taken: a worker closed while its long poll ran.
        #: The request is left to finish (the endpoint may hand it messages all the same) and
        #: what it brings goes back to the queue (``_linger``).
        self._receives: set[asyncio.Task[Any]] = set()
        self._lingering: asyncio.Task[None] | None = None
        self.state = PollerState.CREATED

    @property
    def workers(self) -> int:
        """How many workers poll the queue now."""
        return self._alive

    async def start(self) -> None:
        """Start polling. RuntimeError if started before or closed."""
        if self.state is not PollerState.CREATED:
            raise RuntimeError(f"the poller is {self.state.value}")
        self.state = PollerState.RUNNING
        self._spawn()

    async def close(self) -> None:
        """Stop polling: cancel every worker and return what they held to the queue; nothing
        is delivered after this returns. A long poll under way is not cut off (the endpoint
        may hand it messages all the same): it finishes in the background, what it brings is
        made visible again at once, then the clients close (``released`` waits for that).
        Idempotent."""
        if self.state is PollerState.CLOSED:
            return
        self.state = PollerState.CLOSED
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        stranded = list(self._receives)
        if not stranded:
            await self._clients.close()
            return
        self._lingering = asyncio.get_running_loop().create_task(
            self._linger(stranded), name=f"sqs-poller-release-{self.source.queue_arn}"
        )

    async def released(self) -> None:
        """Return once the long polls a close found under way have ended and what they
        brought is visible in the queue again (at once when there were none)."""
        if self._lingering is not None:
            await asyncio.shield(self._lingering)

    async def _linger(self, stranded: list[asyncio.Task[Any]]) -> None:
        """Wait for receives a close left running (a long poll ends within its wait and the
        read timeout), give each one's messages back as soon as it ends (not once all have:
        the others may wait out their whole long poll), close the clients."""
        try:
            pending = set(stranded)
            deadline = time.monotonic() + LONG_POLL + 10
            while pending and (left := deadline - time.monotonic()) > 0:
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                taken = [
                    m
                    for task in done
                    if not task.cancelled() and task.exception() is None
                    for m in task.result().get("Messages", [])
                ]
                if taken:
                    log.info("%d messages a closing poll took go back to the queue", len(taken))
                    await self._release(taken)
        except Exception:  # the endpoint's failure: the messages reappear after their timeout
            log.exception("giving back what a closing poll of %s took", self.source.queue_arn)
        finally:
            for task in stranded:
                task.cancel()
            self._receives.clear()
            await self._clients.close()

    async def backlog(self) -> dict[str, int]:
        """The queue's ``ApproximateNumberOfMessages`` (``waiting``) and
        ``ApproximateNumberOfMessagesNotVisible`` (``in flight``), asked of the endpoint."""
        if self.state is PollerState.CLOSED:
            raise RuntimeError("the poller is closed")
        client = await self._clients.client("sqs", self.source.region)
        answer = await client.get_queue_attributes(
            QueueUrl=self.source.queue_url, AttributeNames=list(_BACKLOG.values())
        )
        found = answer.get("Attributes", {})
        return {key: int(found.get(name, 0)) for key, name in _BACKLOG.items()}

    def _spawn(self) -> None:
        self._alive += 1
        task = asyncio.create_task(self._work(), name=f"sqs-poller-{self.source.queue_arn}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def _report(self, result: str) -> None:
        self._last_result = result
        try:
            self._on_result(result)
        except Exception:  # the listener's failure is its own; polling goes on
            log.exception("on_result failed")

    async def _work(self) -> None:
        """One worker: batches until the poller closes or the queue is empty and others poll.
        A failure of the endpoint (receive or delete) is reported and retried with backoff:
        a worker never dies of one, so the last worker never leaves the queue unpolled."""
        backoff = BACKOFF_FIRST
        try:
            while self.state is PollerState.RUNNING:
                try:
                    if not await self._step():
                        return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the endpoint's or the client's failure: retried
                    log.warning("polling %s failed: %s", self.source.queue_arn, exc)
                    self._report(SOURCE_FAILED.format(exc))
                    await asyncio.sleep(self._scale * backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                else:
                    backoff = BACKOFF_FIRST
        finally:
            self._alive -= 1

    async def _step(self) -> bool:
        """Gather and handle one batch; False when this worker should stop (scale down)."""
        batch = await self._gather()
        if not batch.messages:
            return self._alive <= 1  # the queue is empty for now: all but one worker stop
        running = self.state is PollerState.RUNNING
        if running and self._receiving == 0 and self._alive < self.source.concurrency_cap:
            self._spawn()  # scale up: nobody is polling while this batch runs
        await self._handle(batch)
        return True

    async def _client(self) -> Any:
        client = await self._clients.client("sqs", self.source.region)
        if not self._visibility_read:
            answer = await client.get_queue_attributes(
                QueueUrl=self.source.queue_url, AttributeNames=["VisibilityTimeout"]
            )
            self._visibility = float(answer["Attributes"]["VisibilityTimeout"])
            self._visibility_read = True
        return client

    async def _receive(self, client: Any, count: int, wait: int) -> list[dict[str, Any]]:
        """One ReceiveMessage. A worker cancelled while it waits (the poller closes) leaves the
        request running, in ``_receives``, for ``close`` to give back what it brings."""
        call = asyncio.ensure_future(
            client.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        )
        self._receives.add(call)
        self._receiving += 1
        abandoned = False
        try:
            answer = await asyncio.shield(call)
        except asyncio.CancelledError:
            abandoned = True
            raise
        finally:
            self._receiving -= 1
            if not abandoned:
                self._receives.discard(call)
        return list(answer.get("Messages", []))

    async def _gather(self) -> _Batch:
        """One batch: a long poll, then (with a batching window) more receives until the
        batch is full, the window has passed or the bodies reach the payload budget."""
        client = await self._client()
        batch = _Batch(await self._receive(client, self._want(0), LONG_POLL), time.monotonic())
        window = self._scale * self.source.batching_window
        if not batch.messages or window <= 0:
            return batch
        deadline = batch.received_at + window
        try:
            while len(batch.messages) < self.source.batch_size and batch.size < PAYLOAD_BUDGET:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(int(left), LONG_POLL)
                more = await self._receive(client, self._want(len(batch.messages)), wait)
                batch.messages.extend(more)
                if not more and wait == 0:
                    await asyncio.sleep(min(0.05, left))
        except asyncio.CancelledError:  # closed while gathering: what is gathered goes back
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release(batch.messages), 5)
            raise
        return batch

    def _want(self, have: int) -> int:
        return min(RECEIVE_MAX, self.source.batch_size - have)

    async def _handle(self, batch: _Batch) -> None:
        """Filter, invoke and delete one batch; on cancellation return it to the queue."""
        try:
            await self._run(batch)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release(batch.messages), 5)
            raise

    async def _run(self, batch: _Batch) -> None:
        source = self.source
        messages = list(batch.messages)
        # The filter runs with the records' making: off the loop for a large batch.
        keep = await _off_loop(
            len(messages),
            lambda: [
                r
                for r in (record_of(m, source.queue_arn, source.region) for m in messages)
                if self._passes(r)
            ],
        )
        kept = {r["messageId"] for r in keep}
        dropped = [m for m in batch.messages if m["MessageId"] not in kept]
        metrics = self._metrics
        if metrics is not None:
            metrics.count(POLLED, len(messages))
            metrics.count(FILTERED_OUT, len(dropped))
        if dropped:
            await self._delete(dropped)
        if not keep:
            return
        batch.messages = [m for m in batch.messages if m["MessageId"] in kept]
        outcome = await self._invoke(keep, batch.received_at)
        if outcome is None:
            if metrics is not None:
                metrics.count(FAILED_INVOKE, len(keep))
            return  # left to reappear after the visibility timeout
        done = self._succeeded(outcome, [r["messageId"] for r in keep])
        if metrics is not None:
            metrics.count(INVOKED, len(keep))
            metrics.count(FAILED_INVOKE, len(keep) - len(done))
        deleted = await self._delete([m for m in batch.messages if m["MessageId"] in done])
        if metrics is not None:
            metrics.count(DELETED, deleted)
        batch.messages = []

    def _passes(self, record: dict[str, Any]) -> bool:
        check = self.source.record_filter
        if check is None:
            return True
        try:
            return bool(check(record))
        except Exception:  # a filter that cannot read the record does not match it
            log.exception("filter of %s failed", self.source.queue_arn)
            return False

    async def _invoke(
        self, records: Sequence[dict[str, Any]], received_at: float
    ) -> Outcome | None:
        """Invoke the function with ``records``; None when it could not be invoked (retried
        with backoff while the messages stay invisible, then left)."""
        source = self.source
        event = {"Records": list(records)}
        payload = await _off_loop(len(records), lambda: json.dumps(event).encode())
        backoff = BACKOFF_FIRST
        while True:
            request = InvokeRequest(source.function_name, source.qualifier, payload)
            try:
                outcome = await self._invoker.invoke(source.scope, request)
            except errors.TooManyRequestsException:
                self._report(THROTTLED)
                delay = self._scale * backoff
                if time.monotonic() + delay > received_at + self._visibility / 2:
                    return None
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except errors.LambdaError as exc:  # gone, inactive, payload too large...
                self._report(FUNCTION_UNUSABLE.format(exc))
                await asyncio.sleep(self._scale * BACKOFF_FIRST)
                return None
            if isinstance(outcome, Accepted):  # RequestResponse always runs
                raise TypeError(f"unexpected invoke result {outcome!r}")
            return outcome

    def _succeeded(self, outcome: Outcome, ids: list[str]) -> set[str]:
        """The ids of the messages to delete after ``outcome``."""
        if outcome.function_error:
            self._report(FUNCTION_FAILED)
            return set()
        if not self.source.report_batch_item_failures:
            self._report(OK)
            return set(ids)
        try:
            failed = failed_ids(outcome.payload, ids)
        except AllFailed as exc:
            log.warning("batch of %s failed as a whole: %s", self.source.queue_arn, exc)
            self._report(FUNCTION_FAILED)
            return set()
        self._report(OK)
        return set(ids) - failed

    async def _delete(self, messages: Sequence[dict[str, Any]]) -> int:
        """Delete ``messages``; how many were deleted."""
        deleted = 0
        client = await self._client()
        for start in range(0, len(messages), RECEIVE_MAX):
            chunk = messages[start : start + RECEIVE_MAX]
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
            ]
            answer = await client.delete_message_batch(
                QueueUrl=self.source.queue_url, Entries=entries
            )
            deleted += len(answer.get("Successful", []))
            for failure in answer.get("Failed", []):
                log.warning("deleting a message of %s failed: %s", self.source.queue_arn, failure)
        return deleted

    async def _release(self, messages: Sequence[dict[str, Any]]) -> None:
        """Make ``messages`` visible again at once (the poller stops before running them)."""
        if not messages:
            return
        client = await self._clients.client("sqs", self.source.region)
        for start in range(0, len(messages), RECEIVE_MAX):
            chunk = messages[start : start + RECEIVE_MAX]
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(chunk)
            ]
            await client.change_message_visibility_batch(
                QueueUrl=self.source.queue_url, Entries=entries
            )


async def _off_loop(count: int, work: Callable[[], _T]) -> _T:
    """``work()`` for ``count`` messages: here for one receive's worth, in a thread for a
    batch gathered over a window (up to 10,000 records must not hold the event loop)."""
    if count <= RECEIVE_MAX:
        return work()
    return await asyncio.to_thread(work)
