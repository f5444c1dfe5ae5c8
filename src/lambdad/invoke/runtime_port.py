"""What the invoke path asks of the runtime, and nothing more.

``RuntimePort`` is every call ``lambdad.invoke`` makes to the execution side: run an
invocation (in a provisioned environment, or on demand), keep environments initialised ahead,
make and drop SnapStart templates, retire what a deleted function left. The local
``RuntimeManager`` (``runtime/pool.py``) is one; a client of a remote worker can be another,
since every argument and answer is a plain value.
"""

from __future__ import annotations

from typing import Protocol

from lambdad.control.arns import Scope
from lambdad.control.changes import Change, ChangeStream, FunctionDeleted
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.spec import FunctionSpec, Place


class ProvisionedView(Protocol):
    """The environments initialised ahead for one version, as the invoke path sees them."""

    @property
    def config(self) -> FunctionSpec: ...

    @property
    def allocated(self) -> int: ...

    @property
    def busy(self) -> int:
        """Environments of ``allocated`` running an invocation now."""

    @property
    def failure(self) -> str | None: ...


class RuntimePort(Protocol):
    async def invoke(
        self, place: Place, config: FunctionSpec, invocation: Invocation
    ) -> Outcome: ...

    async def invoke_provisioned(
        self, place: Place, config: FunctionSpec, invocation: Invocation
    ) -> Outcome | None:
        """None (at once) when the version has no provisioned environment free."""

    async def provision(
        self, place: Place, config: FunctionSpec, count: int, *, retry: bool = False
    ) -> None: ...

    def provisioned(self, place: Place, name: str, version: str) -> ProvisionedView | None: ...

    async def make_snapshot(self, place: Place, config: FunctionSpec) -> InitFailure | None: ...

    async def drop_snapshots(self, place: Place, name: str, keep: set[str]) -> None: ...

    async def function_changed(self, place: Place, name: str) -> None: ...


def place_of(scope: Scope) -> Place:
    """The runtime's name for a function's account and region."""
    return Place(scope.account_id, scope.region)


def retire_deleted(changes: ChangeStream, runtime: RuntimePort) -> None:
    """The runtime retires the environments of a function or version once it is deleted.

    Other changes need no notice: a pool whose configuration revision is stale retires itself
    on the next invoke, and keeps its warm environments when nothing changed.
    """

    async def retire(change: Change) -> None:
        if isinstance(change, FunctionDeleted):
            await runtime.function_changed(place_of(change.scope), change.name)

    changes.subscribe(retire)
