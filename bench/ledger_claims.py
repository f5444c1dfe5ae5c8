"""What a claim on the concurrency ledger costs (cluster mode, docs/cluster.md).

Run: ``PYTHONPATH=src python bench/ledger_claims.py [--claims 2000]``. Starts its own PostgreSQL
(tests/postgres_server.py, PostgreSQL's default durability: commits wait for the disk) and prints
a Markdown table for docs/benchmarks.md. A claim is paid only when a node's grant of a scope
must grow (more invocations at once on that node than it holds slots for); a warm invoke within
the grant costs none (bench/ab_invoke.py --postgres measures that path).

- one node: a claim that grows the grant, then a release that shrinks it back, one after the
  other on one scope (each is one transaction);
- N nodes at once on one scope: N ledgers (N nodes' connections), each claiming and releasing
  in a loop on the same scope, which they take turns on (the scope's lock); claims per second
  over all of them;
- N nodes at once on N scopes (N functions' reservations): no turns to take.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres_server import PostgresServer, unavailable_reason

from lambdad.store.postgres_ledger import PostgresLedger

LEASE = 60.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def node_loop(ledger: PostgresLedger, node: str, scope: str, claims: int) -> list[float]:
    times = []
    for _ in range(claims):
        began = time.perf_counter()
        granted = await ledger.claim(node, scope, 1, 0, 1000, LEASE)
        times.append(time.perf_counter() - began)
        assert granted == 1
        await ledger.release(node, scope, 0)
    return times


async def together(url: str, nodes: int, claims: int, shared: bool) -> tuple[list[float], float]:
    ledgers = [PostgresLedger(url) for _ in range(nodes)]
    for ledger in ledgers:
        await ledger.open()
    try:
        began = time.perf_counter()
        runs = await asyncio.gather(
            *(
                node_loop(ledger, f"n{i}", "pool" if shared else f"fn{i}", claims // nodes)
                for i, ledger in enumerate(ledgers)
            )
        )
        elapsed = time.perf_counter() - began
    finally:
        for ledger in ledgers:
            await ledger.close()
    times = [t for run in runs for t in run]
    return times, len(times) / elapsed


async def main(claims: int) -> None:
    server = PostgresServer(durable=True)
    server.start()
    rows = []
    try:
        for nodes, shared in ((1, True), (4, True), (16, True), (16, False)):
            times, rate = await together(server.database(), nodes, claims, shared)
            ms = [t * 1000 for t in times]
            scopes = "one scope" if shared else f"{nodes} scopes"
            what = f"{nodes} node{'s' if nodes > 1 else ''}, {scopes}"
            rows.append(
                f"| {what} | {statistics.median(ms):.2f} | {percentile(ms, 0.99):.2f} "
                f"| {rate:.0f} |"
            )
    finally:
        server.close()
    print(f"{claims} claims (each followed by its release) per line\n")
    print("| claimers | claim p50 ms | claim p99 ms | claims/s (with releases) |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=2000)
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no PostgreSQL here: {reason}")
    asyncio.run(main(parser.parse_args().claims))
