"""What the PostgreSQL store does beyond the shared contract: versioned migrations, errors that
name the database (never its password), and the change feed other processes' caches follow
(tests/postgres_server.py starts the real servers)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import pytest

from lambdad.store.base import StoreChange, StoreError, StoreUnavailable, Table, Write
from lambdad.store.postgres import PostgresStore
from lambdad.store.postgres_schema import migrations
from tests.postgres_server import PostgresServer

T = TypeVar("T")


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def test_migrations_are_recorded_and_applied_once(postgres: PostgresServer) -> None:
    """Opening a new database applies every migration once and records each version; opening
    it again (two stores at once included) applies nothing more."""
    url = postgres.database()

    async def scenario() -> None:
        stores = [PostgresStore(url) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))
        await stores[0].put(Table.FUNCTIONS, ("a", "r", "fn"), {})
        for store in stores:
            await store.close()
        again = PostgresStore(url)
        await again.open()
        assert await again.get(Table.FUNCTIONS, ("a", "r", "fn")) == {}
        await again.close()

    run(scenario)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name FROM lambdad_schema_version ORDER BY 1"
        ).fetchall()
    assert rows == [(m.version, m.name) for m in migrations()]
    assert rows[0] == (1, "documents")


def test_a_schema_newer_than_this_lambdad_is_refused(postgres: PostgresServer) -> None:
    """A database migrated by a newer lambdad makes open() raise StoreUnavailable saying so."""
    url = postgres.database()

    async def scenario() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.close()
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO lambdad_schema_version (version, name) VALUES (999, 'x')")
        newer = PostgresStore(url)
        with pytest.raises(StoreUnavailable, match="newer than this lambdad"):
            await newer.open()
        await newer.close()

    run(scenario)


def test_an_unreachable_database_says_where_without_the_password() -> None:
    """A store whose server does not answer raises StoreUnavailable naming host, port and
    database, never the password of its URL, and the driver's reason (the refused connection,
    not a pool that gave up waiting)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def scenario() -> None:
            store = PostgresStore(f"postgresql://u:s3cret@127.0.0.1:{port}/meta")
            with pytest.raises(StoreUnavailable) as raised:
                await store.open()
            assert f"127.0.0.1:{port}/meta" in str(raised.value)
            assert "s3cret" not in str(raised.value)
            assert "Connection refused" in str(raised.value)  # at once, not after a pool's wait
            assert type(raised.value).__module__ == "lambdad.store.base"
            await store.close()
            with pytest.raises(StoreUnavailable):
                await store.get(Table.FUNCTIONS, ("a",))

        run(scenario)


def test_two_stores_see_each_others_changes(postgres: PostgresServer) -> None:
    """A write, a transaction and a delete_prefix through one store reach the other store's
    subscribers (not its own), and a transaction that failed sends nothing."""
    url = postgres.database()

    async def scenario() -> None:
        writer, reader = PostgresStore(url), PostgresStore(url)
        await writer.open()
        await reader.open()
        seen: list[StoreChange] = []
        own: list[StoreChange] = []
        reader.subscribe(seen.append)
        writer.subscribe(own.append)
        await writer.put(Table.CONCURRENCY, ("a", "r", "fn"), {"reserved": 5})
        await wait_for(lambda: len(seen) == 1)
        assert seen == [StoreChange(Table.CONCURRENCY, ("a", "r", "fn"))]
        await writer.put(Table.FUNCTIONS, ("a", "r", "fn"), {}, create=True)
        await wait_for(lambda: len(seen) == 2)
        with pytest.raises(StoreError):  # a conflict: rolled back, so no notification
            await writer.write(
                [
                    Write(Table.VERSIONS, ("a", "r", "fn", "1"), {}),
                    Write(Table.FUNCTIONS, ("a", "r", "fn"), {}, create=True),
                ]
            )
        await writer.write(
            [
                Write(Table.ALIASES, ("a", "r", "fn", "live"), {"v": "1"}),
                Write(Table.ALIASES, ("a", "r", "fn", "old"), None),
            ]
        )
        await writer.delete_prefix(Table.ALIASES, ("a", "r", "fn"))
        await wait_for(lambda: len(seen) == 5)
        assert seen[2:] == [
            StoreChange(Table.ALIASES, ("a", "r", "fn", "live")),
            StoreChange(Table.ALIASES, ("a", "r", "fn", "old")),
            StoreChange(Table.ALIASES, ("a", "r", "fn"), prefix=True),
        ]
        assert seen[4].covers(Table.ALIASES, ("a", "r", "fn", "x"))
        assert not seen[4].covers(Table.ALIASES, ("a", "r", "fn2", "x"))
        assert own == []
        await writer.close()
        await reader.close()

    run(scenario)


