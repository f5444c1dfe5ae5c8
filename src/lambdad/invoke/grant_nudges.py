"""Nudges between a cluster's nodes: "give back the idle slots of this scope" (docs/cluster.md).

A node whose claim on a scope the ledger refuses (``invoke/grants.py``) asks each other node
holding a grant there, on ``lambdad.grants.trim.<node id>``, to give back the slots it holds
and does not use; each answers once its grant is shrunk in the ledger, and the refused node
claims once more. So a slot that lingers idle on one node after a burst does not refuse an
invocation on another for up to two seconds. A node that does not answer within ``TIMEOUT``
(dead, or busy) keeps its slots until its keeper trims them or its lease runs out. Imported
only with ``nats_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable

from lambdad.invoke.grants import Grants
from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import Message, NatsLink

#: Seconds a refused claim waits for each other node's answer.
TIMEOUT = 0.5


def trim_subject(node: str) -> str:
    return f"lambdad.grants.trim.{node}"


class NudgesState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class GrantNudges:
    """Serves this node's nudges and lets ``grants`` send them to the others."""

    def __init__(self, link: NatsLink, grants: Grants, node: Callable[[], str]) -> None:
        self._link = link
        self._grants = grants
        self._node_of = node
        self._subject = ""
        self.state = NudgesState.NEW

    async def start(self) -> None:
        if self.state is not NudgesState.NEW:
            return
        self._subject = trim_subject(self._node_of())
        await self._link.serve(self._subject, self._trim)
        self._grants.nudge = self.nudge
        self.state = NudgesState.RUNNING

    async def nudge(self, scope: str, nodes: list[str]) -> None:
        """Ask ``nodes`` to give back their idle slots of ``scope``; returns once each has
        answered, or could not."""
        await asyncio.gather(*(self._ask(node, scope) for node in nodes))

    async def _ask(self, node: str, scope: str) -> None:
        with contextlib.suppress(StoreUnavailable):  # no responders, no reply, link down
            await self._link.request(trim_subject(node), scope.encode(), timeout=TIMEOUT)

    async def _trim(self, message: Message) -> None:
        await self._grants.trim_idle(message.data.decode())
        await message.respond(b"")

    async def close(self) -> None:
        """Stop answering nudges and sending them. Idempotent."""
        if self.state is NudgesState.CLOSED:
            return
        was_running = self.state is NudgesState.RUNNING
        self.state = NudgesState.CLOSED
        self._grants.nudge = None
        if was_running:
            with contextlib.suppress(StoreUnavailable):
                await self._link.stop_serving(self._subject)
