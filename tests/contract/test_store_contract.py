"""The contract every implementation of the storage seams passes (ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import time
import zipfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lambdad.store.base import (
    BlobNotFound,
    BlobStore,
    Queue,
    QueuedEvent,
    Store,
    StoreChange,
    StoreConflict,
    StoreError,
    StoreUnavailable,
    Table,
    Write,
)
from lambdad.store.files import FileBlobStore
from lambdad.store.memory import MemoryBlobStore, MemoryQueue, MemoryStore
from lambdad.store.sqlite import SqliteStore
from lambdad.store.sqlite_queue import SqliteQueue

T = TypeVar("T")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores of one implementation, all on the same (new, empty) data."""
    if request.param == "memory":
        return MemoryStore
    if request.param == "postgres":
        from lambdad.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres").database()
        return lambda: PostgresStore(url)
    return lambda: SqliteStore(tmp_path / "meta.db")


@pytest.fixture(params=["memory", "files", "postgres"])
def make_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BlobStore]:
    """Blob stores of one implementation (open them before use): PostgreSQL's on a new, empty
    database, each with a cache directory of its own, as each node has."""
    if request.param == "memory":
        return MemoryBlobStore
    if request.param == "postgres":
        from lambdad.store.postgres_blobs import PostgresBlobStore

        url = request.getfixturevalue("postgres").database()
        caches = iter(range(1000))
        return lambda: PostgresBlobStore(url, tmp_path / f"code{next(caches)}")
    return lambda: FileBlobStore(tmp_path / "code")


def test_documents_round_trip_and_scan_by_prefix(make_store: Callable[[], Store]) -> None:
    """Documents come back as written; a scan returns exactly the keys under its prefix, ordered."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await store.put(Table.VERSIONS, ("r", "fn", "$LATEST"), {"a": 1})
        await store.put(Table.VERSIONS, ("r", "fn", "1"), {"a": 2})
        await store.put(Table.VERSIONS, ("r", "fn2", "1"), {"a": 3})
        await store.put(Table.VERSIONS, ("r", "f"), {"a": 4})
        assert await store.get(Table.VERSIONS, ("r", "fn", "1")) == {"a": 2}
        assert await store.get(Table.VERSIONS, ("r", "fn", "9")) is None
        keys = [k for k, _ in await store.scan(Table.VERSIONS, ("r", "fn"))]
        assert keys == [("r", "fn", "$LATEST"), ("r", "fn", "1")]
        assert len(await store.scan(Table.VERSIONS)) == 4
        assert await store.get(Table.ALIASES, ("r", "fn", "1")) is None
        await store.close()

    run(scenario)


def test_a_page_of_a_scan_and_many_gets(make_store: Callable[[], Store]) -> None:
    """``scan_page`` is the slice of ``scan`` from an offset (past the end: nothing);
    ``get_many`` answers each key in order, None where nothing is stored."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        for name in ("d", "a", "c", "b", "e"):
            await store.put(Table.FUNCTIONS, ("acct", "r", name), {"n": name})
        await store.put(Table.FUNCTIONS, ("acct", "s", "z"), {"n": "z"})
        prefix = ("acct", "r")
        everything = await store.scan(Table.FUNCTIONS, prefix)
        cases = ((0, 2), (2, 2), (4, 2), (5, 2), (9, 1), (0, 0), (1, 100), (10**30, 10**30))
        for offset, limit in cases:
            page = await store.scan_page(Table.FUNCTIONS, prefix, offset, limit)
            assert page == everything[offset : offset + limit], (offset, limit)
        assert [k[-1] for k, _ in await store.scan_page(Table.FUNCTIONS, (), 5, 9)] == ["z"]
        keys = [("acct", "r", "c"), ("acct", "r", "nope"), ("acct", "r", "a"), ("acct", "s", "z")]
        found = await store.get_many(Table.FUNCTIONS, keys)
        assert found == [{"n": "c"}, None, {"n": "a"}, {"n": "z"}]
        many = [("acct", "r", f"x{i}") for i in range(1200)]
        assert await store.get_many(Table.FUNCTIONS, many) == [None] * 1200
        await store.close()

    run(scenario)


