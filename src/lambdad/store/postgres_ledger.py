"""The concurrency ledger in PostgreSQL (cluster mode, docs/cluster.md).

Grants are rows of ``concurrency_grants`` (``store/migrations/postgres/0003_...``); a claim is
one call of ``lambdad_claim_slots``, a transaction that locks the scope, so the sum of the live
grants on a scope never passes the limit, whichever nodes claim at once. Scaling tokens are
rows of ``scale_tokens`` (``0004_...``), one bucket per function taken from under a row lock by
``lambdad_take_tokens``. Expiry is judged by
the database's clock (``clock_timestamp()``), the one clock every node shares: a node whose
clock is off cannot make another's grant look expired. The one module that imports psycopg for
the ledger: its errors become ``StoreUnavailable`` here.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool

from lambdad.store.base import StoreUnavailable
from lambdad.store.ledger import ConcurrencyLedger
from lambdad.store.postgres import CONNECT_TIMEOUT, bound_for_stop, describe, open_pool
from lambdad.store.postgres_schema import SchemaTooNew, migrate

#: Connections one node holds for its grants: claims when a scope's grant grows, the renewal.
POOL_SIZE = 4
#: Buckets one sweep deletes at most.
SWEEP_BATCH = 500


class LedgerState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@contextlib.contextmanager
def _translated(where: str, doing: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, OSError) as exc:
        raise StoreUnavailable(f"the concurrency ledger {where} failed {doing}: {exc}") from exc


class PostgresLedger(ConcurrencyLedger):
    """Grants in the PostgreSQL database at ``url``."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self._url = url
        self._where = describe(url)
        self._pool_size = pool_size
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self.state = LedgerState.NEW

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self.state is not LedgerState.OPEN or self._pool is None:
            raise StoreUnavailable(f"the concurrency ledger {self._where} is {self.state.value}")
        return self._pool

    async def open(self) -> None:
        """Connect and bring the schema up to date; ``StoreUnavailable`` if either fails."""
        if self.state is not LedgerState.NEW:
            raise StoreUnavailable(f"the concurrency ledger {self._where} is {self.state.value}")
        with _translated(self._where, "to open"):
            async with await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ) as conn:
                try:
                    await migrate(conn)
                except SchemaTooNew as exc:
                    raise StoreUnavailable(f"the concurrency ledger {self._where}: {exc}") from exc
            self._pool = await open_pool(self._url, self._pool_size, "lambdad-ledger")
        self.state = LedgerState.OPEN

    async def close(self) -> None:
        self.state = LedgerState.CLOSED
        pool, self._pool = self._pool, None
        if pool is not None:
            with _translated(self._where, "to close"):
                await pool.close()

    def stopping(self) -> None:
        bound_for_stop(self._pool)

    async def claim(
        self, node: str, scope: str, need: int, spare: int, limit: int, lease: float
    ) -> int | None:
        with _translated(self._where, "to claim slots"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT lambdad_claim_slots(%s, %s, %s, %s, %s, %s)",
                    (scope, node, need, spare, limit, lease),
                )
                row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def release(self, node: str, scope: str, keep: int) -> None:
        with _translated(self._where, "to release slots"):
            async with self.pool.connection() as conn:
                if keep <= 0:
                    await conn.execute(
                        "DELETE FROM concurrency_grants WHERE scope = %s AND node = %s",
                        (scope, node),
                    )
                else:
                    await conn.execute(
                        "UPDATE concurrency_grants SET slots = least(slots, %s)"
                        " WHERE scope = %s AND node = %s",
                        (keep, scope, node),
                    )

    async def renew(self, node: str, lease: float) -> set[str]:
        with _translated(self._where, "to renew grants"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "UPDATE concurrency_grants"
                    " SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                    " WHERE node = %s AND expires_at > clock_timestamp() RETURNING scope",
                    (lease, node),
                )
                return {str(row[0]) for row in await cursor.fetchall()}

    async def drop(self, node: str) -> None:
        with _translated(self._where, "to give back grants"):
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM concurrency_grants WHERE node = %s", (node,))

    async def grants(self, scope: str) -> dict[str, int]:
        with _translated(self._where, "to read grants"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT node, slots FROM concurrency_grants"
                    " WHERE scope = %s AND expires_at > clock_timestamp()",
                    (scope,),
                )
                return {str(n): int(s) for n, s in await cursor.fetchall()}

    async def take_tokens(
        self, scope: str, need: int, spare: int, rate: int, window: float
    ) -> tuple[int, float]:
        with _translated(self._where, "to take scaling tokens"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT granted, wait FROM lambdad_take_tokens(%s, %s, %s, %s, %s)",
                    (scope, need, spare, rate, window),
                )
                row = await cursor.fetchone()
        if row is None:
            raise StoreUnavailable(f"the concurrency ledger {self._where} took no tokens")
        return int(row[0]), float(row[1])

    async def give_tokens(self, scope: str, count: int, rate: int) -> None:
        with _translated(self._where, "to give back scaling tokens"):
            async with self.pool.connection() as conn:
                await conn.execute("SELECT lambdad_give_tokens(%s, %s, %s)", (scope, count, rate))

    async def sweep_tokens(self, age: float) -> int:
        with _translated(self._where, "to sweep scaling tokens"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT lambdad_sweep_tokens(%s, %s)", (age, SWEEP_BATCH)
                )
                row = await cursor.fetchone()
        return 0 if row is None else int(row[0])
