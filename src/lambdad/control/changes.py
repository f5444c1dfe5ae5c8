"""Changes to functions, as one stream of typed events.

``Functions`` publishes an event after each write it commits; everything that hangs on a
function (its cached configuration, the runtime's pools and templates, reserved and
provisioned concurrency, event invoke configs) subscribes to the one ``ChangeStream`` and
picks the events it cares about. Events are plain frozen values naming the function by its
scope (account and region) and name, so that a later cluster node can feed the same stream
from what the store tells it of another node's writes (docs/function-changes.md).

Subscribers are called in the order they subscribed, one event at a time, each awaited before
the next; one that raises is logged and the others still hear of the change (the write stands).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from lambdad.control.arns import Scope
from lambdad.control.model import FunctionConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionChanged:
    """The function, one of its versions or one of its aliases was written (not deleted)."""

    scope: Scope
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionDeleted:
    """The whole function (``qualifier`` None) or one of its versions was deleted."""

    scope: Scope
    name: str
    qualifier: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class AliasDeleted:
    scope: Scope
    name: str
    alias: str


@dataclasses.dataclass(frozen=True, slots=True)
class VersionPublished:
    """A version was published (``config`` is the version's configuration)."""

    scope: Scope
    name: str
    config: FunctionConfig


Change = FunctionChanged | FunctionDeleted | AliasDeleted | VersionPublished
Subscriber = Callable[[Change], Awaitable[None]]


class ChangeStream:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(change)`` for every change from now on."""
        self._subscribers.append(subscriber)

    async def publish(self, change: Change) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(change)
            except Exception:
                log.exception("a subscriber of function changes failed on %s", change)