def test_create_conflicts_and_transactions_are_atomic(make_store: Callable[[], Store]) -> None:
    """A create of an existing key raises StoreConflict and applies none of its transaction."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await store.put(Table.FUNCTIONS, ("r", "fn"), {"v": 1}, create=True)
        with pytest.raises(StoreConflict):
            await store.write(
                [
                    Write(Table.VERSIONS, ("r", "fn", "$LATEST"), {"v": 2}),
                    Write(Table.FUNCTIONS, ("r", "fn"), {"v": 3}, create=True),
                ]
            )
        assert await store.get(Table.VERSIONS, ("r", "fn", "$LATEST")) is None
        assert await store.get(Table.FUNCTIONS, ("r", "fn")) == {"v": 1}
        await store.close()

    run(scenario)


def test_an_expected_field_makes_a_write_conditional(make_store: Callable[[], Store]) -> None:
    """A write whose ``expect`` holds (the stored document's field equals the value, an absent
    field equalling None) applies with its transaction; one whose ``expect`` fails (the field
    changed, the document is gone) raises StoreConflict and applies none of its transaction."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        # Another process's store on the same data (the in-memory store has no other).
        other = store if isinstance(store, MemoryStore) else make_store()
        if other is not store:
            await other.open()
        key, row = ("a", "r", "fn", "x"), ("a", "r", "fn", "x", "000000001")
        await store.put(Table.DURABLE_EXECUTIONS, key, {"status": "RUNNING"})
        await store.write(
            [
                Write(Table.DURABLE_EXECUTIONS, key, {"rev": 1}, expect=("rev", None)),
                Write(Table.DURABLE_OPERATIONS, row, {"n": 1}),
            ]
        )
        await other.write([Write(Table.DURABLE_EXECUTIONS, key, {"rev": 2}, expect=("rev", 1))])
        for stale in (1, None, "2"):
            with pytest.raises(StoreConflict):
                await store.write(
                    [
                        Write(Table.DURABLE_OPERATIONS, row, {"n": 2}),
                        Write(Table.DURABLE_EXECUTIONS, key, {"rev": 9}, expect=("rev", stale)),
                    ]
                )
        with pytest.raises(StoreConflict):
            await store.write([Write(Table.DURABLE_EXECUTIONS, key, None, expect=("rev", 1))])
        assert await store.get(Table.DURABLE_EXECUTIONS, key) == {"rev": 2}
        assert await store.get(Table.DURABLE_OPERATIONS, row) == {"n": 1}
        with pytest.raises(StoreConflict):
            await store.write(
                [Write(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "y"), {}, expect=("rev", None))]
            )
        assert await store.get(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "y")) is None
        await store.write([Write(Table.DURABLE_EXECUTIONS, key, None, expect=("rev", 2))])
        assert await other.get(Table.DURABLE_EXECUTIONS, key) is None
        await other.close()
        await store.close()

    run(scenario)


def test_concurrent_conditional_writes_of_one_revision_admit_exactly_one(
    make_store: Callable[[], Store],
) -> None:
    """Writers that all expect the revision they read, at once through stores of their own:
    exactly one is applied, every other raises StoreConflict (a compare-and-set)."""

    async def scenario() -> None:
        first = make_store()
        # Stores of their own on the same data (the in-memory store has no other).
        if isinstance(first, MemoryStore):
            stores = [first] * 4
        else:
            stores = [first, *(make_store() for _ in range(3))]
        for store in set(stores):
            await store.open()
        key = ("a", "r", "fn", "x")
        await stores[0].put(Table.DURABLE_EXECUTIONS, key, {"rev": 0})

        async def bump(store: Store, n: int) -> bool:
            try:
                await store.write(
                    [Write(Table.DURABLE_EXECUTIONS, key, {"rev": 1, "by": n}, expect=("rev", 0))]
                )
            except StoreConflict:
                return False
            return True

        won = await asyncio.gather(*(bump(store, n) for n, store in enumerate(stores)))
        assert sum(won) == 1
        doc = await stores[0].get(Table.DURABLE_EXECUTIONS, key)
        assert doc == {"rev": 1, "by": won.index(True)}
        for store in set(stores):
            await store.close()

    run(scenario)


