"""One node's connection to the cluster's NATS servers (cluster mode, docs/cluster.md).

The one module that imports the NATS client for messaging: requests and replies, subscriptions
and publishes here take and give bytes and header dicts, and the client's errors become the
store's own (``StoreUnavailable``; ``NoResponders`` and ``ReplyTimeout`` for a request nobody
answered). Other modules of ``lambdad.store`` (the JetStream queue) reach the client itself
through ``client``; nothing above the store layer does.

The connection reconnects by itself, forever, while the link is open: a NATS server restarted
under a node costs the requests made while it was away, not the node. A JetStream pull waiting
then (``fetch``) is renewed as soon as the connection is back: its pull request went with the
server, and would otherwise only have expired at the pull's timeout (seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from lambdad.store.base import StoreUnavailable

log = logging.getLogger(__name__)

#: Seconds to wait for the first connection; later ones are retried forever.
CONNECT_TIMEOUT = 10.0
#: Seconds between reconnection attempts while the servers are away.
RECONNECT_WAIT = 0.25
#: Seconds a ``close()`` waits for subscriptions to drain before it closes anyway.
DRAIN_TIMEOUT = 2.0


class NoResponders(StoreUnavailable):
    """A request to a subject nobody subscribes to (the node it named is gone)."""


class ReplyTimeout(StoreUnavailable):
    """A request no reply came back to within its timeout."""


class LinkState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Message:
    """A message received on a subscription: its subject, bytes and headers, and a way to
    answer it when it was a request."""

    __slots__ = ("_client", "_msg")

    def __init__(self, msg: Msg, client: Client) -> None:
        self._msg = msg
        self._client = client

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self._msg.headers or {}

    @property
    def is_no_responders(self) -> bool:
        """The server's answer to a message published with a reply subject that nobody
        serves (status 503, no data)."""
        return not self._msg.data and (self._msg.headers or {}).get("Status") == "503"

    @property
    def reply(self) -> str:
        """Where the answer goes ("" when nobody waits for one)."""
        return self._msg.reply

    async def respond(self, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer the request (a message with no reply subject is not answered)."""
        if not self._msg.reply:
            return
        try:
            await self._client.publish(
                self._msg.reply, data, headers=dict(headers) if headers else None
            )
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS refused a reply: {exc}") from exc


Handler = Callable[[Message], Awaitable[None]]


