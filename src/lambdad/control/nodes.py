"""The node registry: every lambdad on a shared store writes a record of itself (role,
address, version, capacity) to ``Table.NODES`` when it starts, refreshes it with a heartbeat
every third of the lease, and deletes it when it stops cleanly. A record whose heartbeat is
older than the lease is a node gone (killed, frozen, cut off): it stays listed as gone until
the node rejoins under its id, kept in its data dir (docs/cluster.md)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdad.store.base import Document, Store, StoreError, Table

log = logging.getLogger(__name__)

#: The file in the data dir holding the node's id, so a restarted node rejoins as itself.
NODE_ID_FILE = "node-id"


def node_id(data_dir: Path) -> str:
    """This node's id: read from ``data_dir``, or made and kept there on the first start."""
    path = data_dir / NODE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if kept:
            return kept
    made = uuid.uuid4().hex[:16]
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(made + "\n")
    partial.replace(path)
    return made


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node says of itself when it registers."""

    id: str
    role: str
    version: str
    cpus: int
    memory_mb: int
    runtimes: tuple[str, ...]


class RegistryState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class NodeRegistry:
    """This node's record in the shared store, kept fresh, and the list of every node's.

    ``shared`` False (an embedded store: no other node can read it): nothing is written, and
    the list is this node alone."""

    def __init__(
        self,
        store: Store,
        describe: Callable[[], NodeInfo],
        *,
        lease: float,
        shared: bool,
        address: Callable[[], str],
        load: Callable[[], dict[str, int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._describe = describe
        self.info: NodeInfo | None = None
        self.lease = lease
        self.shared = shared
        self._address = address
        self._load = load
        self._clock = clock
        self._started = 0.0
        self._beats: asyncio.Task[None] | None = None
        self.state = RegistryState.NEW

    def _record(self) -> Document:
        info = self.info
        assert info is not None  # set by start()
        return {
            "Id": info.id,
            "Role": info.role,
            "Address": self._address(),
            "Version": info.version,
            "Started": self._started,
            "Heartbeat": self._clock(),
            "Capacity": {
                "Cpus": info.cpus,
                "MemoryMB": info.memory_mb,
                "Runtimes": list(info.runtimes),
            },
            "Load": self._load(),
        }

    async def describe(self) -> None:
        """Learn what this node is (in a thread: its id is read from or written to the data
        dir, and finding runtimes runs programs); before listening, so the id is known once
        the node answers. Once."""
        if self.info is None:
            self._started = self._clock()
            self.info = await asyncio.to_thread(self._describe)

    async def start(self) -> None:
        """Register this node (a failing store stops the start) and begin the heartbeat."""
        if self.state is not RegistryState.NEW:
            return
        await self.describe()
        self.state = RegistryState.RUNNING
        if not self.shared:
            return
        await self._write()
        self._beats = asyncio.create_task(self._beat(), name="node heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._write()
            except StoreError as exc:  # the store is back soon, or the lease runs out
                log.warning("node heartbeat not written: %s", exc)

    async def _write(self) -> None:
        record = self._record()
        await self.store.put(Table.NODES, (record["Id"],), record)

    async def close(self) -> None:
        """Stop the heartbeat and deregister (a store that cannot be reached leaves the
        record to expire with its lease). Idempotent."""
        if self.state is RegistryState.CLOSED:
            return
        was_running = self.state is RegistryState.RUNNING
        self.state = RegistryState.CLOSED
        if self._beats is not None:
            self._beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beats
            self._beats = None
        if was_running and self.shared and self.info is not None:
            try:
                await self.store.delete(Table.NODES, (self.info.id,))
            except StoreError as exc:
                log.warning("node record not removed (it expires with its lease): %s", exc)

    async def nodes(self) -> list[dict[str, Any]]:
        """Every registered node (this one first), each with ``Health``: ``up`` within the
        lease of its last heartbeat, else ``gone``; and ``HeartbeatAge`` in seconds."""
        now = self._clock()
        if self.shared:
            rows = [doc for _, doc in await self.store.scan(Table.NODES)]
        else:
            # Known from ``describe``, before listening: a request never finds the list empty.
            known = self.info is not None and self.state is not RegistryState.CLOSED
            rows = [self._record()] if known else []
        me = self.info.id if self.info is not None else ""
        listed = []
        for doc in rows:
            age = max(0.0, now - float(doc.get("Heartbeat", 0.0)))
            listed.append(
                {
                    **doc,
                    "Health": "up" if age <= self.lease else "gone",
                    "HeartbeatAge": round(age, 3),
                    "Self": doc.get("Id") == me,
                }
            )
        listed.sort(key=lambda n: (not n["Self"], n["Role"], n["Id"]))
        return listed