def test_a_transaction_of_puts_applies_in_order_across_tables(
    make_store: Callable[[], Store],
) -> None:
    """A transaction of plain puts (many rows, several tables, a key put twice) applies
    every one, the later put of a key winning; more rows than one statement holds too."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await store.put(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "x"), {"seq": 0})
        writes = [Write(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "x"), {"seq": 1})]
        writes += [
            Write(Table.DURABLE_OPERATIONS, ("a", "r", "fn", "x", f"{n:09d}"), {"n": n})
            for n in range(1500)
        ]
        writes.append(Write(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "x"), {"seq": 2}))
        await store.write(writes)
        assert await store.get(Table.DURABLE_EXECUTIONS, ("a", "r", "fn", "x")) == {"seq": 2}
        rows = await store.scan(Table.DURABLE_OPERATIONS, ("a", "r", "fn", "x"))
        assert [doc["n"] for _, doc in rows] == list(range(1500))
        await store.close()

    run(scenario)


def test_delete_and_delete_prefix(make_store: Callable[[], Store]) -> None:
    """delete removes one key; delete_prefix removes those under a prefix and counts them."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        for version in ("1", "2", "3"):
            await store.put(Table.VERSIONS, ("r", "fn", version), {})
        await store.put(Table.VERSIONS, ("r", "fnx", "1"), {})
        await store.delete(Table.VERSIONS, ("r", "fn", "2"))
        assert await store.get(Table.VERSIONS, ("r", "fn", "2")) is None
        assert await store.delete_prefix(Table.VERSIONS, ("r", "fn")) == 2
        assert [k for k, _ in await store.scan(Table.VERSIONS)] == [("r", "fnx", "1")]
        await store.close()

    run(scenario)


def test_durable_stores_survive_reopen(make_store: Callable[[], Store]) -> None:
    """What the SQLite or PostgreSQL store acknowledged is there after it is closed and opened
    again (the in-memory store keeps nothing past its process, by design)."""
    if isinstance(make_store(), MemoryStore):
        pytest.skip("the in-memory store is not durable")

    async def scenario() -> None:
        first = make_store()
        await first.open()
        await first.put(Table.ALIASES, ("r", "fn", "live"), {"to": "3"})
        await first.close()
        second = make_store()
        await second.open()
        assert await second.get(Table.ALIASES, ("r", "fn", "live")) == {"to": "3"}
        await second.close()

    run(scenario)


def test_scans_order_keys_by_code_point(make_store: Callable[[], Store]) -> None:
    """Keys sort by code point in every store (not by a locale's collation): upper case before
    lower, punctuation by its code, non-ASCII last; a prefix never matches a longer name."""
    names = ["a", "B", "a-b", "a_b", "Z", "\u00e9t\u00e9", "a.b", "A", "ab", "a b", "\u65e5"]

    async def scenario() -> None:
        store = make_store()
        await store.open()
        for name in names:
            await store.put(Table.FUNCTIONS, ("acct", "r", name), {"n": name})
        await store.put(Table.FUNCTIONS, ("acct", "r2", "a"), {})
        keys = [k[2] for k, _ in await store.scan(Table.FUNCTIONS, ("acct", "r"))]
        assert keys == sorted(names)
        assert [k for k, _ in await store.scan(Table.FUNCTIONS, ("acct", "r", "a"))] == []
        await store.close()

    run(scenario)


