"""Every node's spans on every api node (cluster mode, docs/tracing.md: "In a cluster").

Each node sends what its trace store keeps of its own (lambdad's spans of the invocations it
ran or routed, the segments its functions sent to its X-Ray listener, its extensions' spans)
and its listener's counts to the JetStream stream ``LAMBDAD_TRACES``, on the subject
``lambdad.traces.<node id>``, with the machinery of the cluster's logs
(``log_replication.StreamReplication``: sending never blocks an invoke, at most once per
``LINGER``, bounded while NATS is away). Every node that serves the API (role ``api`` or
``all``) reads the stream and keeps the other nodes' spans in its own trace store
(``Traces.apply``), so ``/_lambdad/traces`` answers with one trace joined across nodes.

Traces are kept in memory: a node's consumer is its own for one start
(``traces-<node id>-<boot>``) and reads the stream from its start, so a restarted api node
finds the traces the stream still holds (``max_bytes``, ``max_age``), its own earlier ones
too; the server deletes a consumer unread for ``IDLE`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdad.store.log_replication import MAX_MESSAGE, StreamReplication, encoded
from lambdad.store.nats_link import NatsLink

STREAM = "LAMBDAD_TRACES"
#: Seconds after which the server deletes a consumer nobody reads (a node gone).
IDLE = 300.0
#: About the bytes one span takes in a message.
SPAN_BYTES = 320


def pieces(change: dict[str, Any]) -> list[bytes]:
    """``change`` encoded, its spans split so each piece fits ``MAX_MESSAGE``."""
    data = encoded(change)
    spans = change.get("s")
    if len(data) <= MAX_MESSAGE or not isinstance(spans, list) or len(spans) < 2:
        return [data]
    half = len(spans) // 2
    return pieces({**change, "s": spans[:half]}) + pieces({**change, "s": spans[half:]})


class TraceReplication(StreamReplication):
    """This node's spans and listener counts to ``LAMBDAD_TRACES``; (``consume``) the other
    nodes' messages into ``apply(data, node)`` (``Traces.apply``, which decodes them)."""

    STREAM = STREAM
    PREFIX = "lambdad.traces"
    CONSUMER = "traces"

    def __init__(
        self,
        link: NatsLink,
        apply: Callable[[bytes, str], None],
        *,
        consume: bool,
        max_bytes: int,
        max_age: float,
    ) -> None:
        super().__init__(link, self._ignore, consume=consume, max_bytes=max_bytes, max_age=max_age)
        self._apply_from = apply
        self._prefix_length = len(self.PREFIX) + 1

    @staticmethod
    def _ignore(change: dict[str, Any]) -> None:
        return None

    def _consumer_name(self) -> str:
        # One per start: traces live in memory, so each start reads the stream again.
        return f"{self.CONSUMER}-{self._node}-{self._boot}"

    def _consumer_idle(self) -> float:
        return IDLE

    def _mine(self, message: Any) -> bool:
        """Only what this very start sent: a restarted node takes its earlier spans back."""
        key = (message.headers or {}).get("Nats-Msg-Id", "")
        return bool(message.subject == self._subject() and key.startswith(self._msg_prefix()))

    def _msg_prefix(self) -> str:
        return f"{self._node}-{self._boot}-"

    def _size_of(self, change: dict[str, Any]) -> int:
        spans = change.get("s")
        return 64 + SPAN_BYTES * len(spans) if isinstance(spans, list) else 64

    def _pieces(self, change: dict[str, Any]) -> list[bytes]:
        return pieces(change)

    def _apply_message(self, message: Any) -> None:
        self._apply_from(message.data, str(message.subject)[self._prefix_length :])
