"""The PostgreSQL implementation of ``Store`` (cluster mode, docs/cluster.md).

The same documents as the SQLite store, in one table ``docs (tbl, key, doc)``
(``store/migrations/postgres/``), through a pool of psycopg 3 connections; every write
transaction also notifies the change feed (``store/postgres_feed.py``). The one module that
imports psycopg for metadata: its errors become ``StoreConflict`` or ``StoreUnavailable`` here.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from lambdad.store.base import (
    Document,
    Key,
    Store,
    StoreChangeListener,
    StoreConflict,
    StoreUnavailable,
    Table,
    Write,
)
from lambdad.store.keys import decode, encode, prefix_range
from lambdad.store.postgres_feed import CHANNEL, ChangeFeed, changes_of, payload
from lambdad.store.postgres_schema import SchemaTooNew, migrate

#: How many times a write transaction is run again after a deadlock or serialisation failure.
WRITE_ATTEMPTS = 5
MAX_BIGINT = 2**63 - 1
#: Seconds to wait for a first connection, and for a pooled one.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 30.0
#: Once lambdad is stopping: seconds to wait for a pooled connection (a stop must be prompt
#: even when the database is down), and, after one such wait failed, for every later one.
STOP_TIMEOUT = 2.0
STOP_TIMEOUT_DOWN = 0.1

log = logging.getLogger(__name__)


def bound_for_stop(
    pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None,
) -> None:
    """Make ``pool`` give up on a connection after ``STOP_TIMEOUT`` rather than its usual wait."""
    if pool is not None:
        pool.timeout = min(pool.timeout, STOP_TIMEOUT)


def found_down(
    pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None,
) -> None:
    """A wait for a connection failed while stopping: the database is down, so every later
    wait gives up at once (a stop's last writes must not each wait ``STOP_TIMEOUT``)."""
    if pool is not None:
        pool.timeout = STOP_TIMEOUT_DOWN


async def open_pool(
    url: str, size: int, name: str
) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """A pool of up to ``size`` autocommit connections to ``url``, checked before each use,
    open with its first connection made, on a schema brought up to date first
    (``postgres_schema.migrate``; ``SchemaTooNew`` if the database is newer). The metadata and
    the code store both open theirs here: whichever opens first migrates, the other finds the
    schema current with a read.

    The schema is checked on a connection of its own, made before the pool: a database that
    refuses connections fails the open at once, with the driver's reason, where the pool
    would try again until ``POOL_TIMEOUT``."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
    ) as conn:
        await migrate(conn)
    pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]
    pool = psycopg_pool.AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
        check=psycopg_pool.AsyncConnectionPool.check_connection,
        timeout=POOL_TIMEOUT,
        open=False,
        name=name,
    )
    await pool.open(wait=True, timeout=POOL_TIMEOUT)
    return pool


def describe(url: str) -> str:
    """Where ``url`` points, for messages: ``host:port/dbname``, never a password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "a PostgreSQL database (unparsable URL)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"postgresql://{host}:{port}/{info.get('dbname') or ''}"


class PostgresState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@contextlib.contextmanager
def translated(what: str, where: str, doing: str) -> Iterator[None]:
    """Driver errors as the store's own: a conflict, or ``what`` (the metadata store, the code
    store) at ``where`` being unavailable (its schema newer than this lambdad included)."""
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        raise StoreConflict(str(exc)) from exc
    except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, OSError) as exc:
        raise StoreUnavailable(f"the {what} {where} failed {doing}: {exc}") from exc
    except SchemaTooNew as exc:
        raise StoreUnavailable(f"the {what} {where}: {exc}") from exc


#: A write's ``expect``: the stored document's field equals a JSON value (compared as
#: ``jsonb``; an absent field is JSON null). Its row count says whether it held.
_HOLDS = "COALESCE(doc::jsonb -> %s::text, 'null'::jsonb) = %s::jsonb"
_DELETE_IF = f"DELETE FROM docs WHERE tbl = %s AND key = %s AND {_HOLDS}"
_PUT_IF = f"UPDATE docs SET doc = %s::json WHERE tbl = %s AND key = %s AND {_HOLDS}"


