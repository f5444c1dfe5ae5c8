"""Which node runs what, in a cluster: each poller and the time triggers on exactly one node.

Work that must run on one node at a time (an event source mapping's poller, the schedules)
is named by a key. Parts that hold such work ``want`` its key with a :class:`Holder`;
:class:`Owners` claims keys in the cluster's claims bucket (``store/nats_owners.py``: create
if absent, renew by revision, a TTL as the lease) and calls ``gained`` once this node holds a
key and ``lost`` once it no longer may run the work (before giving the key up, so two nodes
never run it at once while both are alive and reachable).

Keys spread over the nodes by rendezvous hashing: every node that takes work holds a
membership key ``node.<id>``, and a key's preferred node is the member that scores highest
for it. A node claims a free key it is preferred for at once, and any other free key once it
has seen it free for a whole lease (its preferred node does not want it: it may not know the
work yet); it gives up a key whose preferred node is another live member (a node joined),
which then claims it. A node that dies frees its keys when their lease runs out; a node that
stops cleanly releases them at once, and the others hear it through the bucket's watch.

Fencing by time: the work of a key is this node's only while ``now < last renewal +
FENCE * lease`` (``holds`` answers so, and a watchdog stops the work at that moment, whatever
the turn is doing: a turn slowed by a loaded host or a slow bucket cannot keep work running
past it). "Last renewal" is the time the renewing request was *sent*; the server starts the
lease's TTL when it stores the write, later, so the claim lasts at least a whole lease past
it and no other node can claim the key before ``last renewal + lease``. Renewals come every
quarter lease and a request may take another quarter (``store/nats_owners.py``'s timeout), so
a healthy holder renews by half the lease; ``FENCE`` = 0.6 leaves that one late renewal of
slack, and the remaining 0.4 of the lease for the work to stop (a durable invocation under way
is waited for, ``DurableEngine.halt``) before another node may start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from lambdad.store.base import StoreError

log = logging.getLogger(__name__)

#: Keys of the nodes that take work: ``node.<id>``.
MEMBER = "node."
#: Part of the lease between two renewals (and two reads of the bucket when nothing happens).
_TICKS_PER_LEASE = 4
#: Part of the lease after the last renewal when a node stops work it could not renew
#: (the module's docstring says why this much).
FENCE = 0.6


class HeldClaim(Protocol):
    """A key's holder as the bucket says."""

    @property
    def owner(self) -> str: ...

    @property
    def revision(self) -> int: ...


class ClaimBucket(Protocol):
    """The cluster's claims (``store/nats_owners.py``'s ``NatsClaims``)."""

    lease: float
    changed: asyncio.Event

    async def claims(self) -> Mapping[str, HeldClaim]: ...

    async def claim(self, key: str, owner: str) -> int | None: ...

    async def renew(self, key: str, owner: str, revision: int) -> int | None: ...

    async def release(self, key: str, revision: int) -> None: ...


class Holder(Protocol):
    """What runs the work of keys it wants while this node holds them."""

    async def gained(self, key: str) -> None: ...

    async def lost(self, key: str) -> None: ...


def weight(key: str, node: str) -> bytes:
    """Rendezvous score of ``node`` for ``key`` (the highest wins)."""
    return hashlib.blake2b(f"{key}|{node}".encode(), digest_size=8).digest()


def preferred(key: str, members: set[str]) -> str:
    """The member that should hold ``key``."""
    return max(members, key=lambda node: weight(key, node))


@dataclasses.dataclass(slots=True)
class _Held:
    revision: int
    renewed: float


