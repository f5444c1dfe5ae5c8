"""SnapStart at publish time: a version published with SnapStart is ``Pending`` until the
runtime has run its init in a template, then ``Active`` (or ``Failed`` with AWS's reason)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from lambdad.control.arns import Scope
from lambdad.control.changes import Change, FunctionDeleted, VersionPublished
from lambdad.control.functions import Functions
from lambdad.control.model import FunctionConfig, State
from lambdad.invoke.runtime_port import RuntimePort, place_of
from lambdad.invoke.service import spec_of

log = logging.getLogger(__name__)

#: The state reason of a version whose snapshot init failed.
INIT_FAILED = ("FunctionError", "An error occurred during function initialization.")


class SnapshotsState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


class SnapshotMaker:
    """Makes the templates of published SnapStart versions and records the outcome."""

    def __init__(self, functions: Functions, runtime: RuntimePort) -> None:
        self._functions = functions
        self._runtime = runtime
        self._tasks: set[asyncio.Task[None]] = set()
        self.state = SnapshotsState.RUNNING
        functions.changes.subscribe(self._changed)

    async def start(self) -> None:
        """Make again the snapshots a stopped lambdad left ``Pending``."""
        for scope, config in await self._functions.pending_snapshots():
            await self.published(scope, config)

    async def _changed(self, change: Change) -> None:
        if isinstance(change, FunctionDeleted):
            await self.deleted(change.scope, change.name)
        elif isinstance(change, VersionPublished):
            config = change.config
            if config.snap_start_on and config.state is State.PENDING:
                await self.published(change.scope, config)

    async def published(self, scope: Scope, config: FunctionConfig) -> None:
        if self.state is not SnapshotsState.RUNNING:
            return
        task = asyncio.create_task(self._make(scope, config), name=f"snapstart-{config.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deleted(self, scope: Scope, name: str) -> None:
        """A function or one of its versions was deleted: its templates go too."""
        await self._runtime.drop_snapshots(
            place_of(scope), name, await self._functions.versions_of(scope, name)
        )

    async def _make(self, scope: Scope, config: FunctionConfig) -> None:
        try:
            failed = await self._runtime.make_snapshot(place_of(scope), spec_of(config)) is not None
        except Exception:  # a broken template must not leave the version Pending forever
            log.exception("making the snapshot of %s:%s failed", config.name, config.version)
            failed = True
        if not failed:
            await self._functions.set_version_state(
                scope, config.name, config.version, State.ACTIVE
            )
        else:
            await self._functions.set_version_state(
                scope, config.name, config.version, State.FAILED, INIT_FAILED
            )

    async def close(self) -> None:
        if self.state is SnapshotsState.CLOSED:
            return
        self.state = SnapshotsState.CLOSED
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
