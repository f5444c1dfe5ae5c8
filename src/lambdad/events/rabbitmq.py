"""An Amazon MQ for RabbitMQ event source: one queue of a RabbitMQ broker turned into batches of
one function, through aio-pika (the asyncio AMQP 0-9-1 client).

``RabbitPoller`` connects to the broker with the mapping's credentials and virtual host,
consumes the queue with a prefetch of two batches, gathers a batch (up to ``batch_size``
messages, the batching window counted from the first message, or the invoke payload limit),
invokes the function synchronously with Lambda's ``aws:rmq`` event, and then acknowledges the
batch (success) or rejects it with requeue (a function error: the broker redelivers it,
``redelivered: true``, and its dead-letter policy, e.g. a quorum queue's delivery limit,
applies). Messages the mapping's filter drops are acknowledged without invoking. A lost
connection is reported (``LastProcessingResult``) and re-opened with backoff; unacknowledged
messages go back to the queue with the connection, as AMQP does.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import decimal
import enum
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import msgspec
import yarl
from aio_pika.abc import AbstractIncomingMessage

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.invoke.service import Accepted, Invoker, InvokeRequest

if TYPE_CHECKING:
    from lambdad.runtime.invocation import Outcome

log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: msgspec's JSON encoder: several times faster than ``json`` on a batch of records.
_ENCODER = msgspec.json.Encoder()

#: ``LastProcessingResult`` values (``OK`` and ``PROBLEM: Function call failed`` are AWS's).
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
THROTTLED = "PROBLEM: Function call throttled"
FUNCTION_UNUSABLE = "PROBLEM: Function cannot be invoked: {}"
BROKER_FAILED = "PROBLEM: Cannot consume from the broker: {}"

#: Amazon MQ's batching window when none was ever set (seconds, before the time scale).
DEFAULT_WINDOW = 0.5
#: A batch stops growing when its records would pass this many bytes of JSON (the invoke
#: payload limit is 6 MB; base64 makes a body 4/3 larger).
PAYLOAD_BUDGET = 6 * 1024 * 1024 - 64 * 1024
#: JSON a record adds beyond its base64 body, counted generously.
RECORD_OVERHEAD = 600
#: AMQP's prefetch count is a 16-bit number.
MAX_PREFETCH = 65_535
#: Reconnect and throttle backoff (seconds, scaled by the time scale).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: How long opening a connection may take, and closing one (not scaled).
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class PollerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class RabbitSource:
    """One Amazon MQ for RabbitMQ mapping, as the poller needs it."""

    scope: Scope
    function_name: str
    qualifier: str | None
    broker_arn: str
    #: ``amqp://host:port`` (``amqps://`` for TLS) the broker ARN stands for.
    url: str
    queue: str
    username: str
    password: str
    virtual_host: str = "/"
    batch_size: int = 100
    #: Seconds, before the time scale.
    batching_window: float = DEFAULT_WINDOW
    #: True for the records the mapping's ``FilterCriteria`` let through; None: all of them.
    record_filter: Callable[[dict[str, Any]], bool] | None = None
    #: Deliveries the broker may have in flight to the poller unacknowledged; None: two
    #: batches (``prefetch_count``).
    prefetch: int | None = None

    @property
    def prefetch_count(self) -> int:
        """Two batches by default: the next batch arrives while the function runs this one
        (with one batch only, every batch waits a round trip after the previous ack)."""
        return min(self.prefetch or 2 * self.batch_size, MAX_PREFETCH)

    @property
    def queue_key(self) -> str:
        """The key of ``rmqMessagesByQueue``: ``queue::vhost``."""
        return f"{self.queue}::{self.virtual_host}"


async def open_connection(source: RabbitSource) -> aio_pika.abc.AbstractConnection:
    """A connection to the source's broker with its credentials and virtual host."""
    url = yarl.URL(source.url)
    secure = url.scheme == "amqps"
    return await aio_pika.connect(
        host=url.host or "localhost",
        port=url.port or (5671 if secure else 5672),
        login=source.username,
        password=source.password,
        virtualhost=source.virtual_host,
        ssl=secure,
        timeout=CONNECT_TIMEOUT,
    )