class NatsLink:
    """The node's NATS connection: ``await open()``, then request, publish and serve
    subjects; ``await close()`` drains and closes (idempotent)."""

    def __init__(self, url: str, name: str) -> None:
        self._servers = [part.strip() for part in url.split(",") if part.strip()]
        self._name = name
        self._client: Client | None = None
        self._subscriptions: list[Subscription] = []
        self.state = LinkState.NEW
        #: Set while connected (cleared while the servers are away, and once closed).
        self.connected = asyncio.Event()
        #: Set, and replaced by a new one, by ``renew_pulls``: the pulls waiting on it end.
        self._renewed = asyncio.Event()

    @property
    def client(self) -> Client:
        """The NATS client itself, for the store's own NATS modules (the JetStream queue)."""
        if self._client is None or self.state is not LinkState.OPEN:
            raise StoreUnavailable("the NATS link is not open")
        return self._client

    def describe(self) -> str:
        """The servers, for messages (no credentials)."""
        return ", ".join(_redacted(server) for server in self._servers)

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect (StoreUnavailable when no server answers within ``timeout`` seconds)."""
        if self.state is not LinkState.NEW:
            return

        async def disconnected() -> None:
            self.connected.clear()
            if self.state is LinkState.OPEN:
                log.warning("NATS connection lost (%s): reconnecting", self.describe())

        async def reconnected() -> None:
            self.connected.set()
            self.renew_pulls()
            log.info("NATS connection back (%s)", self.describe())

        async def errored(exc: Exception) -> None:
            if self.state is LinkState.OPEN:
                log.debug("NATS: %r", exc)

        try:
            connecting = nats.connect(
                servers=self._servers,
                name=self._name,
                connect_timeout=max(1, int(timeout)),
                reconnect_time_wait=RECONNECT_WAIT,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=errored,
            )
            # The client retries a first connection forever too: bounded here.
            self._client = await asyncio.wait_for(connecting, timeout)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            self.state = LinkState.CLOSED
            raise StoreUnavailable(f"NATS at {self.describe()} is unreachable: {exc}") from exc
        self.state = LinkState.OPEN
        self.connected.set()

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Send a request and wait for its reply (NoResponders, ReplyTimeout, or
        StoreUnavailable when the link is down)."""
        try:
            msg = await self.client.request(
                subject, data, timeout=timeout, headers=dict(headers) if headers else None
            )
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(f"nobody serves {subject}") from exc
        except nats.errors.TimeoutError as exc:
            raise ReplyTimeout(f"no reply on {subject} within {timeout:g} s") from exc
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS request on {subject} failed: {exc}") from exc
        return Message(msg, self.client)

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        reply: str = "",
    ) -> None:
        """Send ``data`` on ``subject``; ``reply``: where its answers go (a subject this node
        listens to; nobody serving ``subject`` then sends a no-responders status there, which
        ``is_no_responders`` tells)."""
        try:
            await self.client.publish(
                subject, data, reply=reply, headers=dict(headers) if headers else None
            )
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS publish on {subject} failed: {exc}") from exc

    def renew_pulls(self) -> None:
        """End every ``fetch`` waiting now, to pull again at once: its pull request went to a
        server, or a consumer, that is gone (the connection came back; the streams were made
        again), and would otherwise be waited out to its timeout."""
        renewed, self._renewed = self._renewed, asyncio.Event()
        renewed.set()

    async def fetch(
        self, pull: JetStreamContext.PullSubscription, batch: int, timeout: float
    ) -> list[Msg]:
        """``pull.fetch(batch, timeout=timeout)`` of a JetStream pull subscription, ended with
        ``nats.errors.TimeoutError`` (as when nothing came) by ``renew_pulls`` meanwhile."""
        renewed = asyncio.ensure_future(self._renewed.wait())
        fetching = asyncio.ensure_future(pull.fetch(batch, timeout=timeout))
        try:
            await asyncio.wait((fetching, renewed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            renewed.cancel()
            if not fetching.done():
                fetching.cancel()
                # A cancelled fetch raises the client's ConnectionClosedError once it is closed.
                with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                    await fetching
        if fetching.cancelled():
            raise nats.errors.TimeoutError
        return list(fetching.result())

    async def flush(self, timeout: int = 2) -> None:
        """Wait until the server has everything published so far."""
        try:
            await self.client.flush(timeout=timeout)
        except (TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(f"NATS flush failed: {exc}") from exc

    @property
    def max_payload(self) -> int:
        """The largest message the servers take, in bytes (their ``max_payload``)."""
        return self.client.max_payload

    def inbox(self) -> str:
        """A new subject for replies only this node listens to."""
        return self.client.new_inbox()

    async def serve(self, subject: str, handler: Handler, *, queue: str = "") -> Subscription:
        """Run ``handler`` for each message on ``subject`` (one of ``queue``'s members gets
        each message when a queue group is named). Each message runs in a task of its own, so
        a slow one does not hold back the next. Unsubscribed at ``close()``."""
        tasks: set[asyncio.Task[None]] = set()
        client = self.client

        async def received(msg: Msg) -> None:
            task = asyncio.create_task(_handled(handler, Message(msg, client)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:
            subscription = await self.client.subscribe(subject, queue=queue, cb=received)
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS refused a subscription to {subject}: {exc}") from exc
        self._subscriptions.append(subscription)
        return subscription

    async def stop_serving(self, subject: str) -> None:
        """Stop taking messages on ``subject`` (what ``serve`` or ``follow`` subscribed); the
        handlers under way finish."""
        for subscription in [s for s in self._subscriptions if s.subject == subject]:
            self._subscriptions.remove(subscription)
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def follow(self, subject: str, callback: Callable[[Message], None]) -> None:
        """Call ``callback`` for each message on ``subject``, one after another in the order
        they came (no task per message: ``callback`` must not block). Unsubscribed at
        ``close()``."""
        client = self.client

        async def received(msg: Msg) -> None:
            try:
                callback(Message(msg, client))
            except Exception:
                log.exception("handling a NATS message on %s failed", msg.subject)

        try:
            subscription = await client.subscribe(subject, cb=received)
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS refused a subscription to {subject}: {exc}") from exc
        self._subscriptions.append(subscription)

    async def listen(self, subject: str) -> Inbox:
        """Messages on ``subject`` in the order they came, for ``async for``: an invocation's
        streamed chunks. ``await inbox.close()`` when done."""
        try:
            subscription = await self.client.subscribe(subject)
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS refused a subscription to {subject}: {exc}") from exc
        return Inbox(subscription, self.client)

    async def close(self) -> None:
        """Unsubscribe, drain what is under way (bounded) and close. Idempotent."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        self.connected.clear()
        client, self._client = self._client, None
        if client is None:
            return
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self._subscriptions.clear()
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await asyncio.wait_for(client.drain(), DRAIN_TIMEOUT)
        # With the servers away, the client's close trips over its own closed transport
        # (RuntimeError from the event loop): the connection is gone either way.
        with contextlib.suppress(nats.errors.Error, RuntimeError, OSError):
            await client.close()


class Inbox:
    """A subscription read in order (``NatsLink.listen``)."""

    def __init__(self, subscription: Subscription, client: Client) -> None:
        self._subscription = subscription
        self._client = client

    async def next(self, timeout: float) -> Message:
        """The next message (ReplyTimeout after ``timeout`` seconds with none)."""
        try:
            msg = await self._subscription.next_msg(timeout=timeout)
        except nats.errors.TimeoutError as exc:
            raise ReplyTimeout(
                f"nothing on {self._subscription.subject} for {timeout:g} s"
            ) from exc
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"NATS subscription failed: {exc}") from exc
        return Message(msg, self._client)

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._subscription.unsubscribe()


async def _handled(handler: Handler, message: Message) -> None:
    try:
        await handler(message)
    except Exception:
        log.exception("handling a NATS message on %s failed", message.subject)


def _redacted(server: str) -> str:
    """``server`` without a user or password."""
    scheme, sep, rest = server.partition("://")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}" if sep else server
