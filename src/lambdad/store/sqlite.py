"""The SQLite (WAL) implementation of ``Store``: one table of JSON documents.

The one module that imports ``aiosqlite`` for metadata: its errors (and ``sqlite3``'s, and the
file system's) become ``StoreConflict`` or ``StoreUnavailable`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiosqlite

from lambdad.store.base import (
    Document,
    Key,
    Store,
    StoreConflict,
    StoreUnavailable,
    Table,
    Write,
)
from lambdad.store.keys import decode, encode, prefix_range

SCHEMA_VERSION = 1
#: Keys per ``IN (...)`` of ``get_many`` (under SQLite's default 999 host parameters).
_MANY = 500
_MAX_SQL_INT = 2**63 - 1
#: Rows of one multi-row ``INSERT OR REPLACE`` (three host parameters each, under SQLite's
#: 32,766 since 3.32).
_ROWS_PER_STATEMENT = 1000


def _clamped(value: int) -> int:
    return min(max(0, value), _MAX_SQL_INT)


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


@contextlib.contextmanager
def _translated(path: Path, doing: str) -> Iterator[None]:
    """Driver errors as the store's own: a conflict, or the store being unavailable."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StoreConflict(str(exc)) from exc
    except (sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"the metadata store {path} failed {doing}: {exc}") from exc
    except ValueError as exc:  # aiosqlite's "no active connection" / "Connection closed"
        raise StoreUnavailable(f"the metadata store {path} is closed: {exc}") from exc


_DELETE = "DELETE FROM docs WHERE tbl = ? AND key = ?"
_INSERT = "INSERT INTO docs (tbl, key, doc) VALUES (?, ?, ?)"
_PUT = "INSERT OR REPLACE INTO docs (tbl, key, doc) VALUES (?, ?, ?)"
#: A write's ``expect``: the stored document's field (a JSON path) equals a JSON value (both
#: sides through ``json_extract``, so an absent field and null are both NULL, and ``IS``
#: compares NULLs). Its row count says whether it held.
_HOLDS = "json_extract(doc, ?) IS json_extract(?, '$')"
_DELETE_IF = f"DELETE FROM docs WHERE tbl = ? AND key = ? AND {_HOLDS}"
_PUT_IF = f"UPDATE docs SET doc = ? WHERE tbl = ? AND key = ? AND {_HOLDS}"
_CONDITIONAL = (_DELETE_IF, _PUT_IF)


def _statements(writes: Sequence[Write]) -> list[tuple[str, list[tuple[str, ...]]]]:
    """``writes`` as SQL statements in order, each with the rows of a run of writes of the
    same kind (applied in order, so a later write of a key still wins); a write with an
    ``expect`` is a statement of its own (its row count tells whether it held)."""
    runs: list[tuple[str, list[tuple[str, ...]]]] = []
    for w in writes:
        key = encode(w.key)
        row: tuple[str, ...]
        if w.expect is not None:
            path, value = f'$."{w.expect[0]}"', json.dumps(w.expect[1])
            if w.doc is None:
                runs.append((_DELETE_IF, [(w.table.value, key, path, value)]))
            else:
                runs.append((_PUT_IF, [(json.dumps(w.doc), w.table.value, key, path, value)]))
            continue
        if w.doc is None:
            sql, row = _DELETE, (w.table.value, key)
        else:
            sql, row = (_INSERT if w.create else _PUT), (w.table.value, key, json.dumps(w.doc))
        if runs and runs[-1][0] == sql:
            runs[-1][1].append(row)
        else:
            runs.append((sql, [row]))
    return runs


@functools.lru_cache(maxsize=64)
def _put_rows(count: int) -> str:
    """One statement that puts ``count`` documents (in order: a later row of a key wins)."""
    return "INSERT OR REPLACE INTO docs (tbl, key, doc) VALUES " + ",".join(["(?, ?, ?)"] * count)


