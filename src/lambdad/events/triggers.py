"""Time triggers: what fires when a schedule's occurrence comes, exactly once per occurrence.

A kind of trigger (EventBridge Scheduler's schedules, EventBridge scheduled rules) plugs in as a
:class:`TriggerSource`; :class:`TimeTriggers` owns the clock, the timing and the durable record
of what fired. For each occurrence it

1. writes ``(last occurrence, real time)`` of the trigger to ``Table.TRIGGER_FIRES`` (one
   transaction for every occurrence due at that moment), then
2. asks the source to ``fire`` it with an id made from the trigger and the occurrence; the
   source delivers idempotently per id (the async queue refuses an id it has queued or run,
   ``QueuedEvent.keep_id``).

A crash between the two is repaired at start: the last recorded occurrence of every trigger is
fired again with the same id, which the queue turns into a no-op if it got there before. So an
occurrence due while lambdad runs is neither skipped nor doubled. Occurrences missed while
lambdad was down: the most recent one fires once at start if it is younger than the trigger's
``event_age``; older ones are skipped. Occurrences missed while it ran (a cluster's node taking
over from a dead holder) each fire, if younger than ``event_age`` (docs/schedules.md).

In a cluster (``confirm``), the node that holds the triggers can change (events/owners.py),
and the queue that knows which ids it took may be another node's: each record also says which
occurrence was ``delivered`` (its source's ``fire`` returned), written by the same recorder in
its next transaction, and a start repairs only a recorded occurrence not marked delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import functools
import hashlib
import heapq
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lambdad.control.clock import SchedulerClock
from lambdad.control.schedule_expressions import ScheduleExpression
from lambdad.store.base import KEEP_DONE_IDS, Store, StoreError, Table, Write

log = logging.getLogger(__name__)

#: ``scope.key(kind, *name)``: a trigger's identity, and the key of its fire record.
TriggerId = tuple[str, ...]
#: A recorded fire older than this (real seconds) is not fired again at start: the queue may
#: have forgotten its id by then.
_REFIRE_WITHIN = KEEP_DONE_IDS / 2
#: At most this many missed occurrences are stepped over one by one when planning (a week of
#: a minute's rate, some milliseconds); a trigger further behind counts on from now.
_MAX_SKIPPED = 10_000
#: At most this many missed occurrences of one trigger fire when the triggers start (on a
#: node taking them over, those that came due while no node held them).
_MAX_CATCH_UP = 100
#: More changed triggers than this at once are re-read with one scan of their source.
_SCAN_ABOVE = 16
#: Occurrences handed to their sources between two yields to the loop, so that the first
#: of a burst are queued (and run) while the rest are still being handed over.
_HAND_OVER = 32
#: Seconds a hand-over to another node waits for the fires under way.
_HAND_OVER_WAIT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Trigger:
    """One enabled time trigger as its source describes it."""

    id: TriggerId
    expression: ScheduleExpression
    #: Epoch seconds the first occurrence is counted from (a StartDate, or the creation time).
    anchor: float
    #: No occurrence after this (epoch seconds); None: none.
    end: float | None
    #: Each occurrence fires at a stable random point of ``[occurrence, occurrence + window)``.
    window: float
    #: How old (seconds) a missed occurrence may be and still fire when lambdad starts.
    event_age: float
    #: The source's own description (what to invoke, with what), opaque here.
    detail: Any = None
    #: When (epoch seconds of the clock) the trigger was last changed (created, updated): no
    #: occurrence before it is caught up on as one missed while another node held it.
    changed: float = -math.inf


class TriggerSource(Protocol):
    """A kind of time trigger: where they are defined and how an occurrence is delivered."""

    kind: str

    async def triggers(self) -> list[Trigger]:
        """Every enabled trigger of this kind."""
        ...

    async def trigger(self, trigger_id: TriggerId) -> Trigger | None:
        """The trigger as it is now; None when it was deleted or disabled."""
        ...

    def subscribe(self, listener: Callable[[TriggerId], None]) -> None:
        """Call ``listener`` with a trigger's id whenever it is created, changed or deleted."""
        ...

    async def fire(self, trigger: Trigger, occurrence: float, fire_id: str) -> None:
        """Deliver ``occurrence`` (epoch seconds); at most once per ``fire_id``, whatever
        number of calls. Failures are the source's to retry or dead-letter."""
        ...

    async def finished(self, trigger: Trigger) -> None:
        """The trigger has no occurrence left (a one-time schedule fired, an end date passed)."""
        ...