class _Lost(Exception):
    """The broker closed the connection or the channel."""


class _Unusable(Exception):
    """The function cannot be invoked (already reported): the session ends, and the batch
    goes back to the queue with the connection."""


class _Inbox:
    """The deliveries of one connection, waiting to be batched. The gatherer sleeps until
    enough have arrived (one wake-up per batch, not per message)."""

    def __init__(self) -> None:
        self._messages: collections.deque[AbstractIncomingMessage] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._need = 0
        self.lost = False

    def put(self, message: AbstractIncomingMessage) -> None:
        self._messages.append(message)
        if len(self._messages) >= self._need:
            self._wake()

    def lose(self) -> None:
        """The connection or channel closed: wake the gatherer to end the session."""
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_for(self, count: int, timeout: float | None) -> None:
        """Until ``count`` deliveries wait or ``timeout`` seconds pass; ``_Lost`` when the
        connection goes."""
        if self.lost:
            raise _Lost("the broker closed the connection")
        if len(self._messages) >= count or (timeout is not None and timeout <= 0):
            return
        self._need = count
        self._waiter = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._waiter, timeout)
        self._waiter = None
        if self.lost:
            raise _Lost("the broker closed the connection")

    def take(self, count: int, budget: int) -> list[AbstractIncomingMessage]:
        """Up to ``count`` deliveries, first come first, within ``budget`` bytes of records
        (the first one whatever its size)."""
        batch = [self._messages.popleft()]
        size = _record_size(batch[0])
        while self._messages and len(batch) < count:
            size += _record_size(self._messages[0])
            if size > budget:
                break
            batch.append(self._messages.popleft())
        return batch


