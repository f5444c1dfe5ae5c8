"""Environments and SnapStart templates of functions and versions deleted through another
node of a shared store (docs/cluster.md).

A function or version deleted here retires its environments through ``Functions.changes``
(``runtime_port.retire_deleted``) and closes the deleted versions' templates
(``SnapshotMaker.deleted``). One deleted through another node is only a store change here:
``RetireDeletedElsewhere`` hears it from the store's feed (a ``functions`` row for a function,
a ``versions`` row for a version), looks whether the record is really gone (the change does
not say written or deleted; the name may be in use again already), and if so does what a local
delete does: asks the runtime to retire the function's environments and to close the templates
of the versions the function no longer has. After ``StoreChange(None)`` (the feed lost track)
nothing is retired: idle environments are reaped by the idle timeout, and a template left
behind lives until the node stops.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from typing import Any

from lambdad.invoke.runtime_port import RuntimePort
from lambdad.runtime.spec import Place
from lambdad.store.base import Key, Store, StoreChange, Table

log = logging.getLogger(__name__)


class RetireState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


class RetireDeletedElsewhere:
    """Retires this process's environments and templates of functions (and versions) other
    nodes delete."""

    def __init__(self, store: Store, runtime: RuntimePort) -> None:
        self._store = store
        self._runtime = runtime
        self._checks: set[asyncio.Task[None]] = set()
        self.state = RetireState.RUNNING
        store.subscribe(self._changed)

    def _changed(self, change: StoreChange) -> None:
        if self.state is RetireState.CLOSED or change.prefix:
            return
        if change.table is Table.FUNCTIONS and len(change.key) == 3:
            self._spawn(self._check(Table.FUNCTIONS, change.key))
        elif change.table is Table.VERSIONS and len(change.key) == 4:
            self._spawn(self._check(Table.VERSIONS, change.key))

    def _spawn(self, check: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(check)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, table: Table, key: Key) -> None:
        """``key`` of ``table`` (a function, or one version of it) changed elsewhere: if it
        is gone, retire the function's environments and the templates of versions it lost."""
        try:
            if await self._store.get(table, key) is not None:
                return
            place, name = Place(key[0], key[1]), key[2]
            await self._runtime.function_changed(place, name)
            kept = await self._store.scan(Table.VERSIONS, key[:3])
            await self._runtime.drop_snapshots(place, name, {k[3] for k, _ in kept})
        except Exception:  # environments are reaped when idle all the same
            log.exception("retiring the environments of %s, deleted elsewhere, failed", key)

    async def close(self) -> None:
        """Stop following deletes; cancel the checks in flight. Idempotent."""
        self.state = RetireState.CLOSED
        checks = list(self._checks)
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
