"""A request body read while it arrives: the Runtime API's streamed ``/response``.

The HTTP/1.1 server (``http11.py``) feeds it as the parser hands out body bytes and closes it
at the end of the message (or when the connection is lost); one reader takes the chunks in
order. It holds at most about ``high`` bytes: past that the connection stops reading
(``pause``) until the reader has taken them, so a runtime that writes faster than its caller
reads is slowed down, not buffered in memory. HTTP trailers arrive with the end.

A reader that stops reading calls ``discard``: from then on chunks are dropped as they come
and reading resumes, so the runtime can always finish its request (and its connection notices
when the runtime goes away).
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Callable

#: How many bytes a body holds before its connection stops reading.
HIGH_WATER = 1024 * 1024


class BodyState(enum.Enum):
    OPEN = "open"
    COMPLETE = "complete"
    BROKEN = "broken"


class BodyBroken(Exception):
    """The body ended before its last chunk: the connection was lost, or the runtime died."""

    def __init__(self, cause: Exception | None = None) -> None:
        super().__init__("request body ended before its last chunk")
        self.cause = cause


def _nothing() -> None:
    return None


class BodyStream:
    def __init__(
        self,
        content_type: str,
        pause: Callable[[], None] = _nothing,
        resume: Callable[[], None] = _nothing,
        high: int = HIGH_WATER,
    ) -> None:
        self.content_type = content_type
        self.state = BodyState.OPEN
        #: Trailer fields (names in lower case), complete once the state is COMPLETE.
        self.trailers: dict[str, str] = {}
        #: Bytes received so far (dropped ones included).
        self.size = 0
        #: Set by the reader when it refused the body (the runtime is answered 413).
        self.too_large = False
        self._pause = pause
        self._resume = resume
        self._high = high
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._discarding = False
        self._cause: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None
        #: The reader took the end, discarded the body, or the body broke.
        self._settled = False
        self._settling: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ the connection's side

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self._discarding or self.state is not BodyState.OPEN:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()
        if self._buffered >= self._high and not self._paused:
            self._paused = True
            self._pause()

    def trailer(self, name: str, value: str) -> None:
        self.trailers[name] = value

    def finish(self) -> None:
        """The last chunk (and the trailers) arrived."""
        self._end(BodyState.COMPLETE)

    def fail(self, cause: Exception | None = None) -> None:
        """The body will not be complete (connection lost, or ``cause``: the runtime died)."""
        if self.state is BodyState.OPEN:
            self._cause = cause
            self._end(BodyState.BROKEN)
        self._settle()

    def _end(self, state: BodyState) -> None:
        if self.state is not BodyState.OPEN:
            return
        self.state = state
        self._wake()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ the reader's side

    async def read(self) -> bytes | None:
        """The next chunk, or None after the last one; ``BodyBroken`` if it never comes."""
        while not self._chunks:
            if self.state is BodyState.COMPLETE:
                self._settle()
                return None
            if self.state is BodyState.BROKEN:
                self._settle()
                raise BodyBroken(self._cause)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < self._high // 2:
            self._paused = False
            self._resume()
        return chunk

    def discard(self) -> None:
        """Drop what is held and whatever still comes; reading resumes. Idempotent."""
        self._discarding = True
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._resume()
        self._settle()

    def _settle(self) -> None:
        self._settled = True
        if self._settling is not None and not self._settling.done():
            self._settling.set_result(None)

    async def settled(self) -> None:
        """Until the reader is done with the body: it read the end, discarded the body (and so
        decided, e.g., that it is too large), or the body broke."""
        if self._settled:
            return
        if self._settling is None:
            self._settling = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._settling)

    async def ended(self) -> None:
        """Until the body is complete or broken."""
        if self.state is not BodyState.OPEN:
            return
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._ended)