def test_an_unsubscribed_listener_hears_nothing_more(postgres: PostgresServer) -> None:
    """After unsubscribing, a listener hears no change; the store's other listeners still do."""
    url = postgres.database()

    async def scenario() -> None:
        writer, reader = PostgresStore(url), PostgresStore(url)
        await writer.open()
        await reader.open()
        kept: list[StoreChange] = []
        dropped: list[StoreChange] = []
        reader.subscribe(kept.append)
        unsubscribe = reader.subscribe(dropped.append)
        await writer.put(Table.FUNCTIONS, ("a", "r", "one"), {})
        await wait_for(lambda: len(kept) == 1 and len(dropped) == 1)
        unsubscribe()
        await writer.put(Table.FUNCTIONS, ("a", "r", "two"), {})
        await wait_for(lambda: len(kept) == 2)
        assert dropped == [StoreChange(Table.FUNCTIONS, ("a", "r", "one"))]
        await writer.close()
        await reader.close()

    run(scenario)


def test_a_closed_store_refuses_pages_and_many_gets(postgres: PostgresServer) -> None:
    """A closed PostgreSQL store refuses ``scan_page`` and ``get_many`` as unavailable (what
    the two answer on an open store is the contract's ``test_a_page_of_a_scan_and_many_gets``,
    run on PostgreSQL too, offsets past PostgreSQL's bigints included)."""
    url = postgres.database()

    async def scenario() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.put(Table.FUNCTIONS, ("acct", "r", "a"), {"n": "a"})
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.scan_page(Table.FUNCTIONS, ("acct", "r"), 0, 10)
        with pytest.raises(StoreUnavailable):
            await store.get_many(Table.FUNCTIONS, [("acct", "r", "a")])

    run(scenario)


def test_a_large_transaction_names_whole_tables(postgres: PostgresServer) -> None:
    """A transaction whose keys do not fit one notification is announced as its tables."""
    url = postgres.database()

    async def scenario() -> None:
        writer, reader = PostgresStore(url), PostgresStore(url)
        await writer.open()
        await reader.open()
        seen: list[StoreChange] = []
        reader.subscribe(seen.append)
        await writer.write(
            [Write(Table.METRICS, ("a", "r", f"{i:010d}"), {}) for i in range(500)]
            + [Write(Table.FUNCTIONS, ("a", "r", "fn"), {})]
        )
        await wait_for(lambda: len(seen) == 2)
        assert seen == [
            StoreChange(Table.FUNCTIONS, (), prefix=True),
            StoreChange(Table.METRICS, (), prefix=True),
        ]
        assert seen[0].covers(Table.FUNCTIONS, ("b", "r", "other"))
        await writer.close()
        await reader.close()

    run(scenario)


def test_the_store_and_its_feed_recover_from_a_server_restart() -> None:
    """After PostgreSQL restarts, the store serves again on new connections, and the feed tells
    its subscribers that anything may have changed, then delivers changes again."""
    server = PostgresServer()
    server.start()
    try:
        url = server.database()

        async def scenario() -> None:
            writer, reader = PostgresStore(url), PostgresStore(url)
            await writer.open()
            await reader.open()
            seen: list[StoreChange] = []
            reader.subscribe(seen.append)
            await writer.put(Table.FUNCTIONS, ("a", "r", "before"), {})
            await wait_for(lambda: len(seen) == 1)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await wait_for(lambda: StoreChange(None) in seen)
            assert await writer.get(Table.FUNCTIONS, ("a", "r", "before")) == {}
            await writer.put(Table.FUNCTIONS, ("a", "r", "after"), {})
            await wait_for(lambda: StoreChange(Table.FUNCTIONS, ("a", "r", "after")) in seen)
            await writer.close()
            await reader.close()

        run(scenario)
    finally:
        server.close()
