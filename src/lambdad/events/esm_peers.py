"""A mapping's poller status asked of the node that runs it (docs/cluster.md, "A mapping's
status through any node").

In a cluster a mapping's poller runs on the one node holding its claim; ``/_lambdad/esm`` and
``lambdad doctor`` may be asked of any node. The node running a poller answers on
``lambdad.esm.status.<uuid>`` (subscribed while the poller runs) with its lag and its node
id; another node asks there for a mapping it does not poll itself. Nobody subscribed
(``NoResponders``, at once): no node polls it. Imported only with ``nats_url``.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import Message, NatsLink

#: Seconds an asking node waits for the polling node's answer (the answer itself bounds its
#: lag requests by ``LAG_TIMEOUT``, 2 s).
TIMEOUT = 3.0

#: What a polling node answers: ``{"MillisBehind": ..., "Backlog": ...}``.
Answer = Callable[[], Awaitable[dict[str, Any]]]


def status_subject(uuid: str) -> str:
    return f"lambdad.esm.status.{uuid}"


class PeersState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class EsmStatusPeers:
    """Offers this node's pollers' status to the others and asks them for theirs."""

    def __init__(self, link: NatsLink, node: Callable[[], str]) -> None:
        self._link = link
        self._node_of = node
        self._offered: set[str] = set()
        self.state = PeersState.OPEN

    async def offer(self, uuid: str, answer: Answer) -> None:
        """Answer requests for mapping ``uuid``'s status with ``answer()`` (its poller runs
        here)."""
        if self.state is PeersState.CLOSED or uuid in self._offered:
            return

        async def handle(message: Message) -> None:
            found = {**await answer(), "Node": self.node()}
            await message.respond(json.dumps(found).encode())

        with contextlib.suppress(StoreUnavailable):  # the link is down: asked nodes see none
            await self._link.serve(status_subject(uuid), handle)
            self._offered.add(uuid)

    def node(self) -> str:
        """This node's id (read once the node registered)."""
        return self._node_of()

    async def withdraw(self, uuid: str) -> None:
        """Stop answering for ``uuid`` (its poller stopped here)."""
        if uuid in self._offered:
            self._offered.discard(uuid)
            with contextlib.suppress(StoreUnavailable):
                await self._link.stop_serving(status_subject(uuid))

    async def ask(self, uuid: str) -> dict[str, Any] | None:
        """The status of ``uuid``'s poller from the node running it; None when no node runs
        it (or it did not answer in time)."""
        if self.state is PeersState.CLOSED:
            return None
        try:
            reply = await self._link.request(status_subject(uuid), b"", timeout=TIMEOUT)
        except StoreUnavailable:  # no responders, no reply, link down
            return None
        found = json.loads(reply.data)
        return found if isinstance(found, dict) else None

    async def close(self) -> None:
        """Withdraw every offer and ask no more. Idempotent."""
        if self.state is PeersState.CLOSED:
            return
        self.state = PeersState.CLOSED
        for uuid in list(self._offered):
            await self.withdraw(uuid)
