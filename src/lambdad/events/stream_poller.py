"""The shard poller of a Kinesis or DynamoDB Streams event source mapping.

``StreamPoller`` reads one stream through any ``StreamReader`` (``lambdad.events.shards``).
A supervisor lists the stream's shards and starts one reader task per shard whose parents are
read to their end (a shard whose parent is no longer listed was trimmed away: it starts at
once). A shard task reads its shard in order. With one lane it gathers a block of records (up
to ``BatchSize`` within the batching window and the payload budget), delivers it and reads the
next. With ``ParallelizationFactor`` > 1 it hands each record to the lane of its partition key
(a key always falls in the same lane, so its records stay in order) and each lane delivers
on its own, one batch at a time, so a lane retrying a batch holds back no other lane. Either
way the shard's durable checkpoint advances past the longest run of records that are done.
A failed batch is retried with backoff (bisected when asked) until it succeeds, runs out of
retries or grows too old; then it goes to the ``FailureSink`` and the lane moves on.
Decisions and differences from AWS: docs/event-source-mappings.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.events.checkpoints import Checkpoint, Checkpoints
from lambdad.events.shards import (
    Page,
    Position,
    PositionKind,
    Shard,
    StreamReader,
    StreamRecord,
)
from lambdad.events.sqs import FUNCTION_FAILED, FUNCTION_UNUSABLE, OK, THROTTLED
from lambdad.events.sqs_records import AllFailed, failed_ids
from lambdad.events.tumbling import Window, window_start
from lambdad.invoke.service import Accepted, Invoker, InvokeRequest
from lambdad.observe.mapping_metrics import (
    DROPPED,
    FAILED_INVOKE,
    FILTERED_OUT,
    INVOKED,
    ON_FAILURE_DELIVERED,
    POLLED,
    MappingMetrics,
)

if TYPE_CHECKING:
    from lambdad.runtime.invocation import Outcome

log = logging.getLogger(__name__)

#: ``LastProcessingResult`` when the stream cannot be read (lambdad's words, in AWS's form).
SOURCE_FAILED = "PROBLEM: Cannot read from the stream: {}"
#: The on-failure record's ``condition``s (AWS's words).
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
#: A block stops growing at this estimate of its event's size (the invoke limit is 6 MB).
PAYLOAD_BUDGET = 5 * 1024 * 1024
#: Bytes a record's event carries besides its data (base64 grows the data by a third).
RECORD_OVERHEAD = 600
#: Seconds between reads of a shard that had nothing new (AWS reads each shard once a second),
#: scaled by the time scale, never below ``POLL_FLOOR``.
POLL_INTERVAL = 1.0
POLL_FLOOR = 0.02
#: Seconds between listings of the stream's shards (not scaled: a listing is a request).
DISCOVERY_INTERVAL = 1.0
#: Seconds ``close`` lets invokes under way finish (so their checkpoints are written and a
#: restart repeats nothing) before it cancels them.
CLOSE_GRACE = 5.0
#: Batches of more records than this are filtered and encoded in a thread.
OFF_LOOP_AT = 100
#: With ParallelizationFactor > 1, reading pauses while the shard holds this many times
#: ``BatchSize`` x ``ParallelizationFactor`` records not yet behind its checkpoint (a lane
#: retrying holds the checkpoint back while the others run on).
LANES_AHEAD = 4
#: Retry backoff of a failed batch, and of a failed read: doubling from the first to the most.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


class _Closing(Exception):
    """The poller is closing: a shard task stops where it is, its checkpoint as it is."""


class PollerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamSource:
    """One stream event source mapping, as the poller needs it."""

    scope: Scope
    mapping_uuid: str
    function_name: str
    qualifier: str | None
    stream_arn: str
    #: Where a shard with no checkpoint and no parent starts.
    starting_position: Position
    batch_size: int = 100
    #: ``MaximumBatchingWindowInSeconds`` as configured (the poller applies the time scale).
    batching_window: float = 0.0
    parallelization: int = 1
    bisect: bool = False
    #: -1: until the record expires (or grows older than ``maximum_record_age``).
    maximum_retry_attempts: int = -1
    #: Seconds, as configured (the poller applies the time scale); -1: never too old.
    maximum_record_age: int = -1
    report_batch_item_failures: bool = False
    #: True for the records the mapping's ``FilterCriteria`` let through; None: all of them.
    record_filter: Callable[[dict[str, Any]], bool] | None = None
    #: ``TumblingWindowInSeconds`` as configured (the poller applies the time scale); 0: none.
    tumbling_window: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class BatchFailure:
    """A batch given up on: what the on-failure record says of it."""

    stream_arn: str
    #: ``KinesisBatchInfo`` or ``DDBStreamBatchInfo``.
    batch_info_key: str
    shard_id: str
    records: tuple[StreamRecord, ...]
    #: ``RetryAttemptsExhausted`` or ``RecordAgeExceeded``.
    condition: str
    #: The last invoke's request id (None when the function could not be invoked).
    request_id: str | None
    invoke_count: int
    #: The last invoke's status: 200 when the function ran; None when it could not be invoked.
    status_code: int | None
    executed_version: str | None
    #: ``Unhandled`` after a function error; the error code when the invoke was refused.
    function_error: str | None


class FailureSink(Protocol):
    """Where a batch given up on goes (the mapping's on-failure destination)."""

    async def send(self, failure: BatchFailure) -> None: ...


@dataclasses.dataclass(slots=True)
class _Try:
    """One batch of a lane and what it has cost so far."""

    records: list[StreamRecord]
    #: Retries counted against ``MaximumRetryAttempts`` (a bisection counts none).
    retries: int = 0
    invokes: int = 0


@dataclasses.dataclass(slots=True)
class _Result:
    """One invoke of a batch: ``done`` records succeeded (a prefix of the batch)."""

    done: int
    outcome: Outcome | None = None
    refused: errors.LambdaError | None = None


class _Block:
    """Records of a shard being processed, in shard order: which are done, and the checkpoint
    they allow. Records may be added as they are read (``extend``); those done at the head
    are let go as the checkpoint passes them."""

    def __init__(self, records: Sequence[StreamRecord] = ()) -> None:
        self._order: collections.deque[str] = collections.deque()
        self._done: dict[str, bool] = {}
        self.extend(records)

    def extend(self, records: Sequence[StreamRecord]) -> None:
        for record in records:
            self._order.append(record.sequence_number)
            self._done[record.sequence_number] = False

    def pending(self) -> int:
        """Records held: not done, or done behind one that is not."""
        return len(self._order)

    def finish(self, records: Sequence[StreamRecord]) -> str | None:
        """Mark ``records`` done; the new checkpoint when the done prefix grew."""
        for record in records:
            if record.sequence_number in self._done:
                self._done[record.sequence_number] = True
        passed = None
        while self._order and self._done[self._order[0]]:
            passed = self._order.popleft()
            del self._done[passed]
        return passed


class _LaneQueue:
    """One lane's records waiting, in order; None marks the end of the shard."""

    def __init__(self) -> None:
        self._items: collections.deque[StreamRecord | None] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, item: StreamRecord | None) -> None:
        self._items.append(item)
        self._ready.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Whether an item is waiting, after at most ``timeout`` seconds (None: for ever)."""
        if not self._items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        return bool(self._items)

    def peek(self) -> StreamRecord | None:
        return self._items[0]

    def take(self) -> StreamRecord | None:
        item = self._items.popleft()
        if not self._items:
            self._ready.clear()
        return item


def lane_of(partition_key: str, lanes: int) -> int:
    """The lane a partition key's records go to (stable across restarts)."""
    if lanes <= 1:
        return 0
    digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % lanes