def test_documents_keep_every_json_value(make_store: Callable[[], Store]) -> None:
    """A document comes back equal to what was written: nesting, unicode (NUL and emoji
    included), big and negative numbers, floats, booleans and nulls."""
    doc = {
        "text": 'nul\u0000 tab\t quote" \u00e9 \U0001f600',
        "n": [0, -1, 2**53, 1.5, -2.25e-10],
        "flags": {"t": True, "f": False, "none": None},
        "empty": {"list": [], "map": {}, "s": ""},
    }

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await store.put(Table.VERSIONS, ("acct", "r", "fn", "1"), doc)
        assert await store.get(Table.VERSIONS, ("acct", "r", "fn", "1")) == doc
        await store.close()

    run(scenario)


def test_concurrent_creates_of_one_key_admit_exactly_one(make_store: Callable[[], Store]) -> None:
    """Of many creates of the same key at once, exactly one succeeds; the rest conflict."""

    async def scenario() -> None:
        store = make_store()
        await store.open()

        async def create(i: int) -> bool:
            try:
                await store.put(Table.FUNCTIONS, ("acct", "r", "fn"), {"i": i}, create=True)
            except StoreConflict:
                return False
            return True

        won = await asyncio.gather(*(create(i) for i in range(20)))
        assert won.count(True) == 1
        stored = await store.get(Table.FUNCTIONS, ("acct", "r", "fn"))
        assert stored == {"i": won.index(True)}
        await store.close()

    run(scenario)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "x = 1\n")
        archive.writestr("pkg/mod.py", "y = 2\n")
    return buf.getvalue()


def test_blobs_are_content_addressed_and_unpack_once(make_blobs: Callable[[], BlobStore]) -> None:
    """A blob's key is its SHA-256; unpacking gives the zip's files, the same directory twice."""

    async def scenario() -> None:
        blobs = make_blobs()
        await blobs.open()
        data = _zip()
        key = await blobs.put(data)
        assert key == hashlib.sha256(data).hexdigest()
        assert await blobs.put(data) == key
        assert await blobs.get(key) == data
        assert await blobs.exists(key)
        assert not await blobs.exists("0" * 64)
        first, second = await asyncio.gather(blobs.unpacked(key), blobs.unpacked(key))
        assert first == second
        assert (first / "pkg" / "mod.py").read_text() == "y = 2\n"
        with pytest.raises(BlobNotFound):
            await blobs.get("f" * 64)
        await blobs.close()
        await blobs.close()

    run(scenario)


