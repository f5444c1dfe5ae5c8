"""Minutes of metrics in the metadata store, one document per account, region and minute
(and node, in a cluster).

``observe.metrics.Metrics`` keeps its minutes through this (its ``MetricsArchive``): rows are
written at each flush (the minutes that changed), read back at start, and deleted once past
retention.

On a store shared by several nodes (PostgreSQL), each node writes rows of its own, keyed
``(account, region, minute, node)``: a minute's row is the whole of what that node recorded in
it, so two nodes flushing the same minute never overwrite each other. ``MetricPeers`` follows
the other nodes' rows through the store's change feed and hands each to a ``PeerSink`` (the
node's ``Metrics``), which merges them into what it answers. Rows keyed ``(account, region,
minute)`` (a single node, or rows from before nodes) belong to no node: on a shared store
they are read as a peer's, never rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lambdad.store.base import Key, Store, StoreChange, Table, Write

log = logging.getLogger(__name__)

#: (account, region, minute, document).
Row = tuple[str, str, int, dict[str, Any]]
#: (node, account, region, minute, document); node "" for rows of no node.
PeerRow = tuple[str, str, str, int, dict[str, Any]]


def _minute_key(minute: int) -> str:
    return f"{minute:010d}"


class StoredMetrics:
    """This node's rows. ``node`` None (a store of its own): keys ``(account, region,
    minute)``, as before clusters; else ``(account, region, minute, node)``."""

    def __init__(self, store: Store, node: str | None = None) -> None:
        self._store = store
        self.node = node

    def _key(self, account: str, region: str, minute: int) -> Key:
        if self.node is None:
            return (account, region, _minute_key(minute))
        return (account, region, _minute_key(minute), self.node)

    async def load(self) -> list[Row]:
        rows = await self._store.scan(Table.METRICS)
        mine = 3 if self.node is None else 4
        return [
            (key[0], key[1], int(key[2]), doc)
            for key, doc in rows
            if len(key) == mine and key[2].isdigit() and (self.node is None or key[3] == self.node)
        ]

    async def peers(self) -> list[PeerRow]:
        """Every other node's rows (none on a store of its own)."""
        if self.node is None:
            return []
        return [
            row
            for key, doc in await self._store.scan(Table.METRICS)
            if (row := self.peer_row(key, doc)) is not None
        ]

    @staticmethod
    def peer_key(node: str, account: str, region: str, minute: int) -> Key:
        """The key of node ``node``'s row ("": a row of no node)."""
        if not node:
            return (account, region, _minute_key(minute))
        return (account, region, _minute_key(minute), node)

    def peer_row(self, key: Key, doc: dict[str, Any]) -> PeerRow | None:
        if len(key) not in (3, 4) or not key[2].isdigit():
            return None
        node = key[3] if len(key) == 4 else ""
        if node == self.node:
            return None
        return (node, key[0], key[1], int(key[2]), doc)

    async def save(self, rows: Sequence[Row]) -> None:
        if rows:
            await self._store.write(
                [Write(Table.METRICS, self._key(a, r, m), doc) for a, r, m, doc in rows]
            )

    async def drop(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._store.write(
                [Write(Table.METRICS, self._key(a, r, m), None) for a, r, m in keys]
            )


class PeerSink(Protocol):
    """What takes other nodes' rows (``observe.metrics.Metrics``)."""

    def set_peer(
        self, node: str, account: str, region: str, minute: int, doc: dict[str, Any] | None
    ) -> None: ...

    def reset_peers(self, rows: Sequence[PeerRow]) -> None: ...


class PeersState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class MetricPeers:
    """Other nodes' metric rows, read at start and again as the change feed names them, one
    change after another (a late read never overwrites a newer one)."""

    def __init__(
        self, rows: StoredMetrics, store: Store, sink: PeerSink, *, retention: float = 15 * 86400
    ) -> None:
        self._rows = rows
        self._retention = retention
        self._store = store
        self._sink = sink
        self._stale: asyncio.Queue[StoreChange] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.state = PeersState.NEW

    async def start(self) -> None:
        if self.state is not PeersState.NEW or self._rows.node is None:
            return
        self.state = PeersState.OPEN
        self._unsubscribe = self._store.subscribe(self.changed)
        rows = await self._rows.peers()
        self._sink.reset_peers(rows)
        # A node that never comes back never deletes its own rows: past retention, any
        # node may (the row is past it for every node).
        oldest = int(time.time() - self._retention) // 60
        expired = [(n, a, r, m) for n, a, r, m, _ in rows if m < oldest]
        if expired:
            await self._store.write(
                [Write(Table.METRICS, self._rows.peer_key(*row), None) for row in expired]
            )
        self._task = asyncio.create_task(self._follow(), name="metric-peers")

    def changed(self, change: StoreChange) -> None:
        if self.state is PeersState.OPEN and change.table in (None, Table.METRICS):
            self._stale.put_nowait(change)

    async def _follow(self) -> None:
        while True:
            change = await self._stale.get()
            try:
                await self._reread(change)
            except Exception:  # the next change, or a reconnect's StoreChange(None), repairs it
                log.exception("other nodes' metrics could not be read again (%s)", change)

    async def _reread(self, change: StoreChange) -> None:
        key = change.key
        if change.table is None or change.prefix or len(key) not in (3, 4):
            self._sink.reset_peers(await self._rows.peers())
            return
        doc = await self._store.get(Table.METRICS, key)
        row = self._rows.peer_row(key, doc or {})
        if row is not None:
            node, account, region, minute, _ = row
            self._sink.set_peer(node, account, region, minute, doc)

    async def close(self) -> None:
        if self.state is PeersState.CLOSED:
            return
        self.state = PeersState.CLOSED
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
