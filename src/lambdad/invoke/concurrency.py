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
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.concurrency import Reservations
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

    @contextlib.asynccontextmanager
    async def lease(self, scope: Scope, name: str) -> AsyncIterator[None]:
        """Hold a lease for one invocation of ``name``; TooManyRequestsException when none is
        left. The lease is returned however the block ends (errors, timeouts, cancellation)."""
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
        try:
            yield
        finally:
            self._running[key] -= 1
            if self._running[key] <= 0:
                del self._running[key]
            if pooled:
                self._pooled[scope] -= 1

    def _throttled(self, reason: str) -> errors.TooManyRequestsException:
        return errors.TooManyRequestsException(
            THROTTLED, reason=reason, retry_after=self._retry_after
        )
