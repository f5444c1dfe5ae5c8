"""A node's grants of invocation slots from the cluster's concurrency ledger (docs/cluster.md).

On a shared store every invocation still takes a lease (``invoke/concurrency.py``), and also a
slot of its scope's *grant*: how many slots of the scope (a region's unreserved pool, or one
function's reservation) this node may fill without asking anyone. Filling a slot within the
grant costs nothing but a counter; only when the node's own count reaches its grant does it
claim a larger one from the ``ConcurrencyLedger``, one transaction that keeps the sum of every
node's grants within the limit. A slot given back stays in the grant for a while (``linger``:
a steady stream of invocations claims once, not per invocation); a keeper task shrinks each
grant to what the node used over the last ``linger`` and renews the node's grants every third of
the lease. A grant not renewed within the lease expires in the ledger: a node that dies holds
nothing once its lease has run out, and a node that cannot renew stops using its grants when
its own copy of the lease runs out (it counts from before each claim or renewal was sent,
so it always stops first).

A claim refused while other nodes hold grants on the scope asks them (``nudge``, over NATS in
a cluster: ``invoke/grant_nudges.py``) to give back the slots they hold and do not use, then
claims once more: a slot lingering idle on one node does not refuse an invocation on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable

from lambdad.store.base import StoreError
from lambdad.store.ledger import ConcurrencyLedger

log = logging.getLogger(__name__)

#: Seconds a slot stays in a node's grant after its last use.
LINGER = 1.0
#: Slots a claim asks for beyond the one it needs (it gets at most half of what is left).
SPARE = 4


class _Grant:
    __slots__ = ("granted", "limit", "lock", "peak", "used", "valid_until")

    def __init__(self) -> None:
        self.granted = 0
        #: The scope's limit when the grant was last claimed.
        self.limit = 0
        self.used = 0
        #: The most slots used at once since the keeper last looked.
        self.peak = 0
        #: When this node stops trusting the grant (its clock), unless renewed.
        self.valid_until = 0.0
        self.lock = asyncio.Lock()


class GrantsState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Grants:
    """This node's grants. ``node`` gives the node's id (known once the node described
    itself); ``lease`` is the node registry's lease (``node_lease``)."""

    def __init__(
        self,
        ledger: ConcurrencyLedger,
        node: Callable[[], str],
        lease: float,
        *,
        linger: float = LINGER,
        spare: int = SPARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._node_of = node
        self._node = ""
        self.lease = lease
        self._linger = linger
        self._spare = spare
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        self._keeper: asyncio.Task[None] | None = None
        #: Asks the nodes named to give back the idle slots of a scope (set in a cluster).
        self.nudge: Callable[[str, list[str]], Awaitable[None]] | None = None
        self.state = GrantsState.NEW

    async def start(self) -> None:
        if self.state is not GrantsState.NEW:
            return
        self._node = self._node_of()
        self.state = GrantsState.RUNNING
        self._keeper = asyncio.create_task(self._keep(), name="concurrency grants")

    def held(self, scope: str) -> tuple[int, int]:
        """(slots in use, slots granted) of ``scope`` on this node."""
        grant = self._grants.get(scope)
        return (0, 0) if grant is None else (grant.used, grant.granted)

    async def take(self, scope: str, limit: int) -> bool:
        """Fill one slot of ``scope``, whose limit is ``limit``: within this node's grant
        at no cost, else by claiming a larger grant; False when the ledger has none left.
        A limit lower than at the last claim claims again (the other nodes' grants may now
        fill it). ``StoreUnavailable`` when the ledger cannot be reached."""
        grant = self._grants.get(scope)
        if grant is None:
            grant = self._grants[scope] = _Grant()
        if (
            grant.used < grant.granted
            and limit >= grant.limit
            and self._clock() < grant.valid_until
        ):
            self._fill(grant)
            return True
        async with grant.lock:
            if (
                grant.used < grant.granted
                and limit >= grant.limit
                and self._clock() < grant.valid_until
            ):
                self._fill(grant)
                return True
            if self.state is not GrantsState.RUNNING:
                return False
            sent = self._clock()
            granted = await self._ledger.claim(
                self._node, scope, grant.used + 1, self._spare, limit, self.lease
            )
            if granted is None and await self._nudged(scope):
                sent = self._clock()
                granted = await self._ledger.claim(
                    self._node, scope, grant.used + 1, self._spare, limit, self.lease
                )
            if granted is None:
                return False
            grant.granted = granted
            grant.limit = limit
            grant.valid_until = sent + self.lease
            self._fill(grant)
            return True

    async def _nudged(self, scope: str) -> bool:
        """Ask the other nodes holding grants on ``scope`` to give back their idle slots;
        whether any was asked."""
        if self.nudge is None:
            return False
        others = [node for node in await self._ledger.grants(scope) if node != self._node]
        if others:
            await self.nudge(scope, others)
        return bool(others)

    async def trim_idle(self, scope: str) -> None:
        """Give back at once the slots of ``scope`` this node holds and does not use (another
        node was refused). Not while this node claims or trims the scope itself: a node that
        claims uses every slot it holds."""
        grant = self._grants.get(scope)
        if grant is None or grant.used >= grant.granted or grant.lock.locked():
            return
        async with grant.lock:
            keep = grant.peak = grant.used
            grant.granted = keep
            await self._ledger.release(self._node, scope, keep)

    @staticmethod
    def _fill(grant: _Grant) -> None:
        grant.used += 1
        if grant.used > grant.peak:
            grant.peak = grant.used

    def give(self, scope: str) -> None:
        """Empty one slot of ``scope`` (it stays granted until the keeper trims it)."""
        grant = self._grants.get(scope)
        if grant is not None and grant.used > 0:
            grant.used -= 1

    async def _keep(self) -> None:
        tick = min(self._linger, self.lease / 3)
        renewed = trimmed = self._clock()
        while True:
            await asyncio.sleep(tick)
            now = self._clock()
            try:
                if now - renewed >= self.lease / 3 - tick / 2:
                    await self._renew()
                    renewed = now
                if now - trimmed >= self._linger - tick / 2:
                    await self._trim()
                    trimmed = now
            except StoreError as exc:  # the ledger is back soon, or the grants expire
                log.warning("concurrency grants not kept: %s", exc)
            except Exception:  # the keeper must go on: without it every grant expires
                log.exception("keeping the concurrency grants failed")

    async def _renew(self) -> None:
        if not any(g.granted for g in self._grants.values()):
            return
        sent = self._clock()
        still = await self._ledger.renew(self._node, self.lease)
        for scope, grant in self._grants.items():
            if scope in still:
                grant.valid_until = sent + self.lease
            elif grant.valid_until < sent + self.lease:
                # Expired in the ledger (not renewed in time; not claimed since the renewal
                # was sent): the next take claims again.
                grant.granted = 0

    async def _trim(self) -> None:
        """Shrink each grant to the most slots used since the last trim (a slot lingers
        ``linger`` to ``2 * linger`` after its last use), and forget empty scopes."""
        for scope, grant in list(self._grants.items()):
            if grant.lock.locked():
                continue
            keep = max(grant.peak, grant.used)
            grant.peak = grant.used
            if keep < grant.granted:
                # Under the scope's lock, so no claim of this node lands in between; the
                # grant shrinks here first, so no take fills what is being given back.
                async with grant.lock:
                    grant.granted = keep
                    await self._ledger.release(self._node, scope, keep)
            if grant.granted == 0 and grant.used == 0 and not grant.lock.locked():
                self._grants.pop(scope, None)

    async def close(self) -> None:
        """Stop keeping the grants and give them all back (a ledger that cannot be reached
        lets them expire with the lease). Idempotent."""
        if self.state is GrantsState.CLOSED:
            return
        was_running = self.state is GrantsState.RUNNING
        self.state = GrantsState.CLOSED
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        self._grants.clear()
        if was_running:
            try:
                await self._ledger.drop(self._node)
            except StoreError as exc:
                log.warning("concurrency grants not given back (they expire): %s", exc)
