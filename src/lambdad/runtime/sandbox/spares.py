"""Things made ahead of need, so that a cold start does not wait for them: the one spare pool.

A sandbox helper keeps spare cells (namespaces and cgroups made, ``helper.py``); a SnapStart
template keeps spare forks (forked, placed, ``template.py``). Both are a ``SparePool``: up to
``target`` items, made one at a time in the background when ``refill`` is called, handed out by
``take`` (or made on the spot when none is left), and discarded on ``close``.

When to refill is the owner's decision: making a spare competes for the CPUs with the cold
start that took the last one, so owners refill once that start's init is over (and a helper
also as soon as its last spare is taken: bursts of cold starts need cells faster than inits end).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SparesState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class SparePool(Generic[T]):
    def __init__(
        self,
        target: int,
        make: Callable[[bool], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        *,
        name: str,
        refill_when_emptied: bool = False,
    ) -> None:
        """``make(background)`` makes one (``OSError`` when it cannot); ``discard`` ends one."""
        self.target = target
        self._make = make
        self._discard = discard
        self._name = name
        self._refill_when_emptied = refill_when_emptied
        self._items: list[T] = []
        self._filling: asyncio.Task[None] | None = None
        self.state = SparesState.OPEN

    def __len__(self) -> int:
        return len(self._items)

    async def take(self) -> T:
        """A spare, or one made now (``OSError`` when it cannot be)."""
        if self._items:
            item = self._items.pop()
            if not self._items and self._refill_when_emptied:
                self.refill()
            return item
        if self._refill_when_emptied:
            self.refill()
        return await self._make(False)

    def refill(self) -> None:
        """Make spares up to ``target`` in the background (one filler at a time)."""
        if self.state is not SparesState.OPEN:
            return
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill(), name=self._name)

    async def _fill(self) -> None:
        while len(self._items) < self.target and self.state is SparesState.OPEN:
            try:
                item = await self._make(True)
            except OSError:
                return  # the next take makes its own and says why if it cannot
            if self.state is not SparesState.OPEN:
                await self._discard(item)
                return
            self._items.append(item)

    @property
    def filling(self) -> bool:
        return self._filling is not None and not self._filling.done()

    async def settle(self) -> None:
        """Wait until no spare is being made."""
        while self._filling is not None and not self._filling.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._filling)

    async def close(self) -> None:
        """Stop filling and discard every spare. Idempotent."""
        if self.state is SparesState.CLOSED:
            return
        self.state = SparesState.CLOSED
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        items, self._items = self._items, []
        for item in items:
            await self._discard(item)
