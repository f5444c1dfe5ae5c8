"""The PostgreSQL store's change feed: LISTEN/NOTIFY on one channel.

Every write transaction of a ``PostgresStore`` sends one notification on ``CHANNEL`` as part of
the transaction (PostgreSQL delivers it at commit, never for a rollback): ``{"o": origin,
"c": [[table, [key...], prefix], ...]}``. Each store keeps one connection that LISTENs, and
hands what other origins changed to its subscribers as ``StoreChange`` values. A payload larger
than PostgreSQL's limit (8000 bytes) names whole tables instead of keys.

When the listening connection breaks (PostgreSQL restarted, the network dropped), changes may
be missed until it is back: after reconnecting, the feed hands every subscriber
``StoreChange(None)`` ("anything may have changed").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from lambdad.store.base import StoreChange, StoreChangeListener, StoreUnavailable, Table, Write

log = logging.getLogger(__name__)

CHANNEL = "lambdad_changes"
#: PostgreSQL's limit is 8000 bytes; some room for the origin and framing.
MAX_PAYLOAD = 7900
#: TCP keepalives of the listening connection (seconds idle, then between 3 probes): it only
#: ever reads, so a peer gone without a word (a host down, a partition) is noticed within
#: about 20 s, not hours.
KEEPALIVE_IDLE = 5
#: Reconnection backoff of the listening connection: first delay, and the longest.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0


def payload(origin: str, changes: Sequence[tuple[str, list[str], bool]]) -> str:
    """The notification text of one transaction's ``changes`` (table, key, prefix)."""
    text = json.dumps({"o": origin, "c": changes}, separators=(",", ":"))
    if len(text.encode()) <= MAX_PAYLOAD:
        return text
    tables = sorted({table for table, _, _ in changes})
    return json.dumps({"o": origin, "c": [[t, [], True] for t in tables]}, separators=(",", ":"))


def changes_of(writes: Sequence[Write]) -> list[tuple[str, list[str], bool]]:
    """What a transaction of ``writes`` changed, each key once."""
    seen: dict[tuple[str, tuple[str, ...]], None] = {}
    for w in writes:
        seen[(w.table.value, w.key)] = None
    return [(table, list(key), False) for table, key in seen]


def decode(text: str) -> tuple[str, list[StoreChange]]:
    """``(origin, changes)`` of a notification; ValueError if it is not one of ours."""
    body = json.loads(text)
    found = []
    for table, key, prefix in body["c"]:
        found.append(StoreChange(Table(table), tuple(str(part) for part in key), bool(prefix)))
    return str(body["o"]), found


class FeedState(enum.Enum):
    NEW = "new"
    LISTENING = "listening"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class ChangeFeed:
    """One LISTEN connection and the subscribers it hands other origins' changes to."""

    def __init__(self, url: str, origin: str, describe: str) -> None:
        self._url = url
        self._origin = origin
        self._describe = describe
        self._listeners: list[StoreChangeListener] = []
        self._task: asyncio.Task[None] | None = None
        self.state = FeedState.NEW

    def subscribe(self, listener: StoreChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def start(self) -> None:
        """LISTEN; ``StoreUnavailable`` if the first connection cannot be made."""
        if self.state is not FeedState.NEW:
            raise StoreUnavailable(f"the change feed of {self._describe} is {self.state.value}")
        try:
            conn = await self._listen()
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"the change feed of {self._describe} cannot listen: {exc}"
            ) from exc
        self.state = FeedState.LISTENING
        self._task = asyncio.create_task(self._run(conn), name="store change feed")

    async def _listen(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_IDLE,
            keepalives_count=3,
        )
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            try:
                async with conn:
                    async for notify in conn.notifies():
                        self._dispatch(notify.payload)
            except psycopg.Error as exc:
                log.warning("the change feed of %s lost its connection: %s", self._describe, exc)
            conn = await self._reconnect()
            self._deliver(StoreChange(None))

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        self.state = FeedState.RECONNECTING
        delay = RETRY_FIRST
        while True:
            try:
                conn = await self._listen()
            except psycopg.Error:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.state = FeedState.LISTENING
            log.info("the change feed of %s listens again", self._describe)
            return conn

    def _dispatch(self, text: str) -> None:
        try:
            origin, changes = decode(text)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed change notification: %.200s", text)
            return
        if origin == self._origin:
            return
        for change in changes:
            self._deliver(change)

    def _deliver(self, change: StoreChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("a change feed subscriber failed on %s", change)

    async def close(self) -> None:
        """Stop listening. Idempotent."""
        self.state = FeedState.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listeners.clear()
