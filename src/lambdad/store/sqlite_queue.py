"""The durable ``Queue``: accepted ``Event`` invocations in their own SQLite (WAL) database.

Every change (``put``, ``ack``, ``retry``) is a row operation handed to one writer task, which
applies whatever has piled up in one transaction and commits it with ``synchronous=FULL``
(group commit): a ``put`` returns only after the commit that holds it, so a 202 always means
the event is on disk, and one fsync is shared by every ``put`` that arrived meanwhile.

Which events are due, and which are owned by a running dispatcher worker, is kept in memory:
on ``open`` every row is loaded and due again, so events that were running when the previous
process died run again (at least once). Payloads stay in memory only up to
``payload_budget`` bytes in all (a backlog of large events would otherwise hold all of them);
the others are read back from the database when their event is taken. See docs/queue.md.

An event put with ``keep_id`` is not deleted when acknowledged: its row is marked done (its
payload dropped) and kept for ``KEEP_DONE_IDS`` seconds, so putting its id again is a
``StoreConflict`` even after it ran (a schedule's occurrence re-queued after a crash).

``sqlite3``'s errors and the file system's become ``StoreUnavailable`` here (a duplicate id
``StoreConflict``); nothing of the driver crosses the ``Queue`` seam.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import heapq
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdad.store.base import (
    KEEP_DONE_IDS,
    Queue,
    QueuedEvent,
    StoreConflict,
    StoreUnavailable,
)

SCHEMA_VERSION = 3

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        function_name TEXT NOT NULL,
        qualifier TEXT,
        payload BLOB NOT NULL,
        region TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        attempt INTEGER NOT NULL,
        not_before REAL NOT NULL,
        attributes TEXT NOT NULL,
        account_id TEXT NOT NULL DEFAULT '',
        keep INTEGER NOT NULL DEFAULT 0,
        done REAL
    );
"""
#: Version 1 queues (before accounts) get the column; their events keep "" (the default
#: account).
_ADD_ACCOUNT = "ALTER TABLE events ADD COLUMN account_id TEXT NOT NULL DEFAULT ''"
#: Version 2 queues get the idempotency columns: ``keep`` (the id outlives the ack) and
#: ``done`` (when a kept event was acknowledged; NULL while it is queued).
_ADD_KEEP = (
    "ALTER TABLE events ADD COLUMN keep INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE events ADD COLUMN done REAL",
)