class OwnersState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Owners:
    """This node's claims: what it holds, what it wants, and the loop that keeps them."""

    def __init__(
        self, bucket: ClaimBucket, node: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._bucket = bucket
        self.node = node
        self._clock = clock
        self._member = MEMBER + node
        self._wanted: dict[str, Holder] = {}
        self._held: dict[str, _Held] = {}
        self._free_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._fencing: asyncio.Task[None] | None = None
        self._fenced = asyncio.Event()
        self._ticking = asyncio.Lock()
        self.state = OwnersState.NEW

    @property
    def lease(self) -> float:
        return self._bucket.lease

    def want(self, key: str, holder: Holder) -> None:
        """Run ``key``'s work through ``holder`` whenever this node holds ``key``."""
        if self._wanted.get(key) is not holder:
            self._wanted[key] = holder
            self._bucket.changed.set()

    def unwant(self, key: str) -> None:
        """No more work under ``key``: give it up at the next turn (its holder stopped it)."""
        if self._wanted.pop(key, None) is not None:
            self._bucket.changed.set()

    def holds(self, key: str) -> bool:
        """Whether this node holds ``key`` now: claimed, and renewed within the fence."""
        held = self._held.get(key)
        return held is not None and self._clock() < held.renewed + self.lease * FENCE

    def held(self) -> list[str]:
        """The work keys this node holds (not its membership)."""
        return sorted(k for k in self._held if k != self._member)

    async def start(self) -> None:
        """Join (the membership key), take what is this node's, then keep it up to date."""
        if self.state is not OwnersState.NEW:
            raise RuntimeError(f"owners are {self.state.value}")
        self.state = OwnersState.RUNNING
        try:
            await self._tick()
        except StoreError as exc:
            log.error("claims: %s", exc)
        self._task = asyncio.create_task(self._run(), name="owners")
        self._fencing = asyncio.create_task(self._fence(), name="owners-fence")

    async def close(self) -> None:
        """Stop every held key's work, then release the keys and leave. Idempotent."""
        if self.state is OwnersState.CLOSED:
            return
        self.state = OwnersState.CLOSED
        for task in (self._task, self._fencing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._ticking:
            for key in [k for k in self._held if k != self._member]:
                await self._drop(key)
            held = self._held.pop(self._member, None)
            if held is not None:
                with contextlib.suppress(StoreError):
                    await self._bucket.release(self._member, held.revision)

    async def _run(self) -> None:
        changed = self._bucket.changed
        while self.state is OwnersState.RUNNING:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel
            # that comes as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease / _TICKS_PER_LEASE):
                    await changed.wait()
            changed.clear()
            try:
                await self._tick()
            except StoreError as exc:
                log.warning("claims: %s", exc)
                await self._stale()
                await asyncio.sleep(self.lease / _TICKS_PER_LEASE / 2)
            except Exception:
                log.exception("claims: a turn failed")
                await asyncio.sleep(self.lease / _TICKS_PER_LEASE / 2)

    async def _fence(self) -> None:
        """Stop each key's work once its last renewal is ``FENCE`` of the lease old, at that
        moment (not at the next turn, which may be late)."""
        while self.state is OwnersState.RUNNING:
            work = [(k, h.renewed) for k, h in self._held.items() if k != self._member]
            if work:
                wait = min(renewed for _, renewed in work) + self.lease * FENCE - self._clock()
            else:
                wait = self.lease * FENCE
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._fenced.wait()
                self._fenced.clear()
                continue
            await self._stale()

    async def _tick(self) -> None:
        async with self._ticking:
            if self.state is not OwnersState.RUNNING:
                return
            await self._keep_membership()
            claims = await self._bucket.claims()
            members = {k[len(MEMBER) :] for k in claims if k.startswith(MEMBER)} | {self.node}
            await self._renew(claims)
            await self._give_up(members)
            await self._take(claims, members)

    async def _keep_membership(self) -> None:
        if self._member in self._held:
            return
        revision = await self._bucket.claim(self._member, self.node)
        if revision is None:  # ours from before a restart (same node id), or a stale one
            claims = await self._bucket.claims()
            found = claims.get(self._member)
            if found is not None:
                revision = await self._bucket.renew(self._member, self.node, found.revision)
        if revision is not None:
            self._held[self._member] = _Held(revision, self._clock())

    async def _renew(self, claims: Mapping[str, HeldClaim]) -> None:
        """Renew what is due; a key found changed (expired, taken) is lost."""
        now = self._clock()
        for key, held in list(self._held.items()):
            found = claims.get(key)
            if found is None or found.revision != held.revision:
                log.warning("claim %s was lost (expired or taken)", key)
                await self._lost(key)
                continue
            if now - held.renewed < self.lease / _TICKS_PER_LEASE:
                continue
            revision = await self._bucket.renew(key, self.node, held.revision)
            if revision is None:
                log.warning("claim %s could not be renewed: lost", key)
                await self._lost(key)
            elif self._held.get(key) is not held:
                # Its work was stopped (fenced) while the renewal was under way: give the
                # claim up rather than run the work again unannounced.
                with contextlib.suppress(StoreError):
                    await self._bucket.release(key, revision)
            else:
                self._held[key] = _Held(revision, now)

    async def _give_up(self, members: set[str]) -> None:
        """Release keys nobody wants any more, and keys another live member should hold."""
        for key in [k for k in self._held if k != self._member]:
            if key not in self._wanted or preferred(key, members) != self.node:
                await self._drop(key)

    async def _take(self, claims: Mapping[str, HeldClaim], members: set[str]) -> None:
        now = self._clock()
        for key, holder in list(self._wanted.items()):
            if key in self._held:
                continue
            found = claims.get(key)
            if found is not None:
                self._free_since.pop(key, None)
                if found.owner != self.node:
                    continue
                # Ours from before a restart (the same node id): renew it, or it is lost.
                revision = await self._bucket.renew(key, self.node, found.revision)
            else:
                since = self._free_since.setdefault(key, now)
                if preferred(key, members) != self.node and now - since < self.lease:
                    continue
                revision = await self._bucket.claim(key, self.node)
            if revision is None:
                continue
            self._free_since.pop(key, None)
            self._held[key] = _Held(revision, now)
            self._fenced.set()  # the watchdog's next deadline may be this one's
            started = await self._call(holder.gained, key)
            if not started or self._wanted.get(key) is not holder:
                # The work did not start (tried again at a later turn, here or elsewhere),
                # or is unwanted since.
                await self._drop(key)

    async def _drop(self, key: str) -> None:
        """Stop the work, then release the key."""
        held = self._held.get(key)
        await self._lost(key)
        if held is not None:
            with contextlib.suppress(StoreError):
                await self._bucket.release(key, held.revision)

    async def _lost(self, key: str) -> None:
        """The key is no longer this node's: stop its work."""
        if self._held.pop(key, None) is None or key == self._member:
            return
        holder = self._wanted.get(key)
        if holder is not None:
            await self._call(holder.lost, key)

    async def _stale(self) -> None:
        """Stop the work of keys not renewed within the fence (others may take them soon)."""
        now = self._clock()
        stale = [
            (key, held)
            for key, held in self._held.items()
            if key != self._member and held.renewed <= now - self.lease * FENCE
        ]
        for key, held in stale:
            log.warning("claim %s not renewed for %.2f s: stopping it", key, now - held.renewed)
        # Side by side: one key's slow stop (a durable handler waited for) must not hold up
        # the others'.
        await asyncio.gather(*(self._lost(key) for key, _ in stale))

    async def _call(self, step: Callable[[str], Awaitable[None]], key: str) -> bool:
        """Run a holder's ``gained`` or ``lost``: whether it returned without an error."""
        try:
            await step(key)
        except Exception:
            log.exception("claim %s: the work's %s failed", key, getattr(step, "__name__", ""))
            return False
        return True
