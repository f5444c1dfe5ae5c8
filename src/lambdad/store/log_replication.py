"""Every node's log lines on every api node (cluster mode, docs/cluster.md: logs), and the
stream replication machinery that the cluster's traces share (``StreamReplication``;
``store/trace_replication.py``).

Each node sends the changes it makes to its own log store (the lines its functions print,
PutLogEvents, CreateLogGroup, retention, tags, deletes: ``observe.logs.LogStore``'s outbox)
to the JetStream stream ``LAMBDAD_LOGS``, on the subject ``lambdad.logs.<node id>``. Every node
that serves the API (role ``api`` or ``all``) reads the stream through a durable consumer of
its own, ``logs-<node id>``, and applies the other nodes' changes to its local log store, so
the CloudWatch Logs API, live tail and ``lambdad logs --follow`` read locally, and a node
restarted on its data dir resumes where it stopped (the consumer is durable on the server).

- **Sending never blocks an invoke**: ``emit`` appends to a list; a task, at most once per
  ``LINGER`` seconds (at once after a quiet spell), encodes and sends what gathered as
  messages of at most ``MAX_MESSAGE`` bytes (a JSON array of changes each), waiting for JetStream's
  acknowledgement. While NATS is away the changes wait, up to ``BACKLOG`` of them and
  ``BACKLOG_BYTES`` of messages (then the oldest go, with a warning), and are sent once it is
  back; each message carries a ``Nats-Msg-Id``, so one sent again after a lost
  acknowledgement is stored once.
- **Bounded**: the stream keeps at most ``max_bytes`` (the node's log bound) and ``max_age``
  seconds, discarding the oldest; a reader away longer misses what was discarded.
- **At most once on the reader**: each message is acknowledged once applied to the log
  store's memory; the store writes it to disk within 0.2 s, so a reader killed in between
  loses what it had not written, as it loses its own lines. A message delivered but not
  applied when the reader stopped is delivered again ``ACK_WAIT`` seconds later; one
  delivered (or stored) again because a crashed NATS server lost an acknowledgement is
  recognised by its ``Nats-Msg-Id`` and skipped (while the reader runs: a reader restarted
  together with a crashed NATS may apply the last of them twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import NatsLink

log = logging.getLogger(__name__)

STREAM = "LAMBDAD_LOGS"
SUBJECTS = "lambdad.logs.>"
#: The most bytes one message carries (NATS refuses more than its ``max_payload``, 1 MB by
#: default); a single change larger than this is sent alone.
MAX_MESSAGE = 256 * 1024
#: Changes waiting to be sent at most (while NATS is away); past it the oldest are dropped.
BACKLOG = 200_000
#: ... and at most this many bytes of their messages (about: characters and 30 per event).
BACKLOG_BYTES = 64 * 1024 * 1024
#: Messages a reader takes at a time.
FETCH = 64
#: Seconds a fetch waits for the first message (then asks again).
FETCH_WAIT = 2.0
#: Seconds after which a message delivered to a reader but not acknowledged is delivered again.
ACK_WAIT = 10.0
#: Messages whose id a reader remembers, to apply none twice.
REMEMBERED = 50_000
#: Seconds between attempts while NATS is away.
RETRY = 0.5
#: The sender sends at most once per this many seconds: the first change after a quiet spell
#: goes at once, and what follows it within the spell gathers, so that one message (one
#: JetStream publish and acknowledgement, one delivery and ack on each reader) carries every
#: line of many invocations, instead of a message per line on the invoke's heels.
LINGER = 0.1
#: Seconds a ``close`` waits for its tasks to end (twice at most).
STOP_WAIT = 0.5
#: Seconds a ``close`` spends sending what is left.
CLOSE_WAIT = 2.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode


def subject_of(node: str) -> str:
    return f"lambdad.logs.{node}"


def encoded(change: dict[str, Any]) -> bytes:
    """One change as JSON (text that is not UTF-8, as lone surrogates, replaced)."""
    try:
        return _encode(change)
    except UnicodeEncodeError:
        return _encode(_clean(change))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def pieces(change: dict[str, Any]) -> list[bytes]:
    """``change`` encoded, a put of many events split so each piece fits ``MAX_MESSAGE``."""
    data = encoded(change)
    events = change.get("e")
    if len(data) <= MAX_MESSAGE or change.get("o") != "put" or not isinstance(events, list):
        return [data]
    if len(events) < 2:
        return [data]
    half = len(events) // 2
    return pieces({**change, "e": events[:half]}) + pieces({**change, "e": events[half:]})


def _size_of(change: dict[str, Any]) -> int:
    """About the bytes ``change`` takes in a message (without encoding it)."""
    events = change.get("e")
    if isinstance(events, list):
        return 64 + sum(len(message) + 30 for _, message in events)
    return 256


class ReplicationState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class StreamReplication:
    """A node's changes to a JetStream stream, and (``consume``) the other nodes' from it
    into ``apply``. ``await open(node)``, ``emit`` from the loop, ``await close()``.

    The machinery the cluster's logs and traces share; a subclass names its stream, its
    subjects, its readers' consumers and how its changes are cut and weighed."""

    #: The stream, the subjects' prefix (``<prefix>.<node id>``) and the consumers' prefix.
    STREAM = ""
    PREFIX = ""
    CONSUMER = ""

    def __init__(
        self,
        link: NatsLink,
        apply: Callable[[dict[str, Any]], None],
        *,
        consume: bool,
        max_bytes: int,
        max_age: float,
    ) -> None:
        self._link = link
        self._apply = apply
        self._consume = consume
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._node = ""
        #: Changes not sent yet, and the encoded pieces of the next ones.
        self._waiting: deque[tuple[dict[str, Any], int]] = deque()
        self._waiting_bytes = 0
        self._ready: deque[bytes] = deque()
        #: The message being sent (kept until JetStream acknowledged it) and its headers.
        self._flight: tuple[bytes, dict[str, str]] | None = None
        self._wake = asyncio.Event()
        self._dropped = 0
        self._sent = 0
        self._boot = secrets.token_hex(6)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Any = None
        #: Ids of the messages applied lately (``_first_time``).
        self._applied: set[str] = set()
        self._applied_order: deque[str] = deque()
        self.state = ReplicationState.NEW

    async def open(self, node: str) -> None:
        """Make (or update) the stream, bind this node's consumer; StoreUnavailable when
        NATS has no JetStream."""
        if self.state is not ReplicationState.NEW:
            return
        self._node = node
        js = self._link.client.jetstream()
        config = api.StreamConfig(
            name=self.STREAM,
            subjects=[f"{self.PREFIX}.>"],
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_bytes=self._max_bytes if self._max_bytes > 0 else -1,
            max_age=self._max_age,
            duplicate_window=120.0,
        )
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # there, with another bound: take ours
                await js.update_stream(config)
            subscription = None
            if self._consume:
                subscription = await js.pull_subscribe(
                    f"{self.PREFIX}.>",
                    durable=self._consumer_name(),
                    stream=self.STREAM,
                    config=api.ConsumerConfig(
                        ack_policy=api.AckPolicy.EXPLICIT,
                        # Delivered but never applied (the reader stopped): sent again after.
                        ack_wait=ACK_WAIT,
                        deliver_policy=api.DeliverPolicy.ALL,
                        inactive_threshold=self._consumer_idle(),
                        max_ack_pending=-1,
                    ),
                )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise StoreUnavailable(
                f"the stream {self.STREAM} could not be opened on NATS at "
                f"{self._link.describe()} (is JetStream on?): {exc}"
            ) from exc
        self.state = ReplicationState.OPEN
        what = self.CONSUMER
        self._tasks.append(asyncio.create_task(self._send_forever(js), name=f"{what}-sender"))
        self._subscription = subscription
        if subscription is not None:
            self._tasks.append(
                asyncio.create_task(self._read_forever(subscription), name=f"{what}-reader")
            )

    def _consumer_name(self) -> str:
        """The durable consumer this node reads through."""
        return f"{self.CONSUMER}-{self._node}"

    def _consumer_idle(self) -> float:
        """Seconds after which the server deletes this node's consumer, unread."""
        return self._max_age

    def _subject(self) -> str:
        return f"{self.PREFIX}.{self._node}"

    def _size_of(self, change: dict[str, Any]) -> int:
        """About the bytes ``change`` takes in a message (without encoding it)."""
        return 256

    def _pieces(self, change: dict[str, Any]) -> list[bytes]:
        """``change`` encoded, in pieces of at most ``MAX_MESSAGE`` bytes where it can be cut."""
        return [encoded(change)]

    # ------------------------------------------------------------------ sending

    def emit(self, change: dict[str, Any]) -> None:
        """Queue one change of this node's store (a log store's ``LogOutbox``, a trace
        store's ``SpanOutbox``)."""
        if self.state is ReplicationState.CLOSED:
            return
        size = self._size_of(change)
        self._waiting.append((change, size))
        self._waiting_bytes += size
        while len(self._waiting) > 1 and (
            len(self._waiting) > BACKLOG or self._waiting_bytes > BACKLOG_BYTES
        ):
            self._waiting_bytes -= self._waiting.popleft()[1]
            self._dropped += 1
            if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                what, dropped = self.CONSUMER, self._dropped
                log.warning("%s for other nodes: %d changes dropped (NATS away)", what, dropped)
        self._wake.set()

    def _take(self) -> list[bytes]:
        """The next message's changes (at least one), at most ``MAX_MESSAGE`` bytes; encoded
        here, in the sender's task, not where they were emitted."""
        taken: list[bytes] = []
        size = 2
        while True:
            if not self._ready:
                if not self._waiting:
                    return taken
                change, change_size = self._waiting.popleft()
                self._waiting_bytes -= change_size
                self._ready.extend(self._pieces(change))
            piece = self._ready[0]
            if taken and size + len(piece) + 1 > MAX_MESSAGE:
                return taken
            taken.append(self._ready.popleft())
            size += len(piece) + 1

    async def _send_forever(self, js: Any) -> None:
        subject = self._subject()
        loop = asyncio.get_running_loop()
        last_sent = -LINGER
        while self.state is ReplicationState.OPEN:
            await self._wake.wait()
            # At most one send per LINGER: the first change after a quiet spell goes at once,
            # those that follow it closely gather for the next.
            wait = last_sent + LINGER - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            last_sent = loop.time()
            await self._send_waiting(js, subject)

    async def _send_waiting(self, js: Any, subject: str) -> None:
        while self._flight is not None or self._waiting or self._ready:
            if self._flight is None:
                self._sent += 1
                taken = self._take()
                headers = {"Nats-Msg-Id": f"{self._node}-{self._boot}-{self._sent}"}
                self._flight = (b"[" + b",".join(taken) + b"]", headers)
            data, headers = self._flight
            try:
                await js.publish(subject, data, timeout=5.0, headers=headers)
            except nats.errors.MaxPayloadError:
                what, size = self.CONSUMER, len(data)
                log.warning("a %s change of %d bytes is too large for NATS: dropped", what, size)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                if self.state is ReplicationState.CLOSED:
                    raise
                log.debug("sending %s to other nodes: %r; again in %s s", self.CONSUMER, exc, RETRY)
                await asyncio.sleep(RETRY)
                continue
            self._flight = None

    # ------------------------------------------------------------------ reading

    async def _read_forever(self, subscription: Any) -> None:
        # Not ``while True``: nats-py turns a cancellation into ConnectionClosedError once the
        # connection is closed, so a cancelled reader must also see that it was closed.
        while self.state is ReplicationState.OPEN:
            try:
                messages = await self._link.fetch(subscription, FETCH, FETCH_WAIT)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.Error, OSError) as exc:
                if self.state is not ReplicationState.OPEN:
                    return
                log.debug("reading other nodes' %s: %r; again in %s s", self.CONSUMER, exc, RETRY)
                await asyncio.sleep(RETRY)
                continue
            for message in messages:
                if not self._mine(message) and self._first_time(message):
                    self._apply_message(message)
                # Each acknowledged once applied (not the batch's last for all: a stop
                # halfway through a batch would acknowledge what was never applied).
                with contextlib.suppress(nats.errors.Error, OSError, RuntimeError):
                    await message.ack()
                # The loop's turn between messages: a reader catching up (a new or restarted
                # node reading the stream) holds the loop one message at a time, not a batch.
                await asyncio.sleep(0)

    def _mine(self, message: Any) -> bool:
        """Whether ``message`` is one this node sent (never applied to itself)."""
        return bool(message.subject == self._subject())

    def _first_time(self, message: Any) -> bool:
        """Whether ``message`` was not applied yet. A NATS server that crashed can lose
        acknowledgements it had taken (and deliver their messages again) or the record of
        ids it stored (and store a message sent again twice): the ids (``Nats-Msg-Id``) of
        the last ``REMEMBERED`` messages applied are kept to tell."""
        key = (message.headers or {}).get("Nats-Msg-Id")
        if not key:
            return True
        if key in self._applied:
            return False
        self._applied.add(key)
        self._applied_order.append(key)
        if len(self._applied_order) > REMEMBERED:
            self._applied.discard(self._applied_order.popleft())
        return True

    def _apply_message(self, message: Any) -> None:
        try:
            changes = _decode(message.data)
        except msgspec.DecodeError:
            log.warning("a malformed message on %s: skipped", message.subject)
            return
        for change in changes:
            self._apply(change)

    async def close(self) -> None:
        """Send what is waiting (for up to ``CLOSE_WAIT`` seconds), stop reading. Idempotent."""
        if self.state is ReplicationState.CLOSED:
            return
        was_open = self.state is ReplicationState.OPEN
        self.state = ReplicationState.CLOSED
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # nats-py's fetch can miss a cancellation (its inner wait stays pending): wait a
            # bounded time, then unsubscribe, which ends what the fetch waits for.
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_WAIT)
            if self._subscription is not None:
                # Also so that the link's drain does not wait on a fetch nobody reads.
                with contextlib.suppress(Exception):
                    await self._subscription.unsubscribe()
            if pending:
                await asyncio.wait(pending, timeout=STOP_WAIT)
        if was_open and (self._waiting or self._ready or self._flight is not None):
            with contextlib.suppress(Exception):
                js = self._link.client.jetstream()
                await asyncio.wait_for(self._send_waiting(js, self._subject()), CLOSE_WAIT)


class LogReplication(StreamReplication):
    """This node's log store changes to ``LAMBDAD_LOGS``, and the other nodes' into its log
    store (``apply``: ``LogStore.apply``)."""

    STREAM = STREAM
    PREFIX = "lambdad.logs"
    CONSUMER = "logs"

    def _size_of(self, change: dict[str, Any]) -> int:
        return _size_of(change)

    def _pieces(self, change: dict[str, Any]) -> list[bytes]:
        return pieces(change)