def _behind(page: Page) -> int:
    """Milliseconds behind the stream's tip after reading ``page``: what the service says
    (Kinesis's MillisBehindLatest), else the age of the page's newest record (0 for an
    empty page: caught up)."""
    if page.behind_ms is not None:
        return page.behind_ms
    if not page.records:
        return 0
    return max(0, int((time.time() - page.records[-1].arrival) * 1000))


def _uncounted(metric: str, n: int) -> None:
    """``MappingMetrics.count`` of a poller given no metrics."""


def _estimate(record: StreamRecord) -> int:
    return record.size_bytes * 4 // 3 + RECORD_OVERHEAD


class StreamPoller:
    """Polls ``source``'s stream through ``reader`` and invokes its function through
    ``invoker``; ``on_result`` is told each batch's ``LastProcessingResult``; ``sink`` gets
    the batches given up on (None: they are logged and dropped). ``start`` once, ``close``
    (idempotent) to stop: a batch under way is abandoned (its records are read again from the
    checkpoint by the next poller)."""

    def __init__(
        self,
        source: StreamSource,
        reader: StreamReader,
        invoker: Invoker,
        checkpoints: Checkpoints,
        on_result: Callable[[str], None],
        sink: FailureSink | None = None,
        *,
        time_scale: float = 1.0,
        discovery_interval: float = DISCOVERY_INTERVAL,
        metrics: MappingMetrics | None = None,
    ) -> None:
        self.source = source
        self._metrics = metrics
        self._reader = reader
        self._invoker = invoker
        self._checkpoints = checkpoints
        self._on_result = on_result
        self._sink = sink
        self._scale = time_scale
        self._discovery = discovery_interval
        self._supervisor: asyncio.Task[None] | None = None
        self._shards: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        self._wake = asyncio.Event()
        self._lag: dict[str, int] = {}
        #: The ending sequence number of each closed shard, as the last listing said.
        self._endings: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: The open tumbling window of each shard (windows keep one lane: their state is
        #: passed from one invoke to the next).
        self._windows: dict[str, Window] = {}
        self._window_length = time_scale * source.tumbling_window
        self._lanes = 1 if self._window_length > 0 else max(1, source.parallelization)
        #: Invokes under way (with their checkpoint writes), and whether there are none.
        self._invoking = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self.state = PollerState.CREATED

    def lag(self) -> dict[str, int]:
        """Milliseconds each shard being read is behind the stream's tip, as of its last read
        (Kinesis's MillisBehindLatest; for a service that does not say, the age of the newest
        record read, 0 once a read finds nothing new)."""
        return dict(self._lag)

    def reading(self) -> list[str]:
        """The shards being read now."""
        return sorted(self._shards)

    async def start(self) -> None:
        """Start polling. RuntimeError if started before or closed."""
        if self.state is not PollerState.CREATED:
            raise RuntimeError(f"the poller is {self.state.value}")
        self.state = PollerState.RUNNING
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"stream-poller-{self.source.stream_arn}"
        )

    async def close(self) -> None:
        """Stop every shard task and the supervisor, release the reader. Idempotent.

        No new invoke starts; invokes under way get ``CLOSE_GRACE`` seconds to finish and
        write their checkpoints, then everything is cancelled."""
        if self.state is PollerState.CLOSED:
            return
        self.state = PollerState.CLOSED
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), CLOSE_GRACE)
        tasks = [t for t in (self._supervisor, *self._shards.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._shards.clear()
        await self._reader.close()

    def _report(self, result: str) -> None:
        try:
            self._on_result(result)
        except Exception:  # the listener's failure is its own; polling goes on
            log.exception("on_result failed")

    def _pause(self, seconds: float) -> Any:
        return asyncio.sleep(self._scale * seconds)

    # -- shards -------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """List the shards now and then; start a task for each readable one."""
        backoff = BACKOFF_FIRST
        while self.state is PollerState.RUNNING:
            try:
                await self._discover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the endpoint's failure: reported, retried
                log.warning("listing the shards of %s failed: %s", self.source.stream_arn, exc)
                self._report(SOURCE_FAILED.format(exc))
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._discovery)

    async def _discover(self) -> None:
        shards = await self._reader.shards()
        known = {s.shard_id: s for s in shards}
        for shard in shards:
            name = shard.shard_id
            if shard.ending_sequence_number is not None:
                self._endings[name] = shard.ending_sequence_number
            if name in self._shards or name in self._finished:
                continue
            checkpoint = await self._checkpoints.get(name)
            if checkpoint is not None and checkpoint.finished:
                self._finished.add(name)
                continue
            if not await self._parents_done(shard, known):
                continue
            first = self._first_position(shard, known)
            task = asyncio.create_task(self._follow(shard, checkpoint, first), name=name)
            self._shards[name] = task

    async def _parents_done(self, shard: Shard, known: dict[str, Shard]) -> bool:
        for parent in (shard.parent_id, shard.adjacent_parent_id):
            if parent is None or parent not in known or parent in self._finished:
                continue
            checkpoint = await self._checkpoints.get(parent)
            if checkpoint is None or not checkpoint.finished:
                return False
            self._finished.add(parent)
        return True

    def _first_position(self, shard: Shard, known: dict[str, Shard]) -> Position:
        """A child of a listed shard starts at its beginning; any other at the mapping's
        starting position."""
        if shard.parent_id in known or shard.adjacent_parent_id in known:
            return Position(PositionKind.TRIM_HORIZON)
        return self.source.starting_position

    async def _follow(self, shard: Shard, checkpoint: Checkpoint | None, first: Position) -> None:
        """Read ``shard`` to its end (or for ever); a failed read is reported and the shard
        read again from its checkpoint after a backoff."""
        backoff = BACKOFF_FIRST
        name = shard.shard_id
        try:
            while True:
                try:
                    await self._read_shard(name, checkpoint, first)
                    break
                except _Closing:
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("reading %s of %s failed: %s", name, self.source.stream_arn, exc)
                    self._report(SOURCE_FAILED.format(exc))
                    await self._pause(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    checkpoint = await self._checkpoints.get(name)
            self._finished.add(name)
            self._lag.pop(name, None)
        finally:
            self._shards.pop(name, None)
            self._wake.set()

    async def _read_shard(self, name: str, checkpoint: Checkpoint | None, first: Position) -> None:
        last = checkpoint.sequence_number if checkpoint is not None else None
        position = first
        if last is not None:
            position = Position(PositionKind.AFTER_SEQUENCE_NUMBER, last)
        elif checkpoint is not None and checkpoint.start is not None:
            position = checkpoint.start
        elif first.kind is PositionKind.LATEST:
            # LATEST moves on: pin it down before reading, so a restart that comes before any
            # record is done resumes here rather than at a later LATEST (AWS, never down,
            # delivers what was put meanwhile).
            position = await self._reader.anchor(name)
            await self._checkpoints.put(name, Checkpoint(None, start=position))
        iterator: str | None = await self._reader.iterator(name, position)
        if self._lanes > 1:
            await self._read_lanes(name, iterator, last)
            return
        buffer: collections.deque[StreamRecord] = collections.deque()
        while True:
            iterator = await self._fill(name, iterator, buffer, last)
            block = self._take(buffer)
            if block:
                await self._process(name, block)
                if self.state is PollerState.CLOSED:
                    raise _Closing  # the block may be unfinished: its checkpoint says where
                last = block[-1].sequence_number
            window = self._windows.get(name)
            if window is not None and not block and time.time() >= window.end:
                await self._close_window(name)  # caught up with the shard past its end
            if not buffer and (iterator is None or self._at_end(name, last)):
                if name in self._windows:
                    await self._close_window(name)
                await self._checkpoints.put(name, Checkpoint(last, finished=True))
                return

    async def _read_lanes(self, name: str, iterator: str | None, last: str | None) -> None:
        """Read ``name`` into one queue per lane, each lane delivering on its own: a lane
        retrying a batch holds back only its own keys (and the checkpoint), not the others.
        Reading pauses while the shard holds ``LANES_AHEAD`` blocks' worth of records the
        checkpoint has not passed."""
        block = _Block()
        queues = [_LaneQueue() for _ in range(self._lanes)]
        workers = [
            asyncio.create_task(self._lane(name, block, queue), name=f"{name}-lane-{n}")
            for n, queue in enumerate(queues)
        ]
        ahead = self.source.batch_size * self._lanes * LANES_AHEAD
        idle = max(POLL_FLOOR, self._scale * POLL_INTERVAL)
        try:
            while True:
                self._raise_failed(workers)
                if self.state is not PollerState.RUNNING:
                    # invokes under way finish and write their checkpoints (close waits)
                    for queue in queues:
                        queue.put(None)
                    await asyncio.gather(*workers, return_exceptions=True)
                    raise _Closing
                room = ahead - block.pending()
                if room <= 0:
                    await asyncio.sleep(idle)
                    continue
                page = await self._reader.read(iterator, room) if iterator is not None else None
                records = page.records if page is not None else []
                if page is not None:
                    iterator = page.next_iterator
                    self._lag[name] = _behind(page)
                if records:
                    await self._dispatch(name, block, queues, records)
                    last = records[-1].sequence_number
                    continue
                if iterator is None or self._at_end(name, last):
                    break
                await asyncio.sleep(idle)
            for queue in queues:
                queue.put(None)
            await asyncio.gather(*workers)
            self._raise_failed(workers)
            if self.state is not PollerState.RUNNING:
                raise _Closing
            await self._checkpoints.put(name, Checkpoint(last, finished=True))
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    @staticmethod
    def _raise_failed(workers: list[asyncio.Task[None]]) -> None:
        for worker in workers:
            if worker.done() and not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]

    async def _dispatch(
        self,
        name: str,
        block: _Block,
        queues: list[_LaneQueue],
        records: list[StreamRecord],
    ) -> None:
        """Hand ``records`` to their lanes; those the filter drops are done at once."""
        block.extend(records)
        passed = await self._filtered(records)
        dropped = [r for r, ok in zip(records, passed, strict=True) if not ok]
        for record, ok in zip(records, passed, strict=True):
            if ok:
                queues[lane_of(record.partition_key, self._lanes)].put(record)
        if dropped:
            await self._finish(name, block, dropped)

    async def _lane(self, name: str, block: _Block, queue: _LaneQueue) -> None:
        """Deliver one lane's records in order, a batch at a time (up to ``BatchSize``,
        gathered for at most the batching window from its first record), until its queue
        says the shard ended or the poller closes."""
        size = self.source.batch_size
        window = self._scale * self.source.batching_window
        while self.state is PollerState.RUNNING:
            await queue.wait()
            first = queue.take()
            if first is None:
                return
            batch, weight = [first], _estimate(first)
            deadline = time.monotonic() + window
            while len(batch) < size:
                left = deadline - time.monotonic()
                if not await queue.wait(max(0.0, left)):
                    break
                following = queue.peek()
                if following is None or weight + _estimate(following) > PAYLOAD_BUDGET:
                    break  # the end of the shard is taken on the next turn
                batch.append(following)
                weight += _estimate(following)
                queue.take()
            await self._deliver(name, block, batch)

    def _at_end(self, name: str, last: str | None) -> bool:
        """Whether ``last`` is the closed shard ``name``'s ending sequence number (or past it):
        a service that keeps handing out iterators of a closed shard is read to its end."""
        ending = self._endings.get(name)
        if ending is None or last is None:
            return False
        if ending.isdigit() and last.isdigit():
            return int(last) >= int(ending)
        return last == ending

    async def _fill(
        self,
        name: str,
        iterator: str | None,
        buffer: collections.deque[StreamRecord],
        last: str | None,
    ) -> str | None:
        """Read into ``buffer`` until a block is full, the batching window has passed since
        the first record, or the shard ends (``last`` done and nothing more of a closed
        shard); the iterator after what was read."""
        source = self.source
        want = source.batch_size * self._lanes
        window = self._scale * source.batching_window
        idle = max(POLL_FLOOR, self._scale * POLL_INTERVAL)
        began = time.monotonic() if buffer else None
        while iterator is not None and len(buffer) < want:
            page = await self._reader.read(iterator, want - len(buffer))
            iterator = page.next_iterator
            self._lag[name] = _behind(page)
            buffer.extend(page.records)
            if buffer and began is None:
                began = time.monotonic()
            if began is not None:
                left = began + window - time.monotonic()
                if left <= 0 or sum(_estimate(r) for r in buffer) >= PAYLOAD_BUDGET:
                    break
                if not page.records and iterator is not None:
                    await asyncio.sleep(min(idle, left))
            elif iterator is not None:
                if not page.records and self._at_end(name, last):
                    break
                tumbling = self._windows.get(name)
                if tumbling is None:
                    await asyncio.sleep(idle)
                    continue
                until_end = tumbling.end - time.time()
                if until_end <= 0:
                    break  # the open window ends: its final invoke is due
                await asyncio.sleep(min(idle, until_end))
        return iterator

    def _take(self, buffer: collections.deque[StreamRecord]) -> list[StreamRecord]:
        want = self.source.batch_size * self._lanes
        block: list[StreamRecord] = []
        size = 0
        while buffer and len(block) < want:
            cost = _estimate(buffer[0])
            if block and size + cost > PAYLOAD_BUDGET:
                break
            block.append(buffer.popleft())
            size += cost
        return block

    # -- a block of a shard -------------------------------------------------------------

    async def _process(self, name: str, records: list[StreamRecord]) -> None:
        """Deliver a block of ``name``'s records, lane by lane, checkpointing as it goes
        (with tumbling windows: window by window, each run of records of one window after
        the windows before it are closed)."""
        if self._window_length <= 0:
            await self._process_run(name, records)
            return
        while records:
            window = self._windows.get(name)
            start = window_start(records[0].arrival, self._window_length)
            if window is not None and start > window.start:
                await self._close_window(name)
                window = None
            if window is None:
                window = self._windows[name] = Window.of(records[0].arrival, self._window_length)
            count = 0
            while count < len(records) and records[count].arrival < window.end:
                count += 1
            count = max(count, 1)  # a record of an earlier window joins the open one
            await self._process_run(name, records[:count])
            records = records[count:]
            if window.too_big():
                await self._close_window(name, early=True)

    async def _close_window(self, name: str, *, early: bool = False) -> None:
        """The window's final invoke (no records, ``isFinalInvokeForWindow``), retried as a
        batch is; then the checkpoint moves past the window's records."""
        window = self._windows.pop(name)
        retries = 0
        limit = self.source.maximum_retry_attempts
        while True:
            if self.state is PollerState.CLOSED:
                raise _Closing  # the window is read again from the checkpoint before it
            with self._under_way():
                result = await self._invoke(name, [], window, final=True, early=early)
            if result.outcome is not None and not result.outcome.function_error:
                break
            if limit >= 0 and retries >= limit:
                log.warning("the final invoke of a window of %s failed", name)
                break
            retries += 1
            await self._pause(min(BACKOFF_FIRST * 2 ** (retries - 1), BACKOFF_MAX))
        if window.last is not None:
            await self._checkpoints.put(name, Checkpoint(window.last))

    async def _process_run(self, name: str, records: list[StreamRecord]) -> None:
        block = _Block(records)
        lanes: dict[int, list[StreamRecord]] = {}
        dropped: list[StreamRecord] = []
        passed = await self._filtered(records)
        for record, passes in zip(records, passed, strict=True):
            if passes:
                lane = lane_of(record.partition_key, self._lanes)
                lanes.setdefault(lane, []).append(record)
            else:
                dropped.append(record)
        if dropped:
            await self._finish(name, block, dropped)
        await asyncio.gather(*(self._run_lane(name, block, lane) for lane in lanes.values()))

    async def _filtered(self, records: list[StreamRecord]) -> list[bool]:
        """Whether each of ``records`` (read from the stream: PolledEventCount) passes the
        mapping's filter (those that do not: FilteredOutEventCount)."""
        metrics = self._metrics
        if metrics is not None:
            metrics.count(POLLED, len(records))
        if self.source.record_filter is None:
            return [True] * len(records)
        if len(records) <= OFF_LOOP_AT:
            passed = [self._passes(r) for r in records]
        else:  # thousands of records through a filter must not hold the event loop
            passed = await asyncio.to_thread(lambda: [self._passes(r) for r in records])
        if metrics is not None:
            metrics.count(FILTERED_OUT, passed.count(False))
        return passed

    def _passes(self, record: StreamRecord) -> bool:
        check = self.source.record_filter
        if check is None:
            return True
        try:
            return bool(check(record.event))
        except Exception:  # a filter that cannot read the record does not match it
            log.exception("filter of %s failed", self.source.stream_arn)
            return False

    async def _finish(self, name: str, block: _Block, records: Sequence[StreamRecord]) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            sequence = block.finish(records)
            window = self._windows.get(name)
            if sequence is not None and window is not None:
                window.last = sequence  # written when the window closes
            elif sequence is not None:
                await self._checkpoints.put(name, Checkpoint(sequence))

    async def _run_lane(self, name: str, block: _Block, records: list[StreamRecord]) -> None:
        size = self.source.batch_size
        for start in range(0, len(records), size):
            await self._deliver(name, block, records[start : start + size])

    async def _deliver(self, name: str, block: _Block, records: list[StreamRecord]) -> None:
        """Invoke with ``records`` until each is done: succeeded, or given up on."""
        todo = collections.deque([_Try(records)])
        while todo and self.state is PollerState.RUNNING:
            attempt = todo[0]
            await self._drop_expired(name, block, attempt)
            if not attempt.records:
                todo.popleft()
                continue
            with self._under_way():
                result = await self._invoke(name, attempt.records, self._windows.get(name))
                attempt.invokes += 1
                if result.done:
                    await self._finish(name, block, attempt.records[: result.done])
                    attempt.records = attempt.records[result.done :]
            if self.state is not PollerState.RUNNING:
                return  # closing: what is not done is read again from the checkpoint
            if attempt.records:
                await self._failed(name, block, todo, result)
            else:
                todo.popleft()

    async def _drop_expired(self, name: str, block: _Block, attempt: _Try) -> None:
        """Give up on the records at the head of ``attempt`` that are too old."""
        expired = self._expired(attempt.records)
        if expired:
            gone = _Try(attempt.records[:expired], attempt.retries, attempt.invokes)
            await self._fail(name, gone, _Result(0), RECORD_AGE_EXCEEDED)
            await self._finish(name, block, gone.records)
            attempt.records = attempt.records[expired:]

    async def _failed(
        self, name: str, block: _Block, todo: collections.deque[_Try], result: _Result
    ) -> None:
        """After ``todo[0]`` failed: give it up, bisect it, or wait to retry it."""
        attempt = todo[0]
        condition = self._give_up(attempt, result)
        if condition is not None:
            await self._fail(name, attempt, result, condition)
            await self._finish(name, block, attempt.records)
            todo.popleft()
        elif self._bisects(attempt, result):
            half = len(attempt.records) // 2
            todo.popleft()
            todo.extendleft(
                [
                    _Try(attempt.records[half:], attempt.retries, attempt.invokes),
                    _Try(attempt.records[:half], attempt.retries, attempt.invokes),
                ]
            )
        else:
            attempt.retries += 1
            await self._pause(min(BACKOFF_FIRST * 2 ** (attempt.retries - 1), BACKOFF_MAX))

    @contextlib.contextmanager
    def _under_way(self) -> Iterator[None]:
        """Count an invoke (and its checkpoint write) as under way: ``close`` waits for it."""
        self._invoking += 1
        self._settled.clear()
        try:
            yield
        finally:
            self._invoking -= 1
            if not self._invoking:
                self._settled.set()

    def _bisects(self, attempt: _Try, result: _Result) -> bool:
        """A function error (not a partial failure) of a batch of two or more is split."""
        return (
            self.source.bisect
            and len(attempt.records) > 1
            and result.done == 0
            and result.outcome is not None
            and result.outcome.function_error
        )

    def _expired(self, records: Sequence[StreamRecord]) -> int:
        """How many of ``records`` (a prefix: they arrived in order) are older than
        ``MaximumRecordAgeInSeconds``."""
        age = self.source.maximum_record_age
        if age < 0:
            return 0
        limit = time.time() - self._scale * age
        count = 0
        while count < len(records) and records[count].arrival < limit:
            count += 1
        return count

    def _give_up(self, attempt: _Try, result: _Result) -> str | None:
        """Why a failed batch is given up on now, or None to try it again."""
        source = self.source
        if self._expired(attempt.records[-1:]):
            return RECORD_AGE_EXCEEDED
        bisecting = self._bisects(attempt, result)
        limit = source.maximum_retry_attempts
        if not bisecting and limit >= 0 and attempt.retries >= limit:
            return RETRIES_EXHAUSTED
        return None

    async def _fail(self, name: str, attempt: _Try, result: _Result, condition: str) -> None:
        outcome = result.outcome
        failure = BatchFailure(
            stream_arn=self.source.stream_arn,
            batch_info_key=self._reader.batch_info_key,
            shard_id=name,
            records=tuple(attempt.records),
            condition=condition,
            request_id=outcome.report.request_id if outcome is not None else None,
            invoke_count=attempt.invokes,
            status_code=200 if outcome is not None else None,
            executed_version=outcome.executed_version if outcome is not None else None,
            function_error=(
                ("Unhandled" if outcome.function_error else None)
                if outcome is not None
                else (result.refused.code if result.refused is not None else None)
            ),
        )
        first, last = attempt.records[0], attempt.records[-1]
        log.warning(
            "mapping %s gives up on %d records of %s (%s..%s): %s",
            self.source.mapping_uuid,
            len(attempt.records),
            name,
            first.sequence_number,
            last.sequence_number,
            condition,
        )
        # DroppedEventCount: given up on and not sent on (no destination, or it failed)
        metrics = self._metrics
        count = metrics.count if metrics is not None else _uncounted
        if self._sink is None:
            count(DROPPED, len(attempt.records))
            return
        try:
            await self._sink.send(failure)
        except asyncio.CancelledError:
            raise
        except Exception:  # the destination's failure does not hold the shard
            log.exception("the on-failure destination of %s failed", self.source.mapping_uuid)
            count(DROPPED, len(attempt.records))
            return
        count(ON_FAILURE_DELIVERED, len(attempt.records))

    async def _invoke(
        self,
        name: str,
        records: list[StreamRecord],
        window: Window | None = None,
        *,
        final: bool = False,
        early: bool = False,
    ) -> _Result:
        """Invoke the function with ``records`` (of ``window``, when windows are on); a
        throttled invoke is retried, never lost."""
        source = self.source
        event: dict[str, Any] = {"Records": [r.event for r in records]}
        if window is not None:
            event |= window.fields(name, source.stream_arn, final=final, early=early)
        if len(records) > OFF_LOOP_AT:
            payload = await asyncio.to_thread(lambda: json.dumps(event).encode())
        else:
            payload = json.dumps(event).encode()
        backoff = BACKOFF_FIRST
        metrics = self._metrics
        while True:
            request = InvokeRequest(source.function_name, source.qualifier, payload)
            # IteratorAge: from the newest record's arrival to this invoke
            age_ms = (time.time() - records[-1].arrival) * 1000.0 if records else None
            try:
                outcome = await self._invoker.invoke(source.scope, request)
            except errors.TooManyRequestsException:
                self._report(THROTTLED)
                if self.state is not PollerState.RUNNING:
                    return _Result(0)  # closing: the batch is read again later
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except errors.LambdaError as exc:  # gone, inactive, payload too large...
                self._report(FUNCTION_UNUSABLE.format(exc))
                if metrics is not None:
                    metrics.count(FAILED_INVOKE, len(records))
                return _Result(0, refused=exc)
            if isinstance(outcome, Accepted):  # RequestResponse always runs
                raise TypeError(f"unexpected invoke result {outcome!r}")
            if window is not None and not outcome.function_error:
                window.absorb(outcome.payload)
            done = self._succeeded(outcome, records)
            if metrics is not None:
                if age_ms is not None:
                    metrics.iterator_age(age_ms, outcome.executed_version)
                metrics.count(INVOKED, len(records))
                metrics.count(FAILED_INVOKE, len(records) - done)
            return _Result(done, outcome)

    def _succeeded(self, outcome: Outcome, records: list[StreamRecord]) -> int:
        """How many records of the batch (a prefix) ``outcome`` lets the checkpoint pass."""
        if outcome.function_error:
            self._report(FUNCTION_FAILED)
            return 0
        if not self.source.report_batch_item_failures:
            self._report(OK)
            return len(records)
        sequences = [r.sequence_number for r in records]
        try:
            failed = failed_ids(outcome.payload, sequences)
        except AllFailed as exc:
            log.warning("batch of %s failed as a whole: %s", self.source.stream_arn, exc)
            self._report(FUNCTION_FAILED)
            return 0
        self._report(OK)
        if not failed:
            return len(records)
        return min(sequences.index(s) for s in failed)
