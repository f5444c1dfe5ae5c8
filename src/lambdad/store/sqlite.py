"""The SQLite (WAL) implementation of ``Store``: one table of JSON documents."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from lambdad.store.base import Document, Key, Store, StoreConflict, Table, Write
from lambdad.store.keys import decode, encode, prefix_range

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE docs (
            tbl TEXT NOT NULL,
            key TEXT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (tbl, key)
        ) WITHOUT ROWID;
    """,
}


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        #: One connection: transactions must not interleave.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version in range(current + 1, SCHEMA_VERSION + 1):
            await db.executescript(
                f"BEGIN; {_MIGRATIONS[version]} PRAGMA user_version={version}; COMMIT;"
            )
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def get(self, table: Table, key: Key) -> Document | None:
        async with self.db.execute(
            "SELECT doc FROM docs WHERE tbl = ? AND key = ?", (table.value, encode(key))
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else json.loads(row[0])

    async def scan(self, table: Table, prefix: Key = ()) -> list[tuple[Key, Document]]:
        bounds = prefix_range(prefix)
        args: tuple[str, ...]
        if bounds is None:
            sql, args = "SELECT key, doc FROM docs WHERE tbl = ? ORDER BY key", (table.value,)
        else:
            sql = "SELECT key, doc FROM docs WHERE tbl = ? AND key >= ? AND key < ? ORDER BY key"
            args = (table.value, *bounds)
        async with self.db.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return [(decode(k), json.loads(d)) for k, d in rows]

    async def write(self, writes: Sequence[Write]) -> None:
        async with self._write_lock:
            await self._write(writes)

    async def _write(self, writes: Sequence[Write]) -> None:
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            for w in writes:
                key = encode(w.key)
                if w.doc is None:
                    await db.execute("DELETE FROM docs WHERE tbl = ? AND key = ?", (w.table, key))
                elif w.create:
                    await db.execute(
                        "INSERT INTO docs (tbl, key, doc) VALUES (?, ?, ?)",
                        (w.table.value, key, json.dumps(w.doc)),
                    )
                else:
                    await db.execute(
                        "INSERT OR REPLACE INTO docs (tbl, key, doc) VALUES (?, ?, ?)",
                        (w.table.value, key, json.dumps(w.doc)),
                    )
        except sqlite3.IntegrityError as exc:
            await db.execute("ROLLBACK")
            raise StoreConflict(str(exc)) from exc
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        bounds = prefix_range(prefix)
        assert bounds is not None
        async with self._write_lock:
            cursor = await self.db.execute(
                "DELETE FROM docs WHERE tbl = ? AND key >= ? AND key < ?", (table.value, *bounds)
            )
        return cursor.rowcount
