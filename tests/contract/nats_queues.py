"""JetStream queues for tests: each with a NATS link of its own (a node's), on streams that
start empty."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import nats
import nats.js.errors

from lambdad.store.base import Queue
from lambdad.store.nats_link import NatsLink
from lambdad.store.nats_queue import EVENTS, IDS, PAYLOADS, NatsQueue
from tests.nats_server import NatsServer


class OwnLinkQueue(NatsQueue):
    """A ``NatsQueue`` that opens and closes its own link, as a node's parts do."""

    def __init__(self, url: str, *, ack_wait: float = 30.0) -> None:
        self.link = NatsLink(url, "test-queue")
        super().__init__(self.link, ack_wait=ack_wait)

    async def open(self) -> None:
        await self.link.open()
        await super().open()

    async def close(self) -> None:
        await super().close()
        await self.link.close()

    async def die(self) -> None:
        """Vanish as a SIGKILLed node does: the connection drops, nothing is given back."""
        if self._keeper is not None:
            self._keeper.cancel()
        client = self.link.client
        await client.close()


async def delete_streams(url: str) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for stream in (EVENTS, IDS, PAYLOADS):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)
    finally:
        await client.close()


def fresh_queues(server: NatsServer, ack_wait: float = 30.0) -> Callable[[], Queue]:
    """Queues on ``server``'s JetStream, whose streams are deleted now (not per queue: two
    queues of one test share them, as two nodes do)."""
    asyncio.run(delete_streams(server.url))
    return lambda: OwnLinkQueue(server.url, ack_wait=ack_wait)
