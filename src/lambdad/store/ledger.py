"""The concurrency ledger: how many invocation slots each node holds per scope, cluster-wide.

A *scope* is what a limit applies to (``invoke/grants.py`` names them: a region's unreserved
pool, one function's reservation), encoded as a string. A node's *grant* on a scope is a number
of slots it may fill without asking again; the ledger keeps the sum of every node's live grant
on a scope within the limit the claiming node passes. A grant expires ``lease`` seconds after
it was last claimed or renewed: a node that dies holds nothing once its lease has run out.

Two implementations pass one contract (``tests/contract/test_ledger_contract.py``):
``MemoryLedger`` (one process; the unit tests of the node's side) and ``PostgresLedger``
(``store/postgres_ledger.py``, one transaction per claim under a lock of the scope, expiry on
the database's clock). The single-process default has no ledger at all: its counters are in
``invoke/concurrency.py`` and never leave the process (docs/cluster.md).

The ledger also holds each function's *scaling tokens* (``take_tokens``, ``give_tokens``): the
token bucket of Lambda's scaling rate (``runtime/scaling.py``), one per function for the whole
cluster, refilled on the ledger's clock.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable


def share_of(free: int, need: int, spare: int) -> int | None:
    """What a claim of ``need`` slots and up to ``spare`` more gets of ``free``: None when
    ``need`` does not fit; else ``need`` and at most half of what would be left after it, so a
    node that asks for spare slots near the limit leaves the rest to the others."""
    if need > free:
        return None
    return need + max(0, min(spare, (free - need) // 2))


def tokens_of(have: float, need: int, spare: int, rate: int, window: float) -> tuple[int, float]:
    """What a take of ``need`` tokens and up to ``spare`` more gets of a bucket holding
    ``have``: (granted, 0.0), at most half of what is left after ``need`` as spare; or (0,
    seconds until ``need`` would be there at ``rate`` per ``window``)."""
    if have < need:
        return 0, (need - have) * window / rate
    return need + max(0, min(spare, int((have - need) // 2))), 0.0


class ConcurrencyLedger(abc.ABC):
    """Every node's grant of slots per scope, summed within each scope's limit."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Idempotent."""

    def stopping(self) -> None:  # noqa: B027 (optional: a local ledger never waits)
        """lambdad is stopping: a ledger that cannot be reached gives up after a short bound."""

    @abc.abstractmethod
    async def claim(
        self, node: str, scope: str, need: int, spare: int, limit: int, lease: float
    ) -> int | None:
        """Set ``node``'s grant on ``scope`` to ``need`` slots and up to ``spare`` more
        (``share_of``) if ``need`` fits under ``limit`` with every other node's live grant
        on the scope, renewing it for ``lease`` seconds; returns the grant. None, leaving the
        grant as it was, when ``need`` does not fit."""

    @abc.abstractmethod
    async def release(self, node: str, scope: str, keep: int) -> None:
        """Shrink ``node``'s grant on ``scope`` to ``keep`` slots (0: drop it)."""

    @abc.abstractmethod
    async def renew(self, node: str, lease: float) -> set[str]:
        """Extend every live grant of ``node`` by ``lease`` seconds from now; returns the
        scopes it still holds (a grant that had expired is gone, and not among them)."""

    @abc.abstractmethod
    async def drop(self, node: str) -> None:
        """Give back every grant of ``node`` (a clean stop)."""

    @abc.abstractmethod
    async def grants(self, scope: str) -> dict[str, int]:
        """The live grants on ``scope``: node -> slots."""

    @abc.abstractmethod
    async def take_tokens(
        self, scope: str, need: int, spare: int, rate: int, window: float
    ) -> tuple[int, float]:
        """Take ``need`` tokens and up to ``spare`` more (``tokens_of``) from the bucket of
        ``scope``, which holds at most ``rate`` and refills at ``rate`` per ``window``
        seconds (a bucket never seen is full): (tokens taken, 0.0), or (0, seconds until
        ``need`` would be there), taking nothing."""

    @abc.abstractmethod
    async def give_tokens(self, scope: str, count: int, rate: int) -> None:
        """Put back ``count`` tokens taken from ``scope`` and not used (never beyond ``rate``)."""

    @abc.abstractmethod
    async def sweep_tokens(self, age: float) -> int:
        """Forget buckets untouched for ``age`` seconds (at least a window: full again, as
        good as none), a batch at a time; how many went."""


class MemoryLedger(ConcurrencyLedger):
    """The ledger in this process's memory; ``clock`` is the time in seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: scope -> node -> (slots, expires at)
        self._grants: dict[str, dict[str, tuple[int, float]]] = {}
        #: scope -> (tokens, when counted)
        self._tokens: dict[str, tuple[float, float]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _live(self, scope: str) -> dict[str, tuple[int, float]]:
        now = self._clock()
        held = self._grants.setdefault(scope, {})
        for node in [n for n, (_, expires) in held.items() if expires <= now]:
            del held[node]
        return held

    async def claim(
        self, node: str, scope: str, need: int, spare: int, limit: int, lease: float
    ) -> int | None:
        held = self._live(scope)
        taken = sum(slots for other, (slots, _) in held.items() if other != node)
        granted = share_of(limit - taken, need, spare)
        if granted is not None:
            held[node] = (granted, self._clock() + lease)
        return granted

    async def release(self, node: str, scope: str, keep: int) -> None:
        held = self._grants.get(scope, {})
        if node in held:
            if keep <= 0:
                del held[node]
            else:
                held[node] = (min(keep, held[node][0]), held[node][1])

    async def renew(self, node: str, lease: float) -> set[str]:
        still = set()
        for scope in list(self._grants):
            held = self._live(scope)
            if node in held:
                held[node] = (held[node][0], self._clock() + lease)
                still.add(scope)
        return still

    async def drop(self, node: str) -> None:
        for held in self._grants.values():
            held.pop(node, None)

    async def grants(self, scope: str) -> dict[str, int]:
        return {node: slots for node, (slots, _) in self._live(scope).items()}

    async def take_tokens(
        self, scope: str, need: int, spare: int, rate: int, window: float
    ) -> tuple[int, float]:
        now = self._clock()
        have, at = self._tokens.get(scope, (float(rate), now))
        have = min(float(rate), have + (now - at) * rate / window)
        granted, wait = tokens_of(have, need, spare, rate, window)
        self._tokens[scope] = (have - granted, now)
        return granted, wait

    async def give_tokens(self, scope: str, count: int, rate: int) -> None:
        if scope in self._tokens:
            have, at = self._tokens[scope]
            self._tokens[scope] = (min(float(rate), have + count), at)

    async def sweep_tokens(self, age: float) -> int:
        now = self._clock()
        gone = [scope for scope, (_, at) in self._tokens.items() if now - at >= age]
        for scope in gone:
            del self._tokens[scope]
        return len(gone)
