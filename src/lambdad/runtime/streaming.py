"""The caller's side of a streamed response: chunks as the runtime sends them.

A caller that can take a response as it arrives (``InvokeWithResponseStream``, a function URL
in ``RESPONSE_STREAM`` mode) puts a ``ResponseSink`` on its ``Invocation``. When the runtime
posts its ``/response`` with ``Lambda-Runtime-Function-Response-Mode: streaming``, the
environment calls ``begin`` and then ``put`` for every chunk; the invocation's ``Outcome``
(returned as for any invocation) says how it ended. A runtime that answers buffered never
touches the sink: the caller sends the outcome's payload whole.

The sink holds at most about ``high`` bytes; ``put`` waits while it is full, which stops the
environment reading the runtime's body, which stops the runtime's connection (backpressure to
the function). A caller that goes away calls ``abandon``: from then on ``put`` drops chunks at
once, so the function runs on undisturbed.
"""

from __future__ import annotations

import asyncio
import collections
import enum

#: How many bytes a sink holds before ``put`` waits for the caller.
HIGH_WATER = 1024 * 1024


class SinkState(enum.Enum):
    WAITING = "waiting"  # no byte yet
    STREAMING = "streaming"  # the runtime streams
    ENDED = "ended"  # no more chunks
    ABANDONED = "abandoned"  # the caller went away


class ResponseSink:
    def __init__(self, high: int = HIGH_WATER) -> None:
        self.state = SinkState.WAITING
        #: The runtime's ``Content-Type`` for a streamed response.
        self.content_type = "application/octet-stream"
        self._high = high
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._readable: asyncio.Event = asyncio.Event()
        self._writable: asyncio.Event = asyncio.Event()
        self._writable.set()
        self.started: asyncio.Event = asyncio.Event()

    # ------------------------------------------------------------ the environment's side

    def begin(self, content_type: str) -> None:
        """The runtime started a streamed response."""
        if self.state is SinkState.WAITING:
            self.state = SinkState.STREAMING
        self.content_type = content_type or "application/octet-stream"
        self.started.set()

    @property
    def streamed(self) -> bool:
        """Whether the runtime streamed (``begin`` was called)."""
        return self.started.is_set()

    async def put(self, chunk: bytes) -> None:
        """Queue ``chunk``; waits while the sink is full (not once the caller went away)."""
        while self.state is SinkState.STREAMING and self._buffered >= self._high:
            self._writable.clear()
            await self._writable.wait()
        if self.state is not SinkState.STREAMING or not chunk:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._readable.set()

    def end(self) -> None:
        """No more chunks (the outcome tells how it ended). Idempotent."""
        if self.state in (SinkState.WAITING, SinkState.STREAMING):
            self.state = SinkState.ENDED
        self._readable.set()
        self._writable.set()

    # ------------------------------------------------------------ the caller's side

    async def get(self) -> bytes | None:
        """The next chunk; None once they are all taken and the stream ended."""
        while not self._chunks:
            if self.state in (SinkState.ENDED, SinkState.ABANDONED):
                return None
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < self._high:
            self._writable.set()
        return chunk

    def abandon(self) -> None:
        """The caller is gone: drop what is held and every chunk still to come."""
        self.state = SinkState.ABANDONED
        self._chunks.clear()
        self._buffered = 0
        self._readable.set()
        self._writable.set()
