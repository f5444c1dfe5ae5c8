"""Code and layer zips in PostgreSQL, cached on this node's disk (cluster mode, docs/cluster.md).

The blobs live in the metadata store's database (``store/migrations/postgres/0002_blobs.sql``):
``blob_chunks`` holds each zip in 1 MiB slices, and the ``blobs`` row, written last in the same
transaction, says the blob is complete. Every node keeps what it has stored or fetched in a
``FileBlobStore`` of its own data dir, so a zip crosses the network at most once per node and
is unpacked once per node, as on a single node. What comes from the database is streamed to
disk a chunk at a time (never the whole zip in memory) and kept only if it hashes to its key.

The one module that queries PostgreSQL for blobs; its connection pool, lifecycle states and
error translation (psycopg's errors become ``StoreUnavailable``) are the metadata store's
(``store/postgres.py``), and so is the schema: whichever of the two opens first migrates it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from lambdad.store.base import BlobNotFound, BlobStore, StoreUnavailable
from lambdad.store.files import FileBlobStore, _is_key
from lambdad.store.once import single_flight
from lambdad.store.postgres import (
    PostgresState,
    bound_for_stop,
    describe,
    open_pool,
    translated,
)

#: The slice of a zip one row holds.
CHUNK_BYTES = 1 << 20
#: Connections one node holds for blobs: uploads and first fetches only, the rest is local.
POOL_SIZE = 4


class PostgresBlobStore(BlobStore):
    """Blobs in the PostgreSQL database at ``url``, cached under ``cache`` (``<data>/code``)."""

    def __init__(self, url: str, cache: Path, *, pool_size: int = POOL_SIZE) -> None:
        self._url = url
        self._where = describe(url)
        self._pool_size = pool_size
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self.local = FileBlobStore(cache)
        self._fetching: dict[Hashable, asyncio.Task[None]] = {}
        self.state = PostgresState.NEW

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self.state is not PostgresState.OPEN or self._pool is None:
            raise StoreUnavailable(f"the code store {self._where} is {self.state.value}")
        return self._pool

    async def open(self) -> None:
        """Connect and bring the schema up to date (``open_pool``: a version read when the
        metadata store did); ``StoreUnavailable`` if either fails."""
        if self.state is not PostgresState.NEW:
            raise StoreUnavailable(f"the code store {self._where} is {self.state.value}")
        with self._translated("to open"):
            self._pool = await open_pool(self._url, self._pool_size, "lambdad-blobs")
        self.state = PostgresState.OPEN

    def stopping(self) -> None:
        bound_for_stop(self._pool)

    async def close(self) -> None:
        """Close every connection. Idempotent."""
        self.state = PostgresState.CLOSED
        pool, self._pool = self._pool, None
        if pool is not None:
            with self._translated("to close"):
                await pool.close()

    def _translated(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translated("code store", self._where, doing)

    async def put(self, data: bytes) -> str:
        pool = self.pool
        key = await self.local.put(data)
        with self._translated("to store a blob"):
            async with pool.connection() as conn, conn.transaction():
                # Two nodes storing the same zip at once: the second waits, then finds it.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
                cursor = await conn.execute("SELECT 1 FROM blobs WHERE key = %s", (key,))
                if await cursor.fetchone() is not None:
                    return key
                view = memoryview(data)  # slices without copies; psycopg sends them as bytea
                chunks = [
                    (key, seq, view[start : start + CHUNK_BYTES])
                    for seq, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES))
                ]
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO blob_chunks (key, seq, data) VALUES (%s, %s, %s)"
                        " ON CONFLICT (key, seq) DO UPDATE SET data = excluded.data",
                        chunks,
                    )
                await conn.execute(
                    "INSERT INTO blobs (key, size, chunks) VALUES (%s, %s, %s)",
                    (key, len(data), len(chunks)),
                )
        return key

    async def get(self, key: str) -> bytes:
        await self._cached(key)
        return await self.local.get(key)

    async def exists(self, key: str) -> bool:
        if not _is_key(key):
            return False
        if await self.local.exists(key):
            return True
        with self._translated("to look up a blob"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute("SELECT 1 FROM blobs WHERE key = %s", (key,))
                return await cursor.fetchone() is not None

    async def unpacked(self, key: str) -> Path:
        await self._cached(key)
        return await self.local.unpacked(key)

    async def _cached(self, key: str) -> None:
        """Make sure the zip ``key`` is on this node's disk, fetching it once if it is not."""
        if not _is_key(key):
            raise BlobNotFound(key)
        if await self.local.exists(key):
            return
        await single_flight(self._fetching, key, lambda: self._fetch(key))

    async def _fetch(self, key: str) -> None:
        """Stream the chunks of ``key`` to this node's disk, one row in memory at a time."""
        rows = 0

        async def chunks(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[bytes]:
            nonlocal rows
            async with conn.cursor() as cursor:
                async for (data,) in cursor.stream(
                    "SELECT c.data FROM blobs b JOIN blob_chunks c ON c.key = b.key"
                    " WHERE b.key = %s ORDER BY c.seq",
                    (key,),
                ):
                    rows += 1
                    yield bytes(data)

        with self._translated("to read a blob"):
            async with self.pool.connection() as conn:
                hashed = await self.local.put_stream(key, chunks(conn))
        if rows == 0:
            raise BlobNotFound(key)
        if not hashed:
            raise StoreUnavailable(f"the code store {self._where} holds a damaged blob {key}")