@pytest.fixture(params=["memory", "sqlite", "nats"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Queue]:
    """Queues of one implementation, all on the same (new, empty) data: JetStream's on a
    server shared by the module, its streams deleted first."""
    if request.param == "memory":
        return MemoryQueue
    if request.param == "nats":
        from tests.contract.nats_queues import fresh_queues

        return fresh_queues(request.getfixturevalue("nats_server"))
    return lambda: SqliteQueue(tmp_path / "queue.db")


def _event(event_id: str, not_before: float = 0.0) -> QueuedEvent:
    return QueuedEvent(
        id=event_id,
        function_name="fn",
        qualifier=None,
        payload=b"{}",
        region="us-east-1",
        enqueued_at=time.time(),
        not_before=not_before,
    )


def test_queue_hands_out_due_events_in_order(make_queue: Callable[[], Queue]) -> None:
    """take() returns due events first-in first-out and waits for delayed ones."""

    async def scenario() -> None:
        queue = make_queue()
        await queue.open()
        await queue.put(_event("a"))
        await queue.put(_event("b"))
        await queue.put(_event("later", time.time() + 0.2))
        assert (await queue.take()).id == "a"
        assert (await queue.take()).id == "b"
        began = time.monotonic()
        assert (await asyncio.wait_for(queue.take(), 5)).id == "later"
        assert time.monotonic() - began >= 0.1
        assert queue.pending() == 3
        for event_id in ("a", "b", "later"):
            await queue.ack(event_id)
        assert queue.pending() == 0
        await queue.close()

    run(scenario)


def test_queue_retry_counts_attempts(make_queue: Callable[[], Queue]) -> None:
    """retry() puts an event back with its attempt counted, due no earlier than asked."""

    async def scenario() -> None:
        queue = make_queue()
        await queue.open()
        await queue.put(_event("x"))
        taken = await queue.take()
        await queue.retry(taken, time.time())
        again = await asyncio.wait_for(queue.take(), 5)
        assert again.id == "x"
        assert again.attempt == 1
        await queue.close()

    run(scenario)


def test_queue_concurrent_puts_are_all_taken_once(make_queue: Callable[[], Queue]) -> None:
    """Hundreds of puts at once all return, and each event is handed out exactly once."""

    async def scenario() -> None:
        queue = make_queue()
        await queue.open()
        await asyncio.gather(*(queue.put(_event(f"e{i}")) for i in range(300)))
        assert queue.pending() == 300
        taken = [await asyncio.wait_for(queue.take(), 5) for _ in range(300)]
        assert sorted(e.id for e in taken) == sorted(f"e{i}" for i in range(300))
        await asyncio.gather(*(queue.ack(e.id) for e in taken))
        assert queue.pending() == 0
        await queue.close()

    run(scenario)


def test_sqlite_queue_reopen_returns_unacked_events(tmp_path: Path) -> None:
    """After a reopen, every event not acked is due again, taken or not, retries counted."""

    async def scenario() -> None:
        first = SqliteQueue(tmp_path / "q.db")
        await first.open()
        for event_id in ("done", "running", "retried", "waiting"):
            await first.put(_event(event_id))
        assert (await first.take()).id == "done"
        await first.ack("done")
        assert (await first.take()).id == "running"
        retried = await first.take()
        await first.retry(dataclasses.replace(retried, attributes={"k": "v"}), time.time())
        await first.close()
        second = SqliteQueue(tmp_path / "q.db")
        await second.open()
        assert second.pending() == 3
        again = {e.id: e for e in [await asyncio.wait_for(second.take(), 5) for _ in range(3)]}
        assert sorted(again) == ["retried", "running", "waiting"]
        assert (again["retried"].attempt, again["retried"].attributes) == (1, {"k": "v"})
        assert again["waiting"].payload == b"{}"
        await second.close()

    run(scenario)


def test_sqlite_queue_reads_back_payloads_beyond_its_memory_budget(tmp_path: Path) -> None:
    """With room in memory for one payload only, every event still comes back whole."""

    async def scenario() -> None:
        queue = SqliteQueue(tmp_path / "q.db", payload_budget=10)
        await queue.open()
        payloads = {f"e{i}": f'{{"n": {i}}}'.encode() for i in range(4)}
        for event_id, payload in payloads.items():
            await queue.put(dataclasses.replace(_event(event_id), payload=payload))
        taken = [await asyncio.wait_for(queue.take(), 5) for _ in payloads]
        assert {e.id: e.payload for e in taken} == payloads
        await queue.retry(taken[-1], time.time())
        again = await asyncio.wait_for(queue.take(), 5)
        assert (again.id, again.payload, again.attempt) == (taken[-1].id, taken[-1].payload, 1)
        await queue.close()

    run(scenario)


def test_concurrent_transactions_do_not_interleave(make_store: Callable[[], Store]) -> None:
    """Many transactions at once all apply, none fails for another's open transaction."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await asyncio.gather(
            *(
                store.write(
                    [
                        Write(Table.VERSIONS, ("r", f"fn{i}", "$LATEST"), {"i": i}),
                        Write(Table.FUNCTIONS, ("r", f"fn{i}"), {"i": i}),
                    ]
                )
                for i in range(50)
            ),
            *(store.delete_prefix(Table.ALIASES, ("r", f"fn{i}")) for i in range(50)),
        )
        assert len(await store.scan(Table.FUNCTIONS)) == 50
        await store.close()

    run(scenario)


def test_a_store_never_tells_its_subscribers_of_its_own_writes(
    make_store: Callable[[], Store],
) -> None:
    """Subscribers hear other processes' changes only: writes, transactions and deletes made
    through the store itself (the only ones a SQLite or in-memory store ever has) are not
    delivered to it, while a later write through another store on the same data is (where
    changes are shared at all); unsubscribing is accepted, twice too."""
    shares_changes = not isinstance(make_store(), MemoryStore | SqliteStore)

    async def scenario() -> None:
        store, other = make_store(), make_store()
        heard: list[StoreChange] = []
        arrived = asyncio.Event()

        def listen(change: StoreChange) -> None:
            heard.append(change)
            arrived.set()

        unsubscribe = store.subscribe(listen)
        await store.open()
        await other.open()
        await store.put(Table.FUNCTIONS, ("a", "r", "fn"), {})
        await store.write([Write(Table.VERSIONS, ("a", "r", "fn", "1"), {})])
        await store.delete_prefix(Table.VERSIONS, ("a", "r", "fn"))
        await other.put(Table.FUNCTIONS, ("a", "r", "marker"), {})
        if shares_changes:  # changes arrive in commit order: the store's own would be first
            await asyncio.wait_for(arrived.wait(), 10)
            assert heard == [StoreChange(Table.FUNCTIONS, ("a", "r", "marker"))]
        else:
            assert heard == []
        unsubscribe()
        unsubscribe()
        await store.close()
        await other.close()

    run(scenario)


# ---- failures: the stores' own errors, never a driver's ----------------------------------


def _no_driver_type(exc: BaseException) -> None:
    """The error is one of the store's own (its cause may be the driver's)."""
    assert isinstance(exc, StoreError)
    assert type(exc).__module__ == "lambdad.store.base"


def test_a_closed_store_refuses_every_call(make_store: Callable[[], Store]) -> None:
    """After close, reads, scans, writes and deletes raise StoreUnavailable."""

    async def scenario() -> None:
        store = make_store()
        await store.open()
        await store.put(Table.FUNCTIONS, ("r", "fn"), {"v": 1})
        await store.close()
        calls = [
            store.get(Table.FUNCTIONS, ("r", "fn")),
            store.scan(Table.FUNCTIONS),
            store.scan_page(Table.FUNCTIONS, ("r",), 0, 10),
            store.get_many(Table.FUNCTIONS, [("r", "fn")]),
            store.put(Table.FUNCTIONS, ("r", "fn"), {"v": 2}),
            store.delete_prefix(Table.FUNCTIONS, ("r",)),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                await call
            _no_driver_type(raised.value)

    run(scenario)


@pytest.mark.parametrize("damage", ["parent-is-a-file", "garbage"])
def test_a_sqlite_store_that_cannot_open_says_so(tmp_path: Path, damage: str) -> None:
    """A database whose directory cannot be made, or a file that is not a database, makes
    open() raise StoreUnavailable naming the file, not an OSError or sqlite3's error."""
    if damage == "parent-is-a-file":
        (tmp_path / "data").write_text("a file where the data directory should be")
        path = tmp_path / "data" / "meta.db"
    else:
        path = tmp_path / "meta.db"
        path.write_bytes(b"not a database at all" * 100)

    async def scenario() -> None:
        store = SqliteStore(path)
        with pytest.raises(StoreUnavailable, match=r"meta\.db") as raised:
            await store.open()
        _no_driver_type(raised.value)
        await store.close()

    run(scenario)


