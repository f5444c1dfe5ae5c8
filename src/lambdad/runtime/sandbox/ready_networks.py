"""Cells' networks made ahead of need (Linux sandbox): network namespaces, each with its veth
pair on lambdad's bridge, its address and route, held open by lambdad until a cell joins one.

Making a cell's network takes several requests under the kernel's rtnl lock (a namespace, a
veth pair, addresses, a route), which the kernel carries out one cell at a time: in a burst
of cold starts beyond the spare cells, the last cells waited for the others' set-up
(``docs/benchmarks.md``). A ``ReadyNetworks`` pool keeps ``target`` of them made: a cell made
for a burst then joins one (``setns``, no lock) instead of making its own.

The namespaces are made by a child of the main sandbox helper at the lowest CPU priority, in
batches (one fork per batch), when lambdad starts and again once no network has been taken
for ``QUIET`` seconds (so refilling never competes with the burst that emptied the pool).
Each is used once: a cell joins it, lambdad closes its descriptor, and the namespace goes
away with the cell's last process, as a namespace made by the cell would. When the pool is
empty a cell makes its own, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from lambdad.runtime.sandbox.network import CellLink, CellNetwork

#: Networks kept made ahead when the settings do not say (``cell_networks_ahead``).
DEFAULT_TARGET = 128
#: Made per request to the helper (one fork each, descriptors in one message).
BATCH = 32
#: Seconds without a take before the pool is refilled.
QUIET = 1.0


class ReadyState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclasses.dataclass(slots=True)
class ReadyNetwork:
    """A network namespace made ahead: its link (address, host end) and lambdad's descriptor."""

    link: CellLink
    fd: int


#: ``make(links)``: the descriptors of the namespaces made for ``links``, in order (fewer
#: when some could not be made; ``OSError`` when none could).
Maker = Callable[[Sequence[CellLink]], Awaitable[list[int]]]


class ReadyNetworks:
    def __init__(self, network: CellNetwork, target: int, make: Maker) -> None:
        self._network = network
        self.target = target
        self._make = make
        self._ready: list[ReadyNetwork] = []
        self._filling: asyncio.Task[None] | None = None
        self._last_take = 0.0
        self.state = ReadyState.OPEN

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def filling(self) -> bool:
        return self._filling is not None and not self._filling.done()

    def take(self) -> ReadyNetwork | None:
        """A network made ahead (the caller owns its descriptor), or None when none is left."""
        self._last_take = time.monotonic()
        ready = self._ready.pop() if self._ready else None
        self.refill()
        return ready

    def refill(self) -> None:
        """Make networks up to ``target`` in the background, once takes have paused."""
        if self.state is not ReadyState.OPEN or not self._network.active or self.target <= 0:
            return
        if len(self._ready) < self.target and not self.filling:
            self._filling = asyncio.create_task(self._fill(), name="ready-networks")

    async def settle(self) -> None:
        """Wait until no network is being made."""
        while self.filling and self._filling is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._filling)

    async def _fill(self) -> None:
        while self.state is ReadyState.OPEN and len(self._ready) < self.target:
            # A pause, not a synchronisation: refilling waits for the takes to stop.
            wait = self._last_take + QUIET - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            links = self._links(min(BATCH, self.target - len(self._ready)))
            made: list[int] = []
            try:
                made = await self._make(links) if links else []
            except OSError:
                return  # cells make their own network meanwhile; the next take retries
            finally:
                for link in links[len(made) :]:
                    self._network.release(link)
            ready = [ReadyNetwork(link, fd) for link, fd in zip(links, made, strict=False)]
            if self.state is not ReadyState.OPEN:
                self._discard(ready)
                return
            self._ready.extend(ready)
            if not links or len(made) < len(links):
                return

    def _links(self, count: int) -> list[CellLink]:
        """Addresses (and host interface names) for ``count`` new networks, as many as free."""
        links = []
        for _ in range(count):
            try:
                link = self._network.allocate(uuid.uuid4().hex[:12])
            except OSError:
                break
            if link is None:
                break
            links.append(link)
        return links

    def _discard(self, ready: list[ReadyNetwork]) -> None:
        for item in ready:
            with contextlib.suppress(OSError):
                os.close(item.fd)
            self._network.release(item.link)

    async def close(self) -> None:
        """Stop making networks and close every namespace held. Idempotent."""
        if self.state is ReadyState.CLOSED:
            return
        self.state = ReadyState.CLOSED
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._filling
        ready, self._ready = self._ready, []
        self._discard(ready)