class RabbitPoller:
    """Consumes ``source``'s queue and invokes its function through ``invoker``; ``on_result``
    is told each batch's (and each broker failure's) ``LastProcessingResult``. ``start``
    once, ``close`` (idempotent) to stop: what was taken but not acknowledged goes back to
    the queue when the connection closes."""

    def __init__(
        self,
        source: RabbitSource,
        invoker: Invoker,
        on_result: Callable[[str], None],
        *,
        time_scale: float = 1.0,
    ) -> None:
        self.source = source
        self._invoker = invoker
        self._on_result = on_result
        self._scale = time_scale
        self._task: asyncio.Task[None] | None = None
        #: How long to pause after the next failed batch.
        self._failure_pause = BACKOFF_FIRST
        #: Connections opened (a reconnect adds one): for tests and ``lambdad doctor``.
        self.connections = 0
        self.state = PollerState.CREATED

    async def start(self) -> None:
        """Start consuming (the first connection is opened in the background)."""
        if self.state is not PollerState.CREATED:
            raise RuntimeError(f"the poller is {self.state.value}")
        self.state = PollerState.RUNNING
        self._task = asyncio.create_task(self._run(), name=f"rabbitmq-{self.source.queue}")

    async def close(self) -> None:
        """Stop consuming and close the connection. Idempotent."""
        if self.state is PollerState.CLOSED:
            return
        self.state = PollerState.CLOSED
        if self._task is not None:
            self._task.cancel()
            # Closing the connection of a broker that stopped answering must not hold us.
            await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT)

    def _report(self, result: str) -> None:
        try:
            self._on_result(result)
        except Exception:  # the listener's failure is its own; consuming goes on
            log.exception("on_result failed")

    async def _run(self) -> None:
        """Sessions until closed: a failed or lost one is reported and re-opened with
        backoff (reset once a connection is up)."""
        backoff = BACKOFF_FIRST
        while self.state is PollerState.RUNNING:
            try:
                async with await open_connection(self.source) as connection:
                    self.connections += 1
                    backoff = BACKOFF_FIRST
                    await self._session(connection)
            except asyncio.CancelledError:
                raise
            except _Unusable:
                pass
            except Exception as exc:  # the broker's failure, or the connection's
                log.warning("consuming %s failed: %r", self.source.queue, exc)
                self._report(BROKER_FAILED.format(_describe(exc)))
            await asyncio.sleep(self._scale * backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, connection: aio_pika.abc.AbstractConnection) -> None:
        """Consume on one connection until it or its channel is lost (``_Lost``)."""
        inbox = _Inbox()
        connection.close_callbacks.add(lambda *_: inbox.lose())
        channel = await connection.channel()
        channel.close_callbacks.add(lambda *_: inbox.lose())
        await channel.set_qos(prefetch_count=self.source.prefetch_count)
        queue = await channel.get_queue(self.source.queue, ensure=True)

        async def deliver(message: AbstractIncomingMessage) -> None:
            inbox.put(message)

        await queue.consume(deliver)
        while True:
            batch = await self._gather(inbox)
            await self._handle(batch)

    async def _gather(self, inbox: _Inbox) -> list[AbstractIncomingMessage]:
        """One batch: the first delivery, then more until ``batch_size``, the window's end
        (from the first message) or the payload budget (a message that would pass it stays
        first in line for the next batch)."""
        await inbox.wait_for(1, None)
        await inbox.wait_for(self.source.batch_size, self._scale * self.source.batching_window)
        return inbox.take(self.source.batch_size, PAYLOAD_BUDGET)

    async def _handle(self, batch: list[AbstractIncomingMessage]) -> None:
        """Filter, invoke, then acknowledge or requeue one batch."""
        records = await _off_loop(len(batch), lambda: [record_of(m) for m in batch])
        keep: list[dict[str, Any]] = []
        kept: list[AbstractIncomingMessage] = []
        for message, record in zip(batch, records, strict=True):
            if self._passes(record):
                keep.append(record)
                kept.append(message)
            else:
                await message.ack()  # filtered out: acknowledged unseen
        if not kept:
            return
        outcome = await self._invoke(keep)
        last = kept[-1]
        if outcome is None:  # too large for one invoke
            for message in kept:
                await message.reject(requeue=False)
        elif outcome.function_error:
            self._report(FUNCTION_FAILED)
            await last.nack(multiple=True, requeue=True)
            # The broker hands the batch back at once: pause (1 s doubling to 30 s, scaled,
            # reset by a success) so that a poison message is not retried in a hot loop.
            await asyncio.sleep(self._scale * self._failure_pause)
            self._failure_pause = min(self._failure_pause * 2, BACKOFF_MAX)
        else:
            self._report(OK)
            self._failure_pause = BACKOFF_FIRST
            await last.ack(multiple=True)

    def _passes(self, record: dict[str, Any]) -> bool:
        check = self.source.record_filter
        if check is None:
            return True
        try:
            return bool(check(record))
        except Exception:  # a filter that cannot read the record does not match it
            log.exception("filter of %s failed", self.source.queue)
            return False

    def _event(self, records: Sequence[dict[str, Any]]) -> bytes:
        event = {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.source.broker_arn,
            "rmqMessagesByQueue": {self.source.queue_key: list(records)},
        }
        return _ENCODER.encode(event)

    async def _invoke(self, records: Sequence[dict[str, Any]]) -> Outcome | None:
        """Invoke with ``records``. Throttles are retried with backoff while the poller runs;
        a payload too large is None (rejected without requeue: Lambda drops records over its
        size limit, and the broker's dead-letter policy applies); any other refusal is
        reported and ends the session after a pause (``_Unusable``: the batch goes back to the
        queue with the connection, which is opened again)."""
        source = self.source
        payload = await _off_loop(len(records), lambda: self._event(records))
        backoff = BACKOFF_FIRST
        while True:
            request = InvokeRequest(source.function_name, source.qualifier, payload)
            try:
                outcome = await self._invoker.invoke(source.scope, request)
            except errors.TooManyRequestsException:
                self._report(THROTTLED)
                await asyncio.sleep(self._scale * backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except errors.RequestTooLargeException as exc:
                self._report(FUNCTION_UNUSABLE.format(exc))
                return None
            except errors.LambdaError as exc:  # gone, inactive...
                self._report(FUNCTION_UNUSABLE.format(exc))
                await asyncio.sleep(self._scale * BACKOFF_FIRST)
                raise _Unusable(str(exc)) from exc
            if isinstance(outcome, Accepted):  # RequestResponse always runs
                raise TypeError(f"unexpected invoke result {outcome!r}")
            return outcome


def _record_size(message: AbstractIncomingMessage) -> int:
    return (len(message.body) + 2) // 3 * 4 + RECORD_OVERHEAD


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def record_of(message: AbstractIncomingMessage) -> dict[str, Any]:
    """One message as Lambda's ``aws:rmq`` event gives it: ``basicProperties`` (the Java AMQP
    client's names and shapes: string headers as ``{"bytes": [...]}``, absent properties
    null), ``redelivered`` and the body in base64 as ``data``."""
    delivery_mode = message.delivery_mode
    properties = {
        "contentType": message.content_type,
        "contentEncoding": message.content_encoding,
        "headers": _headers(message.headers) if message.headers else None,
        "deliveryMode": int(delivery_mode) if delivery_mode is not None else None,
        "priority": message.priority,
        "correlationId": message.correlation_id,
        "replyTo": message.reply_to,
        "expiration": _expiration(message.expiration),
        "messageId": message.message_id,
        "timestamp": _timestamp(message.timestamp) if message.timestamp else None,
        "type": message.type,
        "userId": message.user_id,
        "appId": message.app_id,
        "clusterId": getattr(message, "cluster_id", None) or None,
        "bodySize": len(message.body),
    }
    return {
        "basicProperties": properties,
        "redelivered": bool(message.redelivered),
        "data": base64.b64encode(message.body).decode("ascii"),
    }


def _expiration(value: Any) -> str | None:
    """``expiration`` as sent (milliseconds, a string); aio-pika hands it over in seconds."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float):
        return str(round(value * 1000))
    return None


def _headers(value: Any) -> Any:
    """A header value as Lambda's Java poller serialises it."""
    if isinstance(value, str):
        return {"bytes": list(value.encode())}
    if isinstance(value, bytes | bytearray):
        return {"bytes": list(value)}
    if isinstance(value, dict):
        return {str(k): _headers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_headers(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return _timestamp(value)
    return value


def _timestamp(value: datetime.datetime | float | int) -> str:
    """A timestamp as Lambda writes it (``Jan 1, 1970, 12:33:41 AM``, UTC)."""
    if isinstance(value, int | float):
        value = datetime.datetime.fromtimestamp(value, datetime.UTC)
    elif value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    hour = value.hour % 12 or 12
    return f"{value:%b} {value.day}, {value.year}, {hour}:{value:%M:%S %p}"


def for_mq(record: dict[str, Any]) -> dict[str, Any]:
    """The view filter patterns match an MQ record against: ``data`` decoded, and parsed when
    it is a JSON object (as Lambda filters MQ messages on their ``data``)."""
    view = dict(record)
    try:
        text = base64.b64decode(record.get("data", ""), validate=True).decode()
    except ValueError:
        return view
    view["data"] = text
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            view["data"] = parsed
    return view


async def _off_loop(count: int, work: Callable[[], _T]) -> _T:
    """``work()`` here for a small batch, in a thread for a large one (up to 10,000 records
    must not hold the event loop)."""
    if count <= 100:
        return work()
    return await asyncio.to_thread(work)
