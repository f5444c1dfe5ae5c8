"""The cluster's ``Queue``: accepted ``Event`` invocations in a NATS JetStream work queue
(cluster mode, docs/cluster.md "The async queue on JetStream").

Three streams, all stored on the NATS servers' disks:

- ``LAMBDAD_EVENTS`` (work-queue retention): one message per event, on the subject
  ``lambdad.events.<key>`` (the key is the event's id); the payload is the event's,
  everything else (attempt, not-before, attributes, ...) is JSON in the header
  ``Lambdad-Event``. Every node that takes events pulls from the one durable consumer
  ``lambdad-dispatchers``, so each event goes to one of them; an acknowledged message leaves
  the stream. ``put`` publishes with "expected last subject sequence 0": JetStream refuses it
  while a message of that id is in the stream, so a second ``put`` of a queued id is
  ``StoreConflict`` on every node, in the same round trip that stores the event.
- ``LAMBDAD_EVENT_PAYLOADS``: payloads above ``CHUNK`` bytes (an Event payload may be 1 MiB,
  NATS's default largest message), in chunks on ``lambdad.event-payloads.<token>.<n>``; the
  event's message names them in the header ``Lambdad-Payload`` and they are purged with its
  acknowledgement.
- ``LAMBDAD_EVENT_IDS`` (one message per subject, each kept ``KEEP_DONE_IDS``): a "done"
  mark on ``lambdad.event-ids.<key>`` for each acknowledged ``keep_id`` event, written before
  its message is acknowledged, so a ``keep_id`` put finding the mark is ``StoreConflict``
  (and one that does not find it still meets the message until the mark exists).

``put`` returns once JetStream acknowledged the event (its ``PubAck``). ``retry`` publishes
the event again with its next attempt, not-before and attributes (a message id made of the old
message's sequence, so a repeated ``retry`` is stored once), then acknowledges the old
message: the count and the delay live in the message, so neither a restarted node nor a
restarted NATS server forgets them. ``take`` hands out an event only once it is due: one
fetched early is given back with ``nak(delay)`` until its time, which holds nothing else back.
A take is one long-polling pull of one event, except in a burst, when it pulls what is there
(up to ``PREFETCH``) and keeps the rest for the next takes, giving back what no take asks for
within a beat.
An event a node has taken is kept from redelivery by an in-progress acknowledgement every third
of ``ack_wait`` while the node lives; a node that dies (SIGKILL) leaves its events to be
redelivered to another once ``ack_wait`` has passed. A clean ``close`` gives them back at once.

The NATS client's errors become ``StoreUnavailable`` here (a duplicate id ``StoreConflict``).
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
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from lambdad.store.base import (
    KEEP_DONE_IDS,
    Queue,
    QueuedEvent,
    StoreConflict,
    StoreUnavailable,
)
from lambdad.store.nats_link import NatsLink

log = logging.getLogger(__name__)

EVENTS = "LAMBDAD_EVENTS"
IDS = "LAMBDAD_EVENT_IDS"
PAYLOADS = "LAMBDAD_EVENT_PAYLOADS"
CONSUMER = "lambdad-dispatchers"
EVENT_SUBJECT = "lambdad.events"
ID_SUBJECT = "lambdad.event-ids"
PAYLOAD_SUBJECT = "lambdad.event-payloads"
#: The header holding everything of an event but its payload, as JSON.
HEADER = "Lambdad-Event"
#: The header naming a payload kept in chunks: "<token> <number of chunks>".
PAYLOAD_HEADER = "Lambdad-Payload"
#: Payloads larger than this go to ``LAMBDAD_EVENT_PAYLOADS`` in chunks of this size.
CHUNK = 256 * 1024
#: How long chunks are kept at most (an event is acknowledged long before: its maximum age is
#: 6 hours); only those of a node that died between writing them and the event stay that long.
KEEP_PAYLOADS = 7 * 86400.0
#: Seconds an event taken by a node may go without word from it before JetStream hands it
#: to another (the node sends word every third of it while it runs the event).
ACK_WAIT = 30.0
#: Seconds one pull request waits for an event before it is renewed.
FETCH_WAIT = 5.0
#: While the stream holds more events than this node runs, a take pulls up to this many at
#: once (what is available now) and hands out the rest from memory to the next takes.
PREFETCH = 16
#: Seconds a batch pull may wait (it waits only when the backlog has just gone).
BATCH_WAIT = 0.05
#: Seconds a JetStream API call or publish may take.
API_TIMEOUT = 5.0
#: Seconds between refreshes of the stream's message count (``pending``).
COUNT_EVERY = 1.0
#: JetStream's error code for "wrong last sequence" (the id is reserved already).
_WRONG_LAST_SEQUENCE = 10071
#: JetStream's error code for "stream name already in use with a different configuration".
_STREAM_EXISTS = 10058
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


class QueueState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def subject_key(event_id: str) -> str:
    """The event's id as one subject token: itself when it is plain, else ``~`` and a hash."""
    if _PLAIN_ID.fullmatch(event_id):
        return event_id
    return "~" + hashlib.sha256(event_id.encode()).hexdigest()


