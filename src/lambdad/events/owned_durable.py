"""Durable executions of a cluster, each driven by one node: the holder of its shard's claim.

Executions are spread over ``SHARDS`` claims, ``durable.<n>`` (events/owners.py), by a hash of
their key. The node holding a shard resumes the shard's running executions when it gains it
(their timers are their records: docs/durable-functions.md) and stops driving them when it
loses it; ``DurableEngine``'s ``gate`` keeps it from driving an execution of another shard (one
it began itself, or was woken for): the holder hears of it through the store's feed. An
``api`` node drives none (``NEVER``).
"""

from __future__ import annotations

import hashlib

from lambdad.events.durable import DurableEngine
from lambdad.events.owners import Owners
from lambdad.store.base import Key

#: How many claims the executions are spread over.
SHARDS = 16
#: The claims' prefix.
PREFIX = "durable."


def shard_of(key: Key) -> int:
    """The shard of the execution ``key``: the same on every node."""
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest) % SHARDS


def never(key: Key) -> bool:
    """The gate of a node that drives no execution (role ``api``)."""
    return False


class OwnedDurable:
    """Drives the executions of the shards this node holds."""

    def __init__(self, owners: Owners, engine: DurableEngine) -> None:
        self._owners = owners
        self._engine = engine

    def drives(self, key: Key) -> bool:
        """Whether this node drives the execution ``key`` now."""
        return self._owners.holds(f"{PREFIX}{shard_of(key)}")

    async def start(self) -> None:
        """Want every shard (the owners spread them over the nodes)."""
        for shard in range(SHARDS):
            self._owners.want(f"{PREFIX}{shard}", self)

    async def close(self) -> None:
        for shard in range(SHARDS):
            self._owners.unwant(f"{PREFIX}{shard}")

    async def gained(self, claim: str) -> None:
        shard = int(claim.removeprefix(PREFIX))
        await self._engine.drive(lambda key: shard_of(key) == shard)

    async def lost(self, claim: str) -> None:
        shard = int(claim.removeprefix(PREFIX))
        await self._engine.halt(lambda key: shard_of(key) == shard)