class PostgresStore(Store):
    """Documents in PostgreSQL. ``pool_size`` bounds the connections this process holds."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self._url = url
        self._where = describe(url)
        self._pool_size = pool_size
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        #: Tells this store's own notifications from other processes'.
        self._origin = uuid.uuid4().hex
        self._feed = ChangeFeed(url, self._origin, self._where)
        self._stopping = False
        self.state = PostgresState.NEW

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self.state is not PostgresState.OPEN or self._pool is None:
            raise StoreUnavailable(f"the metadata store {self._where} is {self.state.value}")
        return self._pool

    async def open(self) -> None:
        """Connect, bring the schema up to date and listen for changes; ``StoreUnavailable``
        (naming the database, never the password) if any of it fails."""
        if self.state is not PostgresState.NEW:
            raise StoreUnavailable(f"the metadata store {self._where} is {self.state.value}")
        with self._translated("to open"):
            pool = await open_pool(self._url, self._pool_size, "lambdad-store")
        try:
            await self._feed.start()
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self.state = PostgresState.OPEN

    async def close(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        self.state = PostgresState.CLOSED
        await self._feed.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            with self._translated("to close"):
                await pool.close()

    def stopping(self) -> None:
        self._stopping = True
        bound_for_stop(self._pool)

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """``translated`` for this store; while stopping, a wait for a connection that timed
        out marks the database down (``found_down``), for reads and writes alike."""
        try:
            with translated("metadata store", self._where, doing):
                yield
        except StoreUnavailable as exc:
            if self._stopping and isinstance(exc.__cause__, psycopg_pool.PoolTimeout):
                found_down(self._pool)
            raise

    def subscribe(self, listener: StoreChangeListener) -> Callable[[], None]:
        return self._feed.subscribe(listener)

    async def get(self, table: Table, key: Key) -> Document | None:
        with self._translated("a read"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT doc::text FROM docs WHERE tbl = %s AND key = %s",
                    (table.value, encode(key)),
                )
                row = await cursor.fetchone()
        return None if row is None else _document(row[0])

    async def scan(self, table: Table, prefix: Key = ()) -> list[tuple[Key, Document]]:
        bounds = prefix_range(prefix)
        with self._translated("a scan"):
            async with self.pool.connection() as conn:
                if bounds is None:
                    cursor = await conn.execute(
                        "SELECT key, doc::text FROM docs WHERE tbl = %s ORDER BY key",
                        (table.value,),
                    )
                else:
                    cursor = await conn.execute(
                        "SELECT key, doc::text FROM docs"
                        " WHERE tbl = %s AND key >= %s AND key < %s ORDER BY key",
                        (table.value, *bounds),
                    )
                rows = await cursor.fetchall()
        return [(decode(k), _document(d)) for k, d in rows]

    async def scan_page(
        self, table: Table, prefix: Key, offset: int, limit: int
    ) -> list[tuple[Key, Document]]:
        """At most ``limit`` of ``scan(table, prefix)``'s documents from its ``offset``-th,
        reading only that page (``Store.scan_page``, where the base class has it)."""
        bounds = prefix_range(prefix)
        where = "tbl = %s" if bounds is None else "tbl = %s AND key >= %s AND key < %s"
        # PostgreSQL's LIMIT and OFFSET are bigints: beyond them is past every row anyway.
        args = (table.value, *(bounds or ()), _clamped(limit), _clamped(offset))
        with self._translated("a scan"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    f"SELECT key, doc::text FROM docs WHERE {where}"
                    " ORDER BY key LIMIT %s OFFSET %s",
                    args,
                )
                rows = await cursor.fetchall()
        return [(decode(k), _document(d)) for k, d in rows]

    async def get_many(self, table: Table, keys: Sequence[Key]) -> list[Document | None]:
        """``get`` of each key, in order, in one query (``Store.get_many``, where the base
        class has it)."""
        if not keys:
            return []
        encoded = [encode(key) for key in keys]
        with self._translated("a read"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT key, doc::text FROM docs WHERE tbl = %s AND key = ANY(%s)",
                    (table.value, encoded),
                )
                rows = await cursor.fetchall()
        found = {k: _document(d) for k, d in rows}
        return [found.get(key) for key in encoded]

    async def write(self, writes: Sequence[Write]) -> None:
        if not writes:
            self.pool  # noqa: B018 -- a closed store refuses even an empty transaction
            return
        # Rows locked in one order by every transaction cannot deadlock each other; the sort
        # is stable, so writes of one key keep their order.
        ordered = sorted(writes, key=lambda w: (w.table.value, encode(w.key)))
        note = payload(self._origin, changes_of(writes))
        try:
            with self._translated("a write"):
                for attempt in range(WRITE_ATTEMPTS):
                    try:
                        await self._write(ordered, note)
                        return
                    except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                        if attempt == WRITE_ATTEMPTS - 1:
                            raise
        except StoreUnavailable:
            if self._stopping:
                written = sorted({f"{w.table.value} {'/'.join(w.key)}" for w in writes})
                log.warning("stopping: not written to %s (unreachable): %s", self._where, written)
            raise

    async def _write(self, writes: Sequence[Write], note: str) -> None:
        # Pipeline mode: the whole transaction goes out in one round trip, not one per statement
        # (a transaction with an ``expect`` takes one more: its row counts are read before the
        # commit, and one that did not hold rolls everything back).
        conditional: list[tuple[Write, psycopg.AsyncCursor[Any]]] = []
        async with self.pool.connection() as conn, conn.pipeline() as pipeline, conn.transaction():
            for w in writes:
                key = encode(w.key)
                if w.expect is not None:
                    field, value = w.expect[0], json.dumps(w.expect[1])
                    if w.doc is None:
                        cursor = await conn.execute(_DELETE_IF, (w.table.value, key, field, value))
                    else:
                        doc = json.dumps(w.doc)
                        cursor = await conn.execute(
                            _PUT_IF, (doc, w.table.value, key, field, value)
                        )
                    conditional.append((w, cursor))
                elif w.doc is None:
                    await conn.execute(
                        "DELETE FROM docs WHERE tbl = %s AND key = %s", (w.table.value, key)
                    )
                elif w.create:
                    await conn.execute(
                        "INSERT INTO docs (tbl, key, doc) VALUES (%s, %s, %s::json)",
                        (w.table.value, key, json.dumps(w.doc)),
                    )
                else:
                    await conn.execute(
                        "INSERT INTO docs (tbl, key, doc) VALUES (%s, %s, %s::json)"
                        " ON CONFLICT (tbl, key) DO UPDATE SET doc = EXCLUDED.doc",
                        (w.table.value, key, json.dumps(w.doc)),
                    )
            if conditional:
                await pipeline.sync()
                for w, cursor in conditional:
                    if cursor.rowcount != 1:
                        raise StoreConflict(f"{w.table}:{'/'.join(w.key)} changed")
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, note))

    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        bounds = prefix_range(prefix)
        assert bounds is not None
        note = payload(self._origin, [(table.value, list(prefix), True)])
        with self._translated("a delete"):
            async with self.pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    "DELETE FROM docs WHERE tbl = %s AND key >= %s AND key < %s",
                    (table.value, *bounds),
                )
                if cursor.rowcount:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, note))
        return cursor.rowcount


def _clamped(value: int) -> int:
    return min(max(0, value), MAX_BIGINT)


def _document(text: str) -> Document:
    doc: Document = json.loads(text)
    return doc