@dataclasses.dataclass
class _Taken:
    msg: Msg
    event: QueuedEvent


#: The fields of a ``QueuedEvent`` its header carries (all but the payload).
_FIELDS = tuple(f.name for f in dataclasses.fields(QueuedEvent) if f.name != "payload")


def _header(event: QueuedEvent) -> str:
    fields = {name: getattr(event, name) for name in _FIELDS}
    return json.dumps(fields, separators=(",", ":"))


def _decode(msg: Msg) -> QueuedEvent:
    fields: dict[str, Any] = json.loads((msg.headers or {})[HEADER])
    return QueuedEvent(payload=msg.data, **fields)


class NatsQueue(Queue):
    """Events in JetStream, reached through the node's ``NatsLink`` (opened and closed by its
    owner, before and after the queue)."""

    def __init__(self, link: NatsLink, *, ack_wait: float = ACK_WAIT) -> None:
        self._link = link
        self._ack_wait = ack_wait
        self._js: JetStreamContext | None = None
        self._pull: JetStreamContext.PullSubscription | None = None
        self._taking = asyncio.Lock()
        self._owned: dict[str, _Taken] = {}
        #: Messages pulled ahead and not yet handed out, with when they came.
        self._ahead: collections.deque[tuple[Msg, float]] = collections.deque()
        self._keeper: asyncio.Task[None] | None = None
        #: The stream's message count when last asked, and this node's puts less its acks since.
        self._counted = 0
        self._since = 0
        self.state = QueueState.NEW

    async def open(self) -> None:
        """Make sure the streams and the consumer exist (an existing stream is left as it is)."""
        if self.state is not QueueState.NEW:
            raise RuntimeError(f"queue is {self.state.value}")
        self._js = self._link.client.jetstream(timeout=API_TIMEOUT)
        await self._guarded("setting up the event streams", self._declare())
        self.state = QueueState.OPEN
        self._keeper = asyncio.create_task(self._keep_forever(), name="queue-keeper")

    async def _declare(self) -> None:
        js = self._jetstream()
        streams = [
            StreamConfig(
                name=EVENTS,
                subjects=[f"{EVENT_SUBJECT}.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            ),
            StreamConfig(
                name=PAYLOADS,
                subjects=[f"{PAYLOAD_SUBJECT}.>"],
                storage=StorageType.FILE,
                max_age=KEEP_PAYLOADS,
            ),
            StreamConfig(
                name=IDS,
                subjects=[f"{ID_SUBJECT}.>"],
                storage=StorageType.FILE,
                max_msgs_per_subject=1,
                max_age=KEEP_DONE_IDS,
                discard=DiscardPolicy.OLD,
            ),
        ]
        for config in streams:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_EXISTS:
                    raise
                # Kept as it is: an operator may have given it replicas or limits of their own.
                log.info("JetStream stream %s exists with its own configuration", config.name)
        await js.add_consumer(
            EVENTS,
            ConsumerConfig(
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_deliver=-1,
                max_ack_pending=-1,
                filter_subject=f"{EVENT_SUBJECT}.>",
            ),
        )
        self._counted = (await js.stream_info(EVENTS)).state.messages
        self._since = 0

    def _jetstream(self) -> JetStreamContext:
        if self.state is QueueState.CLOSED or self._js is None:
            raise StoreUnavailable("the event queue (JetStream) is closed")
        return self._js

    async def _guarded(self, what: str, call: Any) -> Any:
        """Await ``call``, the client's errors as the store's."""
        try:
            return await call
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"{what} in JetStream failed: {exc!r}") from exc

    async def close(self) -> None:
        """Give back the events taken and not settled (JetStream hands them out again at once),
        stop pulling. Idempotent; the link stays open (its owner closes it)."""
        if self.state is QueueState.CLOSED:
            return
        self.state = QueueState.CLOSED
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        given_back = [taken.msg for taken in self._owned.values()]
        given_back += [msg for msg, _ in self._ahead]
        self._owned.clear()
        self._ahead.clear()
        for msg in given_back:
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.nak()
        if self._pull is not None:
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                await asyncio.wait_for(self._pull.unsubscribe(), API_TIMEOUT)
            self._pull = None
        self._js = None

    async def put(self, event: QueuedEvent) -> None:
        """Publish the event; returns once JetStream acknowledged it. ``StoreConflict`` if its
        id is queued (or, for a ``keep_id`` event, ran lately)."""
        js = self._jetstream()
        key = subject_key(event.id)
        if event.keep_id and await self._done(js, key):
            raise StoreConflict(f"event {event.id} ran already")
        headers = {HEADER: _header(event), "Nats-Expected-Last-Subject-Sequence": "0"}
        body = event.payload
        if len(body) > CHUNK:
            headers[PAYLOAD_HEADER] = await self._spill(js, body)
            body = b""
        try:
            try:
                await js.publish(f"{EVENT_SUBJECT}.{key}", body, headers=headers)
            except nats.js.errors.NoStreamResponseError:  # no stream (a new NATS store?)
                log.warning("no JetStream stream took event %s: setting up the streams", event.id)
                await self._declare()
                self._link.renew_pulls()  # a take waiting pulled from the consumer that is gone
                await js.publish(f"{EVENT_SUBJECT}.{key}", body, headers=headers)
        except nats.js.errors.APIError as exc:
            await self._drop_payload(headers)
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise StoreConflict(f"event {event.id} exists") from exc
            raise StoreUnavailable(f"publishing event {event.id} failed: {exc!r}") from exc
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            await self._drop_payload(headers)
            raise StoreUnavailable(f"publishing event {event.id} failed: {exc!r}") from exc
        self._since += 1

    async def _spill(self, js: JetStreamContext, payload: bytes) -> str:
        """Store ``payload`` in chunks; the ``Lambdad-Payload`` header that names them."""
        token = uuid.uuid4().hex
        chunks = range(0, len(payload), CHUNK)
        for n, start in enumerate(chunks):
            subject = f"{PAYLOAD_SUBJECT}.{token}.{n}"
            chunk = payload[start : start + CHUNK]
            await self._guarded("storing an event's payload", js.publish(subject, chunk))
        return f"{token} {len(chunks)}"

    async def _gather(self, js: JetStreamContext, named: str) -> bytes | None:
        """The payload the ``Lambdad-Payload`` header ``named`` names (None: it is gone)."""
        token, count = named.split()
        parts = []
        for n in range(int(count)):
            subject = f"{PAYLOAD_SUBJECT}.{token}.{n}"
            try:
                found = await js.get_last_msg(PAYLOADS, subject)
            except nats.js.errors.NotFoundError:
                return None
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                raise StoreUnavailable(f"reading an event's payload failed: {exc!r}") from exc
            parts.append(found.data or b"")
        return b"".join(parts)

    async def _drop_payload(self, headers: Mapping[str, str]) -> None:
        """Purge the chunks ``headers`` name, if any (a failure leaves them to expire)."""
        named = headers.get(PAYLOAD_HEADER)
        if not named or self._js is None:
            return
        subject = f"{PAYLOAD_SUBJECT}.{named.split()[0]}.>"
        try:
            await self._js.purge_stream(PAYLOADS, subject=subject)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning("purging an event's payload failed (it expires): %r", exc)

    async def _done(self, js: JetStreamContext, key: str) -> bool:
        """Whether the kept id ``key`` has its "done" mark."""
        try:
            await js.get_last_msg(IDS, f"{ID_SUBJECT}.{key}")
        except nats.js.errors.NotFoundError:
            return False
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"reading the done mark of {key} failed: {exc!r}") from exc
        return True

    async def take(self) -> QueuedEvent:
        """Wait for the next due event; it stays owned (kept from other nodes) until ``ack``
        or ``retry``. An event not yet due goes back to JetStream until its time."""
        async with self._taking:
            while True:
                msg = await self._next()
                try:
                    event = _decode(msg)
                except (KeyError, TypeError, ValueError):
                    log.error("dropping a malformed message on %s", msg.subject)
                    await self._guarded("dropping a malformed event", msg.term())
                    continue
                delay = event.not_before - time.time()
                if delay > 0:
                    await self._guarded(f"delaying event {event.id}", msg.nak(delay))
                    continue
                named = (msg.headers or {}).get(PAYLOAD_HEADER)
                if named:
                    try:
                        payload = await self._gather(self._jetstream(), named)
                    except StoreUnavailable:
                        with contextlib.suppress(nats.errors.Error, OSError):
                            await msg.nak()  # for whichever node can read it
                        raise
                    if payload is None:
                        log.error("the payload of event %s is gone: event dropped", event.id)
                        await self._guarded("dropping an event", msg.term())
                        continue
                    event = dataclasses.replace(event, payload=payload)
                self._owned[event.id] = _Taken(msg, event)
                return event

    async def _next(self) -> Msg:
        """The next message for this node. A pull JetStream refuses (the consumer is gone: a
        NATS server on a new store) sets the streams up again, once; refused again, it is
        ``StoreUnavailable`` (the dispatcher waits before it takes again)."""
        declared = False
        while True:
            if self._ahead:
                return self._ahead.popleft()[0]
            pull = await self._subscription()
            try:
                if self._backlog():
                    with contextlib.suppress(nats.errors.TimeoutError):
                        return self._keep_ahead(await pull.fetch(PREFETCH, timeout=BATCH_WAIT))
                return (await self._link.fetch(pull, 1, FETCH_WAIT))[0]
            except nats.errors.TimeoutError:
                continue
            except nats.js.errors.APIError as exc:
                self._pull = None
                if declared:
                    raise StoreUnavailable(f"JetStream refused a pull: {exc!r}") from exc
                log.warning("JetStream refused a pull (%r): setting up the streams again", exc)
                await self._guarded("setting up the event streams", self._declare())
                declared = True
            except (nats.errors.Error, OSError) as exc:
                raise StoreUnavailable(f"taking an event from JetStream failed: {exc!r}") from exc

    def _backlog(self) -> bool:
        """Whether the stream, as last counted, holds events no node runs yet (a burst)."""
        return self.pending() > len(self._owned) + 1

    def _keep_ahead(self, msgs: list[Msg]) -> Msg:
        """The first of ``msgs``; the others are kept to hand out next (or to give back if no
        take comes for them soon: ``_give_back_stale``)."""
        now = time.monotonic()
        self._ahead.extend((msg, now) for msg in msgs[1:])
        return msgs[0]

    async def _give_back_stale(self, older_than: float) -> None:
        """Give back to JetStream the messages pulled ahead that no take has asked for within
        ``older_than`` seconds (this node's slots are busy: another node can run them now)."""
        limit = time.monotonic() - older_than
        while self._ahead and self._ahead[0][1] < limit:
            msg, _ = self._ahead.popleft()
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.nak()

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._pull is None:
            js = self._jetstream()
            self._pull = await self._guarded(
                "subscribing to the events",
                js.pull_subscribe_bind(CONSUMER, stream=EVENTS),
            )
        return self._pull

    def _taken(self, event_id: str) -> _Taken:
        self._jetstream()
        taken = self._owned.get(event_id)
        if taken is None:
            raise StoreUnavailable(f"event {event_id} is not taken by this node")
        return taken

    async def ack(self, event_id: str) -> None:
        """Remove the event from the queue (a kept id is marked done first)."""
        taken = self._taken(event_id)
        if taken.event.keep_id:
            subject = f"{ID_SUBJECT}.{subject_key(event_id)}"
            marking = self._jetstream().publish(subject, b"done")
            await self._guarded(f"marking event {event_id} done", marking)
        await self._acknowledge(taken, "acknowledging")
        self._owned.pop(event_id, None)
        self._since -= 1
        await self._drop_payload(taken.msg.headers or {})

    async def retry(self, event: QueuedEvent, not_before: float) -> None:
        """Publish the event again, one attempt more (with its attributes), due at
        ``not_before``; then acknowledge the message it came in."""
        taken = self._taken(event.id)
        again = event.retried(not_before)
        key = subject_key(event.id)
        headers = {
            HEADER: _header(again),
            "Nats-Msg-Id": f"{key}.{taken.msg.metadata.sequence.stream}",
        }
        body = again.payload
        named = (taken.msg.headers or {}).get(PAYLOAD_HEADER)
        if named:  # the chunks stay, named again
            headers[PAYLOAD_HEADER] = named
            body = b""
        publishing = self._jetstream().publish(f"{EVENT_SUBJECT}.{key}", body, headers=headers)
        await self._guarded(f"requeueing event {event.id}", publishing)
        await self._acknowledge(taken, "requeueing")
        self._owned.pop(event.id, None)

    async def _acknowledge(self, taken: _Taken, what: str) -> None:
        """Acknowledge the message ``taken`` came in, and wait for JetStream to confirm it.
        While the link is down that is ``StoreUnavailable`` (the caller tries again). A
        connected link with no confirmation means JetStream no longer holds that delivery for
        this node (its ack wait passed and it went to another): the event is let go, as the
        other delivery will run it (at least once)."""
        try:
            await taken.msg.ack_sync(API_TIMEOUT)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if not self._link.connected.is_set() or not isinstance(exc, TimeoutError):
                raise StoreUnavailable(f"{what} event {taken.event.id} failed: {exc!r}") from exc
            log.warning("JetStream did not confirm %s event %s: let go", what, taken.event.id)

    def pending(self) -> int:
        """Events in the stream (queued, delayed or running on any node), as of the last count
        (every ``COUNT_EVERY`` seconds), with this node's own puts and acks since."""
        return max(0, self._counted + self._since)

    async def _keep_forever(self) -> None:
        """Tell JetStream the events this node runs are still in progress, and count the
        stream, until closed."""
        beat = min(COUNT_EVERY, self._ack_wait / 3)
        last_progress = time.monotonic()
        while True:
            await asyncio.sleep(beat)
            await self._give_back_stale(beat)
            if time.monotonic() - last_progress >= self._ack_wait / 3 - beat / 2:
                last_progress = time.monotonic()
                for taken in list(self._owned.values()):
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await taken.msg.in_progress()
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError, StoreUnavailable):
                # Bounded: a slow answer must not hold back the next in-progress acks.
                info = await asyncio.wait_for(self._jetstream().stream_info(EVENTS), beat)
                self._counted, self._since = info.state.messages, 0
