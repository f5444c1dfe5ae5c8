"""Reserved concurrency: the share of a region's concurrent executions a function keeps.

The account may run ``limit`` invocations at once per region. A function with a reservation
runs at most that many (0 stops it), across all its versions and aliases; the functions
without one share the rest, the unreserved pool, of which AWS always keeps at least
``MIN_UNRESERVED`` (the whole limit when it is lower, as on a new account with 10: nothing can
be reserved there). Reservations are documents in ``Table.CONCURRENCY`` keyed
``(account, region, name)``; a per-region cache answers the invoke path without a store read, and is
dropped whenever a function changes (a deleted function takes its reservation with it).
Provisioned concurrency (``provisioned.py``) counts inside a function's reservation, and for a
function without one it is taken from the unreserved pool, as on AWS.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.changes import Change, FunctionDeleted
from lambdad.control.functions import Functions
from lambdad.control.model import LATEST
from lambdad.store.base import Store, StoreChange, Table

#: Concurrent executions AWS never lets reservations take from the unreserved pool.
MIN_UNRESERVED = 100
#: Not AWS's verified wording: a reservation below the function's provisioned concurrency.
BELOW_PROVISIONED = (
    "Specified ReservedConcurrentExecutions for function is less than the function's "
    "provisioned concurrency."
)


class Reservations:
    """Put, get and delete a function's reserved concurrency; the account's figures."""

    def __init__(self, store: Store, functions: Functions, limit: int) -> None:
        self._store = store
        self._functions = functions
        self.limit = limit
        #: What reservations must leave to the unreserved pool.
        self.minimum_unreserved = min(MIN_UNRESERVED, limit)
        self._cache: dict[Scope, dict[str, int]] = {}
        #: scope -> function -> provisioned concurrency its configs ask for.
        self._provisioned: dict[Scope, Counter[str]] = {}
        self._lock = asyncio.Lock()
        functions.changes.subscribe(self._function_changed)

    async def _function_changed(self, change: Change) -> None:
        if isinstance(change, FunctionDeleted):
            self.forget(change.scope)

    def forget(self, scope: Scope) -> None:
        """Drop the scope's cached figures (provisioned concurrency configs changed)."""
        self._cache.pop(scope, None)
        self._provisioned.pop(scope, None)

    async def recheck(self, scope: Scope, name: str) -> bool:
        """Read the function's reservation from the store again; when it differs from the
        cached one (a write through another node whose change the feed has not brought
        yet), forget the scope's figures. Whether they were forgotten."""
        cached = self._cache.get(scope)
        if cached is None:
            return False
        doc = await self._store.get(Table.CONCURRENCY, scope.key(name))
        stored = None if doc is None else int(doc["reserved"])
        if self._cache.get(scope) is not cached or cached.get(name) == stored:
            return False
        self.forget(scope)
        return True

    def forget_stored(self, change: StoreChange) -> None:
        """Drop the figures another node's write (``Store.subscribe``) may have made stale."""
        if change.table not in (None, Table.CONCURRENCY, Table.PROVISIONED):
            return
        if change.table is not None and len(change.key) >= 2:
            self.forget(Scope(change.key[0], change.key[1]))
            return
        self._cache.clear()
        self._provisioned.clear()

    async def _region(self, scope: Scope) -> dict[str, int]:
        cached = self._cache.get(scope)
        if cached is None:
            rows = await self._store.scan(Table.CONCURRENCY, scope.key())
            cached = {key[2]: int(doc["reserved"]) for key, doc in rows}
            provisioned: Counter[str] = Counter()
            for key, doc in await self._store.scan(Table.PROVISIONED, scope.key()):
                provisioned[key[2]] += int(doc["requested"])
            self._cache[scope] = cached
            self._provisioned[scope] = provisioned
        return cached

    async def provisioned(self, scope: Scope, name: str) -> int:
        """The provisioned concurrency the function's configs ask for, all together."""
        await self._region(scope)
        return self._provisioned[scope][name]

    async def _taken(self, scope: Scope, excluding: str | None) -> int:
        """What reservations, and the configs of functions without one, take from the limit."""
        reserved = await self._region(scope)
        provisioned = self._provisioned[scope]
        return sum(n for fn, n in reserved.items() if fn != excluding) + sum(
            n for fn, n in provisioned.items() if fn not in reserved and fn != excluding
        )

    async def _name(self, scope: Scope, raw_name: str) -> str:
        """The function ``raw_name`` (a name or ARN, unqualified) names, which must exist."""
        name, qualifier = self._functions.name_of(scope, raw_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Concurrency settings apply to the function as a whole; "
                "a qualified function name is not supported."
            )
        await self._functions.record(scope, name)
        return name

    async def put(self, scope: Scope, raw_name: str, value: int) -> int:
        """Reserve ``value`` executions (0 or more, as the model checks) for the function;
        InvalidParameterValueException when that would leave less than
        ``minimum_unreserved`` unreserved."""
        try:
            name = await self._name(scope, raw_name)
        except errors.ResourceNotFoundException:  # AWS names $LATEST here, unlike Get/Delete
            missing, _ = self._functions.name_of(scope, raw_name)
            raise errors.ResourceNotFoundException(
                f"Function not found: {scope.function_arn(missing, LATEST)}"
            ) from None
        async with self._lock:
            reserved = await self._region(scope)
            if value < self._provisioned[scope][name]:
                raise errors.InvalidParameterValueException(BELOW_PROVISIONED)
            others = await self._taken(scope, excluding=name)
            minimum = self.minimum_unreserved
            if self.limit - others - value < minimum:
                raise errors.InvalidParameterValueException(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
                )
            await self._store.put(Table.CONCURRENCY, scope.key(name), {"reserved": value})
            reserved[name] = value
        return value

    async def get(self, scope: Scope, raw_name: str) -> int | None:
        """The function's reservation, or None when it has none."""
        name = await self._name(scope, raw_name)
        return (await self._region(scope)).get(name)

    async def delete(self, scope: Scope, raw_name: str) -> None:
        name = await self._name(scope, raw_name)
        async with self._lock:
            await self._store.delete(Table.CONCURRENCY, scope.key(name))
            (await self._region(scope)).pop(name, None)

    async def unreserved(self, scope: Scope, *, excluding: str | None = None) -> int:
        """What the functions without a reservation share: the limit less every reservation
        and the provisioned concurrency of the functions without one (of all but
        ``excluding``)."""
        return self.limit - await self._taken(scope, excluding)

    async def of(self, scope: Scope, name: str) -> tuple[int | None, int]:
        """(the function's reservation or None, the scope's unreserved pool) for a lease."""
        reserved = await self._region(scope)
        return reserved.get(name), self.limit - await self._taken(scope, None)

    async def on_demand(self, scope: Scope, name: str) -> tuple[int | None, int]:
        """Like ``of``, for invocations that run on demand: a reservation less what the
        function's provisioned concurrency takes of it."""
        reserved, unreserved = await self.of(scope, name)
        if reserved is not None:
            reserved = max(0, reserved - self._provisioned[scope][name])
        return reserved, unreserved