def test_missing_blobs_raise_blob_not_found(make_blobs: Callable[[], BlobStore]) -> None:
    """get and unpacked of a key never stored, or of something that is not a key, raise
    BlobNotFound; exists says False."""

    async def scenario() -> None:
        blobs = make_blobs()
        await blobs.open()
        for key in ("a" * 64, "../../etc/passwd", ""):
            assert not await blobs.exists(key)
            with pytest.raises(BlobNotFound):
                await blobs.get(key)
            with pytest.raises(BlobNotFound):
                await blobs.unpacked(key)
        await blobs.close()

    run(scenario)


def test_a_blob_deleted_from_disk_is_not_found(tmp_path: Path) -> None:
    """A zip removed from the code directory behind lambdad's back is BlobNotFound, not
    FileNotFoundError; an unreadable code directory is StoreUnavailable."""

    async def scenario() -> None:
        blobs = FileBlobStore(tmp_path / "code")
        key = await blobs.put(_zip())
        (tmp_path / "code" / f"{key}.zip").unlink()
        with pytest.raises(BlobNotFound) as missing:
            await blobs.get(key)
        _no_driver_type(missing.value)
        with pytest.raises(BlobNotFound):
            await blobs.unpacked(key)
        (tmp_path / "code").rmdir()
        (tmp_path / "code").write_text("a file where the code directory should be")
        with pytest.raises(StoreUnavailable) as broken:
            await blobs.put(_zip())
        _no_driver_type(broken.value)

    run(scenario)


