"""The scaling rate shared by a cluster's nodes (docs/cluster.md, "The scaling rate").

Each function has one token bucket for the whole cluster, in the concurrency ledger
(``ConcurrencyLedger.take_tokens``, refilled on the ledger's clock). A node starting a new
environment spends a token it holds; when it holds none it takes a batch from the ledger (the
one it needs and up to ``spare`` more, never more than half of what the bucket has left after
it, so near the limit a node takes only what it uses). Tokens a node took and did not use
within ``linger`` go back to the bucket; a node that dies loses what it held (the bucket
refills them within a window). Warm and provisioned environments take no token. Each node's
keeper also deletes, now and then, the buckets untouched for a window (full again: a deleted
function's bucket goes too).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable

from lambdad.runtime.scaling import DEFAULT_RATE, DEFAULT_WINDOW, ScaleRate, throttled
from lambdad.runtime.spec import Place
from lambdad.store.base import StoreError
from lambdad.store.ledger import ConcurrencyLedger

log = logging.getLogger(__name__)

#: Seconds a node keeps tokens it took and did not use.
LINGER = 1.0
#: Tokens a take asks for beyond the one it needs.
SPARE = 4
#: Seconds between sweeps of the buckets untouched for a window (at least a window apart).
SWEEP_EVERY = 60.0


class _Held:
    __slots__ = ("count", "lock", "until")

    def __init__(self) -> None:
        self.count = 0
        self.until = 0.0
        self.lock = asyncio.Lock()


class SharedState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def token_scope(place: Place, function: str) -> str:
    return f"scale/{place.account_id}/{place.region}/{function}"


class SharedScaleRate(ScaleRate):
    """Scaling tokens from ``ledger``'s buckets; ``start`` runs the task that gives back
    tokens held too long, ``close`` gives back every token held."""

    def __init__(
        self,
        ledger: ConcurrencyLedger,
        rate: int = DEFAULT_RATE,
        window: float = DEFAULT_WINDOW,
        *,
        linger: float = LINGER,
        spare: int = SPARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate, window)
        self._ledger = ledger
        self._linger = linger
        self._spare = spare
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._keeper: asyncio.Task[None] | None = None
        self.state = SharedState.NEW

    async def start(self) -> None:
        if self.state is SharedState.NEW:
            self.state = SharedState.RUNNING
            self._keeper = asyncio.create_task(self._keep(), name="scaling tokens")

    async def take(self, place: Place, function: str) -> None:
        """Spend a token held, else take a batch from the ledger; the throttle when its bucket
        has none. ``StoreUnavailable`` when the ledger cannot be reached."""
        scope = token_scope(place, function)
        held = self._held.get(scope)
        if held is None:
            held = self._held[scope] = _Held()
        if self._spend(held):
            return
        async with held.lock:
            if self._spend(held):
                return
            granted, wait = await self._ledger.take_tokens(
                scope, 1, self._spare, self.rate, self.window
            )
            if granted < 1:
                raise throttled(wait)
            held.count = granted - 1
            held.until = self._clock() + self._linger

    def _spend(self, held: _Held) -> bool:
        if held.count > 0 and self._clock() < held.until:
            held.count -= 1
            return True
        return False

    def forget(self, place: Place, function: str) -> None:
        """The cluster's bucket outlives a change of the function on one node."""

    async def _keep(self) -> None:
        swept = self._clock()
        while True:
            await asyncio.sleep(self._linger)
            try:
                await self._give_back(lambda held: held.until <= self._clock())
                if self._clock() - swept >= max(self.window, SWEEP_EVERY):
                    swept = self._clock()
                    await self._ledger.sweep_tokens(self.window)
            except StoreError as exc:  # back soon; tokens not given back refill anyway
                log.warning("scaling tokens not kept: %s", exc)
            except Exception:  # the keeper goes on
                log.exception("keeping the scaling tokens failed")

    async def _give_back(self, due: Callable[[_Held], bool]) -> None:
        for scope, held in list(self._held.items()):
            if held.lock.locked() or not due(held):
                continue
            count, held.count = held.count, 0
            self._held.pop(scope, None)
            if count > 0:
                try:
                    await self._ledger.give_tokens(scope, count, self.rate)
                except StoreError as exc:
                    log.warning("scaling tokens not given back (they refill): %s", exc)

    async def close(self) -> None:
        """Stop the keeper and give back every token held. Idempotent."""
        if self.state is SharedState.CLOSED:
            return
        was_running = self.state is SharedState.RUNNING
        self.state = SharedState.CLOSED
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if was_running:
            await self._give_back(lambda held: True)
