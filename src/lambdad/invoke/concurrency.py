"""Concurrency leases: every invocation holds one while it runs.

A function with a reserved concurrency may hold that many leases at once, whatever version or
alias runs; the functions without one share the region's unreserved pool. When none is left
the invocation is refused with 429 ``TooManyRequestsException`` and the ``Reason`` AWS gives:
``ReservedFunctionConcurrentInvocationLimitExceeded`` for a reservation,
``ConcurrentInvocationLimitExceeded`` for the account. The counts live in this process; the
check and the count happen with no ``await`` between them, so the event loop makes them atomic.
An invocation served by a provisioned environment holds no lease: the environment is its
slot. On-demand invocations of a function with provisioned concurrency get what is left of its
reservation once the provisioned amount is taken out (``Reservations.on_demand``).

On a shared store (``SharedLeases``) a lease also fills a slot of this node's grant from the
cluster's ledger (``invoke/grants.py``), so the limits hold summed over every node.
"""

from __future__ import annotations

from collections import Counter

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.concurrency import Reservations
from lambdad.invoke.grants import Grants
from lambdad.observe.metrics import Metrics

RESERVED_LIMIT = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_LIMIT = "ConcurrentInvocationLimitExceeded"
#: The message AWS sends with either reason.
THROTTLED = "Rate Exceeded."


class Leases:
    def __init__(
        self, reservations: Reservations, retry_after: int = 1, metrics: Metrics | None = None
    ) -> None:
        self._reservations = reservations
        #: Told the account's pool at each lease (Unreserved and Claimed concurrency).
        self._metrics = metrics
        self._retry_after = retry_after
        #: (scope, function) -> invocations running, whichever pool they came from.
        self._running: Counter[tuple[Scope, str]] = Counter()
        #: scope (account and scope) -> invocations running on the unreserved pool.
        self._pooled: Counter[Scope] = Counter()

    def running(self, scope: Scope, name: str) -> int:
        return self._running[(scope, name)]

    def lease(self, scope: Scope, name: str) -> Lease:
        """``async with``: hold a lease for one invocation of ``name``; TooManyRequestsException
        when none is left. The lease is returned however the block ends (errors, timeouts,
        cancellation)."""
        return Lease(self, scope, name)

    async def _take(self, scope: Scope, name: str) -> bool:
        """Count one invocation of ``name`` (True: on the unreserved pool)."""
        reserved, unreserved = await self._reservations.on_demand(scope, name)
        key = (scope, name)
        pooled = reserved is None
        if reserved is not None and self._running[key] >= reserved:
            raise self._throttled(RESERVED_LIMIT)
        if pooled and self._pooled[scope] >= unreserved:
            raise self._throttled(ACCOUNT_LIMIT)
        self._running[key] += 1
        if pooled:
            self._pooled[scope] += 1
        if self._metrics is not None:
            in_pool = self._pooled[scope]
            claimed = in_pool + self._reservations.limit - unreserved
            self._metrics.pool(scope.account_id, scope.region, in_pool, claimed)
        return pooled

    def _give_back(self, scope: Scope, name: str, pooled: bool) -> None:
        key = (scope, name)
        self._running[key] -= 1
        if self._running[key] <= 0:
            del self._running[key]
        if pooled:
            self._pooled[scope] -= 1
            if self._metrics is not None:
                self._metrics.pool_released(scope.account_id, scope.region, self._pooled[scope])

    def _throttled(self, reason: str) -> errors.TooManyRequestsException:
        return errors.TooManyRequestsException(
            THROTTLED, reason=reason, retry_after=self._retry_after
        )


def grant_scope(scope: Scope, name: str, pooled: bool) -> str:
    """The ledger's name of what an invocation counts against: the region's unreserved pool,
    or the function's reservation."""
    if pooled:
        return f"pool/{scope.account_id}/{scope.region}"
    return f"reserved/{scope.account_id}/{scope.region}/{name}"


class SharedLeases(Leases):
    """Leases whose limits hold across every node of a shared store: each lease also fills a
    slot of this node's grant (``Grants``) of its pool or reservation."""

    def __init__(
        self,
        reservations: Reservations,
        grants: Grants,
        retry_after: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(reservations, retry_after, metrics)
        self.grants = grants

    async def _take(self, scope: Scope, name: str) -> bool:
        """A refusal reads the function's reservation from the store again (one key) and,
        if it changed, tries once more: a reservation put or deleted through another node a
        moment ago (its change not yet heard through the feed) applies to the next
        invocation, as on one node."""
        try:
            return await self._take_once(scope, name)
        except errors.TooManyRequestsException:
            if not await self._reservations.recheck(scope, name):
                raise
        return await self._take_once(scope, name)

    async def _take_once(self, scope: Scope, name: str) -> bool:
        pooled = await super()._take(scope, name)
        try:
            # The figures ``super()._take`` counted against, from the same cache (no store
            # read between the two: the first call filled it).
            reserved, unreserved = await self._reservations.on_demand(scope, name)
            limit = unreserved if pooled else (reserved or 0)
            granted = await self.grants.take(grant_scope(scope, name, pooled), limit)
        except BaseException:
            super()._give_back(scope, name, pooled)
            raise
        if not granted:
            super()._give_back(scope, name, pooled)
            raise self._throttled(ACCOUNT_LIMIT if pooled else RESERVED_LIMIT)
        return pooled

    def _give_back(self, scope: Scope, name: str, pooled: bool) -> None:
        super()._give_back(scope, name, pooled)
        self.grants.give(grant_scope(scope, name, pooled))


class Lease:
    """One invocation's lease (``Leases.lease``): a class rather than a generator-based
    context manager, as it is taken on every invocation."""

    __slots__ = ("_leases", "_name", "_pooled", "_scope")

    def __init__(self, leases: Leases, scope: Scope, name: str) -> None:
        self._leases = leases
        self._scope = scope
        self._name = name
        self._pooled: bool | None = None

    async def __aenter__(self) -> None:
        self._pooled = await self._leases._take(self._scope, self._name)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pooled is not None:
            self._leases._give_back(self._scope, self._name, self._pooled)
            self._pooled = None