def fire_id(trigger_id: TriggerId, occurrence: float) -> str:
    """The id of one occurrence of one trigger: the same on every attempt and every restart."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lambdad:{'/'.join(trigger_id)}@{occurrence!r}"))


def _offset(trigger: Trigger, occurrence: float) -> float:
    if trigger.window <= 0:
        return 0.0
    digest = hashlib.blake2b(fire_id(trigger.id, occurrence).encode(), digest_size=8).digest()
    return trigger.window * int.from_bytes(digest) / 2**64


def _at(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _next(trigger: Trigger, after: float) -> float | None:
    found = trigger.expression.next_after(_at(after), anchor=_at(trigger.anchor))
    if found is None:
        return None
    nominal = found.timestamp()
    if trigger.end is not None and not trigger.expression.is_one_time() and nominal > trigger.end:
        return None
    return nominal


@dataclasses.dataclass(slots=True)
class _Plan:
    trigger: Trigger
    source: TriggerSource
    nominal: float
    due: float
    seq: int


class TriggersState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class TimeTriggers:
    """Fires the triggers of ``sources`` on ``clock``, recording each occurrence in ``store``."""

    def __init__(
        self,
        store: Store,
        clock: SchedulerClock,
        sources: Sequence[TriggerSource],
        *,
        confirm: bool = False,
    ) -> None:
        self._store = store
        self._confirm = confirm
        #: With ``confirm``: the last occurrence each trigger's source took, the real time its
        #: record was written, and the triggers whose delivered mark is not stored yet.
        self._delivered: dict[TriggerId, float] = {}
        self._recorded_at: dict[TriggerId, float] = {}
        self._confirms: set[TriggerId] = set()
        self._reload = False
        self._clock = clock
        self._sources = {source.kind: source for source in sources}
        self._plans: dict[TriggerId, _Plan] = {}
        self._heap: list[tuple[float, int, TriggerId]] = []
        self._seq = 0
        self._last: dict[TriggerId, float] = {}
        self._dirty: dict[TriggerId, TriggerSource] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Due occurrences waiting for their record; the recorder writes whatever piled up
        #: during its previous commit in one transaction (group commit).
        self._due_plans: list[_Plan] = []
        self._due_ready = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._fires: set[asyncio.Task[None]] = set()
        self.state = TriggersState.NEW

    async def start(self) -> None:
        """Load every trigger and its record, repair the last fire of each, start firing."""
        if self.state is not TriggersState.NEW:
            raise RuntimeError(f"time triggers are {self.state.value}")
        records = dict(await self._store.scan(Table.TRIGGER_FIRES))
        for source in self._sources.values():
            source.subscribe(functools.partial(self._changed, source))
            for trigger in await source.triggers():
                record = records.get(trigger.id)
                if record is not None:
                    self._last[trigger.id] = float(record["last"])
                    self._recorded_at[trigger.id] = float(record["at"])
                    if record.get("delivered") is not None:
                        self._delivered[trigger.id] = float(record["delivered"])
                    if record.get("delivered") == record["last"]:
                        log.debug("%s: the last recorded occurrence was delivered", trigger.id)
                    elif time.time() - float(record["at"]) < _REFIRE_WITHIN:
                        self._spawn(source, trigger, float(record["last"]), then_finish=False)
                self._plan(source, trigger, starting=True)
        self.state = TriggersState.RUNNING
        self._task = asyncio.create_task(self._run(), name="time-triggers")
        self._recorder = asyncio.create_task(self._record_forever(), name="trigger-records")

    async def close(self) -> None:
        """Stop firing; fires under way are cancelled (their record makes the next start fire
        them again). Idempotent."""
        if self.state is TriggersState.CLOSED:
            return
        self.state = TriggersState.CLOSED
        if self._confirm:
            await self._hand_over()
        tasks = [t for t in (self._task, self._recorder, *self._fires) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _hand_over(self) -> None:
        """Before another node takes over: let the fires under way end (bounded), and store
        which were delivered, so the next holder fires none of them again."""
        for task in (self._task, self._recorder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._fires:
            await asyncio.wait(list(self._fires), timeout=_HAND_OVER_WAIT)
        confirms, self._confirms = self._confirms, set()
        writes = [self._record(t) for t in confirms if t in self._last]
        if writes:
            try:
                await self._store.write(writes)
            except StoreError as exc:
                log.warning("time triggers: delivered marks not stored: %s", exc)

    def scheduled(self) -> int:
        """How many triggers have an occurrence planned."""
        return len(self._plans)

    def changed(self, kind: str, trigger_id: TriggerId) -> None:
        """The trigger was created, changed or deleted elsewhere (another node): read it
        again."""
        source = self._sources.get(kind)
        if source is not None and self.state is TriggersState.RUNNING:
            self._changed(source, trigger_id)

    def reload(self) -> None:
        """Triggers may have changed elsewhere without saying which: read them all again."""
        if self.state is TriggersState.RUNNING:
            self._reload = True
            self._wake.set()

    async def _reload_all(self) -> None:
        self._reload = False
        for kind, source in self._sources.items():
            ids = {t.id for t in await source.triggers()}
            ids |= {trigger_id for trigger_id in self._plans if trigger_id[2] == kind}
            for trigger_id in ids:
                self._dirty[trigger_id] = source

    def _changed(self, source: TriggerSource, trigger_id: TriggerId) -> None:
        self._dirty[trigger_id] = source
        self._wake.set()

    def _plan(self, source: TriggerSource, trigger: Trigger, *, starting: bool) -> None:
        """Plan the trigger's next occurrence after its last fire (or its anchor). Occurrences
        already past are missed: at start, each one that came due while this lambdad ran (it
        was another node's, or no node's, to fire) fires if younger than the event age (the
        latest ``_MAX_CATCH_UP``), and of those from before it started, the latest if young
        enough; all are skipped when not starting (a trigger enabled or changed)."""
        now = self._clock.now()
        last = self._last.get(trigger.id)
        nominal = _next(trigger, trigger.anchor if last is None else last)
        missed: list[float] = []
        while nominal is not None and nominal <= now:
            missed.append(nominal)
            if len(missed) >= _MAX_SKIPPED:  # so far behind: none fires, counting on from now
                missed, nominal = [], _next(trigger, now)
                break
            nominal = _next(trigger, nominal)
        if starting:
            due = self._catch_up(trigger, missed, now)
            if due:
                nominal = due[0]
            log_skipped = len(missed) - len(due)
        else:
            log_skipped = len(missed)
        if log_skipped:
            log.info(
                "%s: %d occurrence(s) missed while stopped or disabled", trigger.id, log_skipped
            )
        self._plans.pop(trigger.id, None)
        if nominal is None:
            self._spawn_finished(source, trigger)
            return
        self._push(source, trigger, nominal)

    def _catch_up(self, trigger: Trigger, missed: list[float], now: float) -> list[float]:
        """The missed occurrences (ascending) that fire at start, in order: the latest from
        before this lambdad began, then every one since, each younger than the event age and
        after the trigger's last change, at most the latest ``_MAX_CATCH_UP``. Planning the
        first is enough: each fire plans the next occurrence after it, already due."""
        owed = [m for m in missed if m > trigger.changed]
        earlier = len([m for m in owed if m <= self._clock.began])
        firing = owed[max(0, earlier - 1) :]  # the latest from before, and every one since
        young = [m for m in firing if now - m <= trigger.event_age]
        return young[-_MAX_CATCH_UP:]

    def _push(self, source: TriggerSource, trigger: Trigger, nominal: float) -> None:
        self._seq += 1
        due = nominal + _offset(trigger, nominal)
        self._plans[trigger.id] = _Plan(trigger, source, nominal, due, self._seq)
        heapq.heappush(self._heap, (due, self._seq, trigger.id))
        self._wake.set()

    async def _refresh(self) -> None:
        """Plan again every trigger that changed (one read each, or one scan of its source
        when many changed at once: a thousand creates must not hold up due fires)."""
        dirty, self._dirty = self._dirty, {}
        by_source: dict[str, list[TriggerId]] = {}
        for trigger_id, source in dirty.items():
            by_source.setdefault(source.kind, []).append(trigger_id)
        for kind, ids in by_source.items():
            source = self._sources[kind]
            if len(ids) > _SCAN_ABOVE:
                every = {t.id: t for t in await source.triggers()}
                found = [every.get(trigger_id) for trigger_id in ids]
            else:
                found = [await source.trigger(trigger_id) for trigger_id in ids]
            gone: list[Write] = []
            for trigger_id, trigger in zip(ids, found, strict=True):
                if trigger is None:
                    self._plans.pop(trigger_id, None)
                    self._last.pop(trigger_id, None)
                    self._delivered.pop(trigger_id, None)
                    self._recorded_at.pop(trigger_id, None)
                    self._confirms.discard(trigger_id)
                    gone.append(Write(Table.TRIGGER_FIRES, trigger_id, None))
                else:
                    self._plan(source, trigger, starting=False)
            if gone:
                await self._store.write(gone)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = self._due()
                if due:
                    self._due_plans += due
                    self._due_ready.set()
                if self._reload:
                    await self._reload_all()
                if self._dirty:
                    await self._refresh()
                    continue
                if due:
                    continue
            except StoreError as exc:  # the store failed: try again shortly
                log.error("time triggers: %s", exc)
                await asyncio.sleep(1.0)
                continue
            delay = self._clock.real_delay(self._heap[0][0]) if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _due(self) -> list[_Plan]:
        now = self._clock.now()
        found: list[_Plan] = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, trigger_id = heapq.heappop(self._heap)
            plan = self._plans.get(trigger_id)
            if plan is not None and plan.seq == seq:
                found.append(plan)
        return found

    async def _record_forever(self) -> None:
        """Record due occurrences, then fire them: everything that came due while the previous
        commit was under way goes in the next one (no timer: one row per commit when idle)."""
        while True:
            await self._due_ready.wait()
            self._due_ready.clear()
            plans, self._due_plans = self._due_plans, []
            confirms, self._confirms = self._confirms, set()
            if not plans and not confirms:
                continue
            try:
                if plans:
                    await self._fire(plans, confirms)
                else:
                    await self._store.write([self._record(t) for t in confirms if t in self._last])
            except StoreError as exc:  # recorded on the next turn
                log.error("time triggers: recording %d occurrence(s): %s", len(plans), exc)
                self._due_plans = plans + self._due_plans
                self._confirms |= confirms
                await asyncio.sleep(1.0)
                self._due_ready.set()

    def _record(self, trigger_id: TriggerId) -> Write:
        """The fire record of a trigger as this node knows it."""
        doc: dict[str, Any] = {
            "last": self._last[trigger_id],
            "at": self._recorded_at.get(trigger_id, time.time()),
        }
        if self._confirm:
            doc["delivered"] = self._delivered.get(trigger_id)
        return Write(Table.TRIGGER_FIRES, trigger_id, doc)

    async def _fire(self, plans: list[_Plan], confirms: set[TriggerId] | None = None) -> None:
        """Record every due occurrence in one transaction (with the delivered marks waiting,
        ``confirms``), then hand each to its source."""
        at = time.time()
        writes = []
        for p in plans:
            doc: dict[str, Any] = {"last": p.nominal, "at": at}
            if self._confirm:
                doc["delivered"] = self._delivered.get(p.trigger.id)
            writes.append(Write(Table.TRIGGER_FIRES, p.trigger.id, doc))
        named = {p.trigger.id for p in plans}
        writes += [self._record(t) for t in confirms or () if t not in named and t in self._last]
        await self._store.write(writes)
        for p in plans:
            self._recorded_at[p.trigger.id] = at
        finishing: list[bool] = []
        for plan in plans:
            trigger = plan.trigger
            self._last[trigger.id] = plan.nominal
            following = _next(trigger, plan.nominal)
            self._plans.pop(trigger.id, None)
            if following is not None:
                self._push(plan.source, trigger, following)
            finishing.append(following is None)
        for count, (plan, finish) in enumerate(zip(plans, finishing, strict=True), 1):
            self._spawn(plan.source, plan.trigger, plan.nominal, then_finish=finish)
            if count % _HAND_OVER == 0:
                # A thousand due at once: the queue's group commit takes the first ones while
                # the next are handed over, so the dispatcher starts on them about a hundred
                # milliseconds sooner than after the last (cancelled here, the record makes
                # the next start fire the rest).
                await asyncio.sleep(0)

    def _spawn(
        self, source: TriggerSource, trigger: Trigger, occurrence: float, *, then_finish: bool
    ) -> None:
        async def deliver() -> None:
            try:
                await source.fire(trigger, occurrence, fire_id(trigger.id, occurrence))
                if self._confirm and occurrence >= self._delivered.get(trigger.id, -math.inf):
                    self._delivered[trigger.id] = occurrence
                    self._confirms.add(trigger.id)
                    self._due_ready.set()
                if then_finish:
                    await source.finished(trigger)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("firing %s at %s failed", trigger.id, _at(occurrence))

        self._track(asyncio.create_task(deliver(), name=f"fire-{trigger.id[-1]}"))

    def _spawn_finished(self, source: TriggerSource, trigger: Trigger) -> None:
        async def finish() -> None:
            try:
                await source.finished(trigger)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("finishing %s failed", trigger.id)

        self._track(asyncio.create_task(finish(), name=f"finish-{trigger.id[-1]}"))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._fires.add(task)
        task.add_done_callback(self._fires.discard)
