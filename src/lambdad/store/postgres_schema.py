"""Versioned migrations of the PostgreSQL metadata store.

The migrations are SQL files in ``store/migrations/postgres/``, named ``<version>_<what>.sql``
(``0001_documents.sql``) and applied in version order, each in the one transaction that records
it in ``lambdad_schema_version``. A transaction-scoped advisory lock serialises nodes that
start at the same time: the first applies what is missing, the others then find nothing to do.
A database whose schema is newer than this lambdad knows is refused (``SchemaTooNew``): an
older node must not write rows a newer one has reshaped.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from typing import Any

from psycopg import AsyncConnection

#: ``pg_advisory_xact_lock`` key of the migrations ("lambdad" in ASCII, as a bigint).
MIGRATION_LOCK = 0x6C616D62646164
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class SchemaTooNew(Exception):
    """The database was migrated by a newer lambdad than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"its schema is version {found}, newer than this lambdad knows ({known}): "
            "upgrade lambdad"
        )
        self.found = found
        self.known = known


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration of the package, in version order."""
    folder = importlib.resources.files("lambdad.store").joinpath("migrations/postgres")
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations not numbered 1..n: {versions}"
    return found


async def migrate(conn: AsyncConnection[Any]) -> int:
    """Bring the database of ``conn`` (in autocommit mode) to the newest schema; returns its
    version. ``SchemaTooNew`` if it is newer than every migration here. A schema already
    current is only read: no lock, no transaction (the second store of a node to open, and
    every node after the first)."""
    known = migrations()
    current = await _version(conn)
    if current == len(known):
        return current
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS lambdad_schema_version ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM lambdad_schema_version")
        row = await cursor.fetchone()
        current = int(str(row[0])) if row else 0
        if current > len(known):
            raise SchemaTooNew(current, len(known))
        for migration in known[current:]:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO lambdad_schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
    return len(known)


async def _version(conn: AsyncConnection[Any]) -> int | None:
    """The schema version recorded in the database, or None before the first migration."""
    cursor = await conn.execute("SELECT to_regclass('lambdad_schema_version') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM lambdad_schema_version")
    row = await cursor.fetchone()
    return int(str(row[0])) if row else 0