def test_a_closed_queue_refuses_changes(make_queue: Callable[[], Queue]) -> None:
    """After close, put, ack and retry raise StoreUnavailable."""

    async def scenario() -> None:
        queue = make_queue()
        await queue.open()
        await queue.put(_event("e1"))
        taken = await queue.take()
        await queue.close()
        calls = [queue.put(_event("e2")), queue.ack(taken.id), queue.retry(taken, 0.0)]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                await call
            _no_driver_type(raised.value)

    run(scenario)


def test_a_sqlite_queue_that_cannot_open_says_so(tmp_path: Path) -> None:
    """A queue database that is a directory makes open() raise StoreUnavailable."""
    (tmp_path / "queue.db").mkdir()

    async def scenario() -> None:
        queue = SqliteQueue(tmp_path / "queue.db")
        with pytest.raises(StoreUnavailable, match=r"queue\.db") as raised:
            await queue.open()
        _no_driver_type(raised.value)
        await queue.close()

    run(scenario)


def test_queue_refuses_a_kept_id_after_its_ack(make_queue: Callable[[], Queue]) -> None:
    """A ``keep_id`` event's id is refused (StoreConflict) while queued and after its ack; an
    ordinary event's id is free again once acked."""

    async def scenario() -> None:
        queue = make_queue()
        await queue.open()
        kept = dataclasses.replace(_event("occurrence"), keep_id=True)
        await queue.put(kept)
        with pytest.raises(StoreConflict):
            await queue.put(kept)
        await queue.put(_event("plain"))
        for _ in range(2):
            await queue.ack((await asyncio.wait_for(queue.take(), 5)).id)
        with pytest.raises(StoreConflict):
            await queue.put(kept)
        await queue.put(_event("plain"))
        assert queue.pending() == 1
        await queue.close()

    run(scenario)


def test_sqlite_queue_keeps_acked_ids_across_a_reopen(tmp_path: Path) -> None:
    """A kept id stays refused after a reopen, and its done row is not handed out again."""

    async def scenario() -> None:
        first = SqliteQueue(tmp_path / "q.db")
        await first.open()
        kept = dataclasses.replace(_event("occurrence"), keep_id=True)
        await first.put(kept)
        await first.ack((await first.take()).id)
        await first.close()
        second = SqliteQueue(tmp_path / "q.db")
        await second.open()
        assert second.pending() == 0
        with pytest.raises(StoreConflict):
            await second.put(kept)
        await second.close()

    run(scenario)