def _one_statement(writes: Sequence[Write]) -> tuple[str, list[str]] | None:
    """``writes`` as one statement when every one is a plain put (no delete, ``create`` or
    ``expect``):
    a statement is atomic on its own, so it needs no transaction around it (one trip to the
    database thread instead of three). None: they need a transaction."""
    if not 0 < len(writes) <= _ROWS_PER_STATEMENT:
        return None
    args: list[str] = []
    for w in writes:
        if w.doc is None or w.create or w.expect is not None:
            return None
        args += (w.table.value, encode(w.key), json.dumps(w.doc))
    return _put_rows(len(writes)), args


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        #: One connection: transactions must not interleave.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable(f"the metadata store {self._path} is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating and migrating) the database; ``StoreUnavailable`` if it cannot."""
        with _translated(self._path, "to open"):
            await self._open()

    async def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            await self._prepare(db)
        except BaseException:
            await db.close()
            raise
        self._db = db

    @staticmethod
    async def _prepare(db: aiosqlite.Connection) -> None:
        """Set the connection up and bring the schema to ``SCHEMA_VERSION``."""
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

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with _translated(self._path, "to close"):
                await db.close()

    async def get(self, table: Table, key: Key) -> Document | None:
        with _translated(self._path, "a read"):
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
        with _translated(self._path, "a scan"):
            async with self.db.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
        return [(decode(k), json.loads(d)) for k, d in rows]

    async def scan_page(
        self, table: Table, prefix: Key, offset: int, limit: int
    ) -> list[tuple[Key, Document]]:
        bounds = prefix_range(prefix)
        where = "tbl = ?" if bounds is None else "tbl = ? AND key >= ? AND key < ?"
        sql = f"SELECT key, doc FROM docs WHERE {where} ORDER BY key LIMIT ? OFFSET ?"
        # SQLite's integers are 64-bit: an offset past them is past every row anyway.
        args = (table.value, *(bounds or ()), _clamped(limit), _clamped(offset))
        with _translated(self._path, "a scan"):
            async with self.db.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
        return [(decode(k), json.loads(d)) for k, d in rows]

    async def get_many(self, table: Table, keys: Sequence[Key]) -> list[Document | None]:
        found: dict[str, Document] = {}
        encoded = [encode(key) for key in keys]
        for at in range(0, len(encoded), _MANY):
            chunk = encoded[at : at + _MANY]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, doc FROM docs WHERE tbl = ? AND key IN ({marks})"
            with _translated(self._path, "a read"):
                async with self.db.execute(sql, (table.value, *chunk)) as cursor:
                    rows = await cursor.fetchall()
            found.update((k, json.loads(d)) for k, d in rows)
        return [found.get(key) for key in encoded]

    async def write(self, writes: Sequence[Write]) -> None:
        async with self._write_lock:
            with _translated(self._path, "a write"):
                await self._write(writes)

    async def _write(self, writes: Sequence[Write]) -> None:
        db = self.db
        single = _one_statement(writes)
        if single is not None:
            await db.execute(*single)
            return
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Consecutive writes of the same kind go to the database thread as one
            # ``executemany`` (a thousand fire records at once are one hop, not a thousand).
            for sql, rows in _statements(writes):
                if sql in _CONDITIONAL:
                    cursor = await db.execute(sql, rows[0])
                    if cursor.rowcount != 1:
                        raise StoreConflict(f"{rows[0][-4]}:{rows[0][-3]} changed")
                elif len(rows) == 1:
                    await db.execute(sql, rows[0])
                else:
                    await db.executemany(sql, rows)
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        bounds = prefix_range(prefix)
        assert bounds is not None
        async with self._write_lock:
            with _translated(self._path, "a delete"):
                cursor = await self.db.execute(
                    "DELETE FROM docs WHERE tbl = ? AND key >= ? AND key < ?",
                    (table.value, *bounds),
                )
        return cursor.rowcount
