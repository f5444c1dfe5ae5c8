"""Environments of functions deleted through another node of a shared store (docs/cluster.md).

A function deleted here retires its environments through ``Functions.changes``
(``runtime_port.retire_deleted``). One deleted through another node is only a store change
here: ``RetireDeletedElsewhere`` hears it from the store's feed, looks whether the function's
record is really gone (the change does not say written or deleted; the name may be in use
again already), and if so asks the runtime to retire the function's environments, as a local
delete does. After ``StoreChange(None)`` (the feed lost track) nothing is retired: what was
missed is reaped by the idle timeout.
"""

from __future__ import annotations

import asyncio
import enum
import logging

from lambdad.invoke.runtime_port import RuntimePort
from lambdad.runtime.spec import Place
from lambdad.store.base import Key, Store, StoreChange, Table

log = logging.getLogger(__name__)


class RetireState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


class RetireDeletedElsewhere:
    """Retires this process's environments of functions other nodes delete."""

    def __init__(self, store: Store, runtime: RuntimePort) -> None:
        self._store = store
        self._runtime = runtime
        self._checks: set[asyncio.Task[None]] = set()
        self.state = RetireState.RUNNING
        store.subscribe(self._changed)

    def _changed(self, change: StoreChange) -> None:
        if self.state is RetireState.CLOSED or change.table is not Table.FUNCTIONS:
            return
        if change.prefix or len(change.key) != 3:
            return
        task = asyncio.get_running_loop().create_task(self._check(change.key))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, key: Key) -> None:
        try:
            if await self._store.get(Table.FUNCTIONS, key) is None:
                await self._runtime.function_changed(Place(key[0], key[1]), key[2])
        except Exception:  # the environments are reaped when idle all the same
            log.exception("retiring the environments of %s, deleted elsewhere, failed", key)

    async def close(self) -> None:
        """Stop following deletes; cancel the checks in flight. Idempotent."""
        self.state = RetireState.CLOSED
        checks = list(self._checks)
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
