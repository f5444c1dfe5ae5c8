"""How the cluster's PostgreSQL store behaves as it grows (docs/cluster-scaling.md).

Run: ``PYTHONPATH=src python bench/cluster_store_scale.py [--functions 1000000]``. Starts its
own PostgreSQL (tests/postgres_server.py, commits waiting for the disk) and prints Markdown
tables for docs/benchmarks.md:

- **resolution**: one function's document read by key (what a node does when its cache
  misses), with a thousand functions stored and with ``--functions``, through ``PostgresStore``;
- **heartbeats**: node records upserted by 32 concurrent writers through one store's pool for
  a few seconds: the writes per second, so how many nodes one database carries at one heartbeat
  every 5 s (``node_lease`` 15 s);
- **change feed fan-out**: ``--listeners`` connections LISTENing on the feed's channel (one per
  node, as each node holds one), a writer sending notifications as fast as it can: how many
  each listener receives per second, and the delay from the NOTIFY's commit to its arrival at
  every listener. The listeners share this one Python process (on a 2-core machine, with
  the server): the figure is a floor of what separate nodes would each receive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from tests.postgres_server import PostgresServer, unavailable_reason

from lambdad.store.base import Table
from lambdad.store.keys import encode
from lambdad.store.postgres import PostgresStore
from lambdad.store.postgres_feed import CHANNEL

ACCOUNT, REGION = "000000000000", "us-east-1"


def document(name: str) -> dict[str, object]:
    return {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "MemorySize": 128,
        "Timeout": 3,
        "Role": "arn:aws:iam::000000000000:role/x",
        "CodeSha256": "x" * 44,
        "Environment": {"Variables": {"STAGE": "prod"}},
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def copy_functions(url: str, first: int, last: int) -> None:
    """Functions ``fn-<first>`` .. ``fn-<last - 1>`` written with COPY (fast; the store's own
    write path is measured elsewhere)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY docs (tbl, key, doc) FROM STDIN") as copy:
            for n in range(first, last):
                name = f"fn-{n}"
                key = encode((ACCOUNT, REGION, name))
                copy.write_row((Table.FUNCTIONS.value, key, json.dumps(document(name))))
        conn.commit()
        cur.execute("ANALYZE docs")
        conn.commit()


async def resolution(store: PostgresStore, stored: int, reads: int) -> list[float]:
    rng = random.Random(stored)
    times = []
    for _ in range(reads):
        key = (ACCOUNT, REGION, f"fn-{rng.randrange(stored)}")
        began = time.perf_counter()
        found = await store.get(Table.FUNCTIONS, key)
        times.append(time.perf_counter() - began)
        assert found is not None
    return times


async def heartbeats(store: PostgresStore, seconds: float, writers: int = 32) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def writer(n: int) -> None:
        nonlocal done
        beat = 0
        while time.perf_counter() < stop:
            beat += 1
            await store.put(
                Table.NODES,
                (f"node-{n:04d}",),
                {"role": "worker", "heartbeat": time.time(), "load": {"envs": beat % 50}},
            )
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    return done / (time.perf_counter() - began)


async def fan_out(url: str, listeners: int, seconds: float) -> tuple[float, float, float]:
    """(notifications received per listener per second, delay p50 and p99 in ms)."""
    conns = []
    for _ in range(listeners):
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute(f"LISTEN {CHANNEL}")
        conns.append(conn)
    delays: list[float] = []
    received = 0
    stop = asyncio.Event()

    async def listen(conn: psycopg.AsyncConnection) -> None:
        nonlocal received
        async for note in conn.notifies():
            if note.payload == "stop":
                return
            delays.append(time.time() - float(note.payload))
            received += 1

    tasks = [asyncio.create_task(listen(conn)) for conn in conns]
    sent = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as writer:
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            await writer.execute("SELECT pg_notify(%s, %s)", (CHANNEL, repr(time.time())))
            sent += 1
        elapsed = time.perf_counter() - began
        await writer.execute("SELECT pg_notify(%s, 'stop')", (CHANNEL,))
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for conn in conns:
        await conn.close()
    ms = [d * 1000 for d in delays]
    return received / listeners / elapsed, statistics.median(ms), pct(ms, 0.99)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--listeners", default="1,50,150", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot start PostgreSQL: {reason}")
    server = PostgresServer(durable=True)
    server.start()
    try:
        url = server.database()
        store = PostgresStore(url)
        await store.open()
        try:
            print("| functions stored | get p50 ms | get p99 ms |")
            print("|---|---|---|")
            copy_functions(url, 0, 1000)
            await resolution(store, 1000, 200)  # warm the pool and the plan
            small = await resolution(store, 1000, args.reads)
            print(
                f"| 1,000 | {statistics.median(small) * 1000:.3f} | {pct(small, 0.99) * 1000:.3f} |"
            )
            began = time.perf_counter()
            copy_functions(url, 1000, args.functions)
            loaded = time.perf_counter() - began
            big = await resolution(store, args.functions, args.reads)
            print(
                f"| {args.functions:,} | {statistics.median(big) * 1000:.3f} | "
                f"{pct(big, 0.99) * 1000:.3f} |   (loaded in {loaded:.0f} s)"
            )
            rate = await heartbeats(store, args.seconds)
            print(
                f"\nheartbeats: {rate:,.0f} node records written/s by 32 writers "
                f"(one pool of 10): {rate * 5:,.0f} nodes at one beat every 5 s"
            )
        finally:
            await store.close()
        print("\n| listeners | notifications/s each | delay p50 ms | delay p99 ms |")
        print("|---|---|---|---|")
        for count in (int(n) for n in args.listeners.split(",")):
            each, p50, p99 = await fan_out(url, count, args.seconds)
            print(f"| {count} | {each:,.0f} | {p50:.2f} | {p99:.2f} |")
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
