"""The PostgreSQL store beside the SQLite one, and how soon its change feed tells another store.

Run: ``PYTHONPATH=src python bench/store_feed.py [--writes 1000]``. Starts its own PostgreSQL
(tests/postgres_server.py, with PostgreSQL's default durability: commits wait for the disk)
and prints a Markdown table for docs/benchmarks.md.

- ``get`` / ``put``: one document read, and one single-write transaction (an upsert), per call,
  on SQLite (WAL, ``synchronous=FULL``) and on PostgreSQL over loopback.
- change seen by another store: two ``PostgresStore`` instances on one database, as two
  lambdad nodes hold them; ``A.put`` of a key, then the time until ``B``'s subscriber is
  called with that change, measured from the moment ``A.put`` returned (the commit is
  acknowledged) and from the moment it was called.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres_server import PostgresServer, unavailable_reason

from lambdad.store.base import Store, StoreChange, Table
from lambdad.store.postgres import PostgresStore
from lambdad.store.sqlite import SqliteStore

DOC = {"FunctionName": "fn", "MemorySize": 128, "Environment": {"Variables": {"A": "b" * 200}}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"| {name} | {statistics.median(ms):.2f} | {percentile(ms, 0.99):.2f} | {max(ms):.2f} |"


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(calls):
        began = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - began)
    return times


async def store_ops(store: Store, calls: int) -> tuple[list[float], list[float]]:
    await store.open()
    try:
        puts = await timed(calls, lambda i: store.put(Table.FUNCTIONS, ("a", "r", f"f{i}"), DOC))
        gets = await timed(calls, lambda i: store.get(Table.FUNCTIONS, ("a", "r", f"f{i}")))
    finally:
        await store.close()
    return gets, puts


async def feed(url: str, writes: int) -> tuple[list[float], list[float]]:
    """Per write: (seconds from A.put returning to B's subscriber, from A.put being called)."""
    a, b = PostgresStore(url), PostgresStore(url)
    await a.open()
    await b.open()
    arrived: dict[str, float] = {}
    waiter: asyncio.Event = asyncio.Event()

    def on_change(change: StoreChange) -> None:
        arrived[change.key[-1]] = time.perf_counter()
        waiter.set()

    b.subscribe(on_change)
    after_commit, after_call = [], []
    try:
        for i in range(writes):
            name = f"fn{i}"
            waiter.clear()
            called = time.perf_counter()
            await a.put(Table.CONCURRENCY, ("a", "r", name), {"reserved": i})
            committed = time.perf_counter()
            while name not in arrived:
                await asyncio.wait_for(waiter.wait(), 10)
                waiter.clear()
            after_commit.append(max(0.0, arrived[name] - committed))
            after_call.append(arrived[name] - called)
    finally:
        await a.close()
        await b.close()
    return after_commit, after_call


async def main(writes: int) -> None:
    server = PostgresServer(durable=True)
    server.start()
    try:
        url = server.database()
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = await store_ops(SqliteStore(Path(tmp) / "m.db"), writes)
        postgres = await store_ops(PostgresStore(server.database()), writes)
        commit, call = await feed(url, writes)
    finally:
        server.close()
    print(f"{writes} calls each; ms\n")
    print("| what | p50 | p99 | max |")
    print("|---|---|---|---|")
    print(row("SQLite get", sqlite[0]))
    print(row("SQLite put (one transaction)", sqlite[1]))
    print(row("PostgreSQL get", postgres[0]))
    print(row("PostgreSQL put (one transaction)", postgres[1]))
    print(row("change seen by another store, after the put returned", commit))
    print(row("change seen by another store, from the put's call", call))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=1000)
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no PostgreSQL here: {reason}")
    asyncio.run(main(parser.parse_args().writes))
