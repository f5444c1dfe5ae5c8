"""Lines from a process's output pipe: read as they arrive, drained on demand.

Both the runtime's pipe and each extension's are read this way: ``loop.add_reader`` delivers
what arrives, and ``drain()`` reads everything written so far synchronously, so that output
printed before a Runtime API call is attributed to the invocation that call belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

READ_CHUNK = 1 << 16


class LineReader:
    def __init__(self, fd: int, emit: Callable[[list[str]], None]) -> None:
        self.fd = fd
        self._emit = emit
        self._partial = b""
        self._watching = False

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
        self._watching = True

    def stop(self) -> None:
        """Stop watching the pipe (it stays open: the caller owns it)."""
        if self._watching:
            self._watching = False
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.fd)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop()
            self._flush()
            return
        self._take(data)

    def drain(self) -> None:
        """Read everything written so far, synchronously, and end the last partial line."""
        while True:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            self._take(data)
        self._flush()

    def _take(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if lines:
            self._emit([line.decode("utf-8", "replace") for line in lines])

    def _flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, b""
            self._emit([line.decode("utf-8", "replace")])
