"""In-memory twins of the storage seams, for tests and for ``--data-dir :memory:``."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import heapq
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lambdad.store.base import (
    BlobNotFound,
    BlobStore,
    Document,
    Key,
    Queue,
    QueuedEvent,
    Store,
    StoreConflict,
    StoreUnavailable,
    Table,
    Write,
)
from lambdad.store.keys import under
from lambdad.store.zipcode import extract_atomically


class MemoryStore(Store):
    """Documents in dicts. Usable without ``open``; after ``close`` every call is refused with
    ``StoreUnavailable``, as a closed database refuses it."""

    def __init__(self) -> None:
        self._tables: dict[Table, dict[Key, str]] = {table: {} for table in Table}
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable("the in-memory store is closed")

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True

    async def get(self, table: Table, key: Key) -> Document | None:
        self._check()
        raw = self._tables[table].get(key)
        return None if raw is None else json.loads(raw)

    async def scan(self, table: Table, prefix: Key = ()) -> list[tuple[Key, Document]]:
        self._check()
        rows = self._tables[table]
        keys = sorted(k for k in rows if not prefix or under(k, prefix))
        return [(k, json.loads(rows[k])) for k in keys]

    async def write(self, writes: Sequence[Write]) -> None:
        self._check()
        for w in writes:
            if w.create and w.key in self._tables[w.table]:
                raise StoreConflict(f"{w.table}:{'/'.join(w.key)} exists")
            if w.expect is not None and not _holds(self._tables[w.table].get(w.key), w.expect):
                raise StoreConflict(f"{w.table}:{'/'.join(w.key)} changed")
        for w in writes:
            if w.doc is None:
                self._tables[w.table].pop(w.key, None)
            else:
                self._tables[w.table][w.key] = json.dumps(w.doc)

    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        self._check()
        doomed = [k for k in self._tables[table] if under(k, prefix)]
        for k in doomed:
            del self._tables[table][k]
        return len(doomed)


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._scratch = Path(tempfile.mkdtemp(prefix="lambdad-blobs-"))

    async def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        self._blobs[key] = data
        return key

    async def get(self, key: str) -> bytes:
        try:
            return self._blobs[key]
        except KeyError:
            raise BlobNotFound(key) from None

    async def exists(self, key: str) -> bool:
        return key in self._blobs

    async def unpacked(self, key: str) -> Path:
        data = await self.get(key)  # BlobNotFound first: a key is never a path of its own
        dest = self._scratch / key
        if not dest.exists():
            await asyncio.to_thread(extract_atomically, data, dest)
        return dest


class MemoryQueue(Queue):
    """Events in a heap ordered by due time; lost when the process ends."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, QueuedEvent]] = []
        self._seq = 0
        self._owned: dict[str, QueuedEvent] = {}
        #: Ids queued or running, and acknowledged ids of ``keep_id`` events.
        self._ids: set[str] = set()
        self._wakeup = asyncio.Event()
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable("the in-memory event queue is closed")

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        self._heap.clear()

    def _push(self, event: QueuedEvent) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (event.not_before, self._seq, event))
        self._wakeup.set()

    async def put(self, event: QueuedEvent) -> None:
        self._check()
        if event.id in self._ids:
            raise StoreConflict(f"event {event.id} exists")
        self._ids.add(event.id)
        self._push(copy.copy(event))

    async def take(self) -> QueuedEvent:
        while True:
            self._wakeup.clear()
            if self._heap:
                due, _, event = self._heap[0]
                delay = due - time.time()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    self._owned[event.id] = event
                    return event
            else:
                delay = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def ack(self, event_id: str) -> None:
        self._check()
        event = self._owned.pop(event_id, None)
        if event is None or not event.keep_id:
            self._ids.discard(event_id)

    async def retry(self, event: QueuedEvent, not_before: float) -> None:
        self._check()
        self._owned.pop(event.id, None)
        self._push(event.retried(not_before))

    def pending(self) -> int:
        return len(self._heap) + len(self._owned)


def _holds(stored: str | None, expect: tuple[str, object]) -> bool:
    """Whether the stored document (its JSON) exists and its field equals the expected value."""
    if stored is None:
        return False
    field, value = expect
    return bool(json.loads(stored).get(field) == value)