_INSERT = (
    "INSERT INTO events (id, function_name, qualifier, payload, region, enqueued_at, attempt,"
    " not_before, attributes, account_id, keep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM events WHERE id = ?"
_MARK_DONE = "UPDATE events SET done = ?, payload = x'' WHERE id = ?"
_FORGET_DONE = "DELETE FROM events WHERE done IS NOT NULL AND done < ?"
_RETRY = "UPDATE events SET attempt = ?, not_before = ?, attributes = ? WHERE id = ?"
_LOAD = (
    "SELECT id, function_name, qualifier, NULL, region, enqueued_at, attempt, not_before,"
    " attributes, account_id, keep FROM events WHERE done IS NULL ORDER BY seq"
)
_PAYLOAD = "SELECT payload FROM events WHERE id = ?"
#: Payload bytes kept in memory for events not yet taken (the rest are read back at ``take``).
PAYLOAD_BUDGET = 64 << 20


class QueueState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


#: One row operation: SQL, its parameters, and what to do in memory once it is committed.
_Op = tuple[str, tuple[Any, ...], Callable[[], None], "asyncio.Future[None]"]


def _row(event: QueuedEvent) -> tuple[Any, ...]:
    return (
        event.id,
        event.function_name,
        event.qualifier,
        event.payload,
        event.region,
        event.enqueued_at,
        event.attempt,
        event.not_before,
        json.dumps(event.attributes),
        event.account_id,
        int(event.keep_id),
    )


def _event(row: tuple[Any, ...]) -> QueuedEvent:
    return QueuedEvent(
        id=row[0],
        function_name=row[1],
        qualifier=row[2],
        payload=bytes(row[3]) if row[3] is not None else b"",
        region=row[4],
        enqueued_at=row[5],
        attempt=row[6],
        not_before=row[7],
        attributes=json.loads(row[8]),
        account_id=row[9],
        keep_id=bool(row[10]),
    )


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "account_id" not in columns:
            db.execute(_ADD_ACCOUNT)
        if "keep" not in columns:
            for statement in _ADD_KEEP:
                db.execute(statement)
        db.execute(_FORGET_DONE, (time.time() - KEEP_DONE_IDS,))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _apply(db: sqlite3.Connection, ops: list[tuple[str, tuple[Any, ...]]]) -> list[bool]:
    """Run ``ops`` in one transaction; for each, whether it applied (False: a duplicate id)."""
    applied = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in ops:
            try:
                db.execute(sql, params)
                applied.append(True)
            except sqlite3.IntegrityError:
                applied.append(False)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return applied


class SqliteQueue(Queue):
    """Events in ``path`` (a SQLite database of their own), group-committed, due from memory."""

    def __init__(self, path: Path, payload_budget: int = PAYLOAD_BUDGET) -> None:
        self._path = path
        self._budget = payload_budget
        #: Payload bytes held by events in the heap; ids of events whose payload is on disk only.
        self._held = 0
        self._on_disk: set[str] = set()
        self._db: sqlite3.Connection | None = None
        #: Every database call runs on this one thread, in submission order.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="queue-db")
        self._ops: list[_Op] = []
        self._ops_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._heap: list[tuple[float, int, QueuedEvent]] = []
        self._seq = 0
        self._owned: dict[str, QueuedEvent] = {}
        self._due = asyncio.Event()
        self.state = QueueState.NEW

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"the event queue {self._path} failed: {exc}") from exc
        except RuntimeError as exc:  # the executor was shut down: the queue is closed
            raise StoreUnavailable(f"the event queue {self._path} is closed") from exc

    async def open(self) -> None:
        """Open (creating) the database; every stored event is due again, unowned."""
        if self.state is not QueueState.NEW:
            raise RuntimeError(f"queue is {self.state.value}")
        self._db = await self._call(_connect, self._path)
        rows = await self._call(lambda: self._connection().execute(_LOAD).fetchall())
        for row in rows:
            event = _event(row)
            self._on_disk.add(event.id)
            self._push(event)
        self._writer = asyncio.create_task(self._write_forever(), name="queue-writer")
        self.state = QueueState.OPEN

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(f"the event queue {self._path} is not open")
        return self._db

    async def close(self) -> None:
        """Commit what was handed in, stop the writer, close the database. Idempotent."""
        if self.state is QueueState.CLOSED:
            return
        self.state = QueueState.CLOSED
        if self._writer is not None:
            self._ops_ready.set()
            await self._writer
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)
        self._heap.clear()
        self._owned.clear()

    async def _write_forever(self) -> None:
        while True:
            await self._ops_ready.wait()
            # Let every put that is already runnable join this transaction.
            await asyncio.sleep(0)
            ops = self._take_ops()
            if ops:
                await self._commit(ops)
            if self.state is QueueState.CLOSED and not self._ops:
                return

    def _take_ops(self) -> list[_Op]:
        ops, self._ops = self._ops, []
        self._ops_ready.clear()
        return ops

    async def _commit(self, ops: list[_Op]) -> None:
        try:
            applied = await self._call(_apply, self._connection(), [(s, p) for s, p, _, _ in ops])
        except Exception as exc:  # every waiting caller learns it, and the writer goes on
            for *_, future in ops:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_sql, params, then, future), ok in zip(ops, applied, strict=True):
            if future.done():
                continue
            if ok:
                then()
                future.set_result(None)
            else:
                future.set_exception(StoreConflict(f"event {params[0]} exists"))

    async def _submit(self, sql: str, params: tuple[Any, ...], then: Callable[[], None]) -> None:
        if self.state is not QueueState.OPEN:
            raise StoreUnavailable(f"the event queue {self._path} is {self.state.value}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append((sql, params, then, future))
        self._ops_ready.set()
        await future

    def _push(self, event: QueuedEvent) -> None:
        if event.id not in self._on_disk:
            if self._held + len(event.payload) > self._budget:
                self._on_disk.add(event.id)
                event = dataclasses.replace(event, payload=b"")
            else:
                self._held += len(event.payload)
        self._seq += 1
        heapq.heappush(self._heap, (event.not_before, self._seq, event))
        self._due.set()

    async def _with_payload(self, event: QueuedEvent) -> QueuedEvent:
        """The event as taken: its payload read back if it was not kept in memory."""
        if event.id not in self._on_disk:
            self._held -= len(event.payload)
            return event
        self._on_disk.discard(event.id)
        row = await self._call(lambda: self._connection().execute(_PAYLOAD, (event.id,)).fetchone())
        return dataclasses.replace(event, payload=bytes(row[0]) if row else b"")

    async def put(self, event: QueuedEvent) -> None:
        """Returns once the event is committed to disk; ``StoreConflict`` if its id is queued."""
        await self._submit(_INSERT, _row(event), lambda: self._push(event))

    async def take(self) -> QueuedEvent:
        while True:
            self._due.clear()
            delay: float | None = None
            if self._heap:
                due, _, event = self._heap[0]
                delay = due - time.time()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    self._owned[event.id] = event
                    taken = await self._with_payload(event)
                    self._owned[event.id] = taken
                    return taken
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), delay)

    async def ack(self, event_id: str) -> None:
        """Delete the event (mark it done, if its id is kept); it will not run again."""

        def forget() -> None:
            self._owned.pop(event_id, None)

        owned = self._owned.get(event_id)
        if owned is not None and owned.keep_id:
            await self._submit(_MARK_DONE, (time.time(), event_id), forget)
        else:
            await self._submit(_DELETE, (event_id,), forget)

    async def retry(self, event: QueuedEvent, not_before: float) -> None:
        """Count an attempt and hand the event (with its attributes) out again no earlier than
        ``not_before``."""
        again = event.retried(not_before)

        def requeue() -> None:
            self._owned.pop(event.id, None)
            self._push(again)

        params = (again.attempt, not_before, json.dumps(again.attributes), event.id)
        await self._submit(_RETRY, params, requeue)

    def pending(self) -> int:
        """Committed events not yet acknowledged: queued, delayed or running."""
        return len(self._heap) + len(self._owned)
