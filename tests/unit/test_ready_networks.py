"""The pool of cells' networks made ahead (``ready_networks.py``): it makes up to its target in
batches, hands each out once, and closes what it still holds (descriptors and addresses)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from lambdad.runtime.sandbox import ready_networks
from lambdad.runtime.sandbox.network import CellLink, CellNetwork, NetworkState
from lambdad.runtime.sandbox.ready_networks import ReadyNetworks, ReadyState


def running_network(tmp_path: Path) -> CellNetwork:
    """A ``CellNetwork`` that allocates addresses, without building anything on the host."""
    network = CellNetwork(tmp_path)
    network.subnet = ipaddress.IPv4Network("10.222.4.0/22")
    network.gateway = "10.222.4.1"
    network.state = NetworkState.RUNNING
    return network


class Maker:
    """Stands in for the sandbox helper: a descriptor (of /dev/null) per link asked for."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.batches: list[int] = []
        self.made: list[int] = []
        self._fail_after = fail_after

    async def __call__(self, links: Sequence[CellLink]) -> list[int]:
        self.batches.append(len(links))
        count = len(links)
        if self._fail_after is not None:
            count = min(count, max(0, self._fail_after - len(self.made)))
            if count == 0:
                raise OSError("cannot make more")
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]
        self.made += fds
        return fds


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_fills_in_batches_hands_each_out_once_and_closes_the_rest(tmp_path: Path) -> None:
    """Up to the target in batches of ``BATCH``; each network is taken once, with its own
    address; close shuts the descriptors left and frees their addresses."""

    async def scenario() -> None:
        network = running_network(tmp_path)
        maker = Maker()
        pool = ReadyNetworks(network, ready_networks.BATCH + 3, maker)
        pool.refill()
        await pool.settle()
        assert len(pool) == ready_networks.BATCH + 3
        assert maker.batches == [ready_networks.BATCH, 3]
        first, second = pool.take(), pool.take()
        assert first is not None
        assert second is not None
        assert first.fd != second.fd
        assert first.link.address != second.link.address
        assert len(network._used) == ready_networks.BATCH + 3
        await pool.close()
        assert pool.state is ReadyState.CLOSED
        assert pool.take() is None
        held = {first.fd, second.fd}
        assert [fd for fd in maker.made if is_open(fd)] == sorted(held, key=maker.made.index)
        assert len(network._used) == 2  # the two taken: released with their cells
        for fd in held:
            os.close(fd)

    asyncio.run(scenario())


def test_what_could_not_be_made_frees_its_address_and_cells_make_their_own(
    tmp_path: Path,
) -> None:
    """When the helper makes fewer than asked (or none), the pool keeps what was made, frees
    the other addresses and stops until the next take; an empty pool hands out None."""

    async def scenario() -> None:
        network = running_network(tmp_path)
        pool = ReadyNetworks(network, 10, Maker(fail_after=4))
        pool.refill()
        await pool.settle()
        assert len(pool) == 4
        assert len(network._used) == 4
        taken = [pool.take() for _ in range(5)]
        assert taken[-1] is None
        await pool.close()
        for ready in taken[:4]:
            assert ready is not None
            os.close(ready.fd)

    asyncio.run(scenario())


def test_nothing_is_made_where_the_walls_are_not_built(tmp_path: Path) -> None:
    """Cells sharing the host's network need no namespace: the pool makes none."""

    async def scenario() -> None:
        maker = Maker()
        pool = ReadyNetworks(CellNetwork(tmp_path, enabled=False), 8, maker)
        pool.refill()
        await pool.settle()
        assert len(pool) == 0
        assert maker.batches == []
        await pool.close()

    asyncio.run(scenario())
