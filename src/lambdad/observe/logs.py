"""The log store: log groups of streams of timestamped events, as CloudWatch Logs keeps them.

Writes are appended in memory and flushed to one JSON-lines file per group in the background,
so the invoke path never waits for a disk. Readers get events by group (optionally stream),
after a position, and may wait for more (``lambdad logs --follow``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import os
import re
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

#: Events kept in memory per group for reading; older ones are only on disk.
_MEMORY_EVENTS = 10_000
_FLUSH_INTERVAL = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class LogEvent:
    seq: int
    timestamp_ms: int
    stream: str
    message: str


class LogStoreState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


#: A log group is named within an account and region: (account, region, group name).
GroupKey = tuple[str, str, str]


_HAS_ACCOUNT = re.compile(r"\d{12}__")


def _group_file(root: Path, key: GroupKey) -> Path:
    safe = key[2].strip("/").replace("/", "__") or "_"
    return root / f"{key[0]}__{key[1]}__{safe}.jsonl"


class LogStore:
    """Log groups by (account, region, name). Files written before accounts (their rows carry
    no account, and their names none) are read as ``default_account``'s."""

    def __init__(self, root: Path | None, default_account: str = "000000000000") -> None:
        self._root = root
        self._default_account = default_account
        self._groups: dict[GroupKey, deque[LogEvent]] = {}
        self._seq = 0
        self._pending: dict[GroupKey, list[LogEvent]] = {}
        #: Set at the next ``put``; made only when a follower waits (not on every put).
        self._changed: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.state = LogStoreState.OPEN

    async def open(self) -> None:
        if self._root is not None:
            self._root.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._load)
            self._flusher = asyncio.create_task(self._flush_forever(), name="log-flusher")

    def _load(self) -> None:
        assert self._root is not None
        # Files from before accounts first: their events are older than any of the others.
        paths = sorted(
            self._root.glob("*.jsonl"),
            key=lambda p: (_HAS_ACCOUNT.match(p.name) is not None, p.name),
        )
        for path in paths:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    with contextlib.suppress(ValueError, KeyError):
                        row = json.loads(line)
                        self._seq += 1
                        event = LogEvent(self._seq, row["t"], row["s"], row["m"])
                        key = (
                            row.get("a", self._default_account),
                            row.get("r", "us-east-1"),
                            row["g"],
                        )
                        self._groups.setdefault(key, deque(maxlen=_MEMORY_EVENTS)).append(event)

    def put(self, group: GroupKey, stream: str, timestamp_ms: int, messages: list[str]) -> None:
        """Append events; never blocks."""
        if self.state is LogStoreState.CLOSED:
            return
        events = self._groups.setdefault(group, deque(maxlen=_MEMORY_EVENTS))
        pending = self._pending.setdefault(group, [])
        for message in messages:
            self._seq += 1
            event = LogEvent(self._seq, timestamp_ms, stream, message)
            events.append(event)
            pending.append(event)
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def read(
        self, group: GroupKey, *, after: int = 0, stream: str | None = None, limit: int = 10_000
    ) -> list[LogEvent]:
        events = self._groups.get(group, ())
        selected = [e for e in events if e.seq > after and (stream is None or e.stream == stream)]
        return selected[:limit]

    def groups(self) -> list[GroupKey]:
        return sorted(self._groups)

    async def wait(self, group: GroupKey, after: int, timeout: float) -> list[LogEvent]:
        """Events after ``after``, waiting up to ``timeout`` seconds for the first one."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            changed = self._changed
            if changed is None:
                changed = self._changed = asyncio.Event()
            found = self.read(group, after=after)
            remaining = deadline - asyncio.get_running_loop().time()
            if found or remaining <= 0:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _flush(self, batches: dict[GroupKey, list[LogEvent]]) -> None:
        assert self._root is not None
        for group, events in batches.items():
            lines = "".join(
                json.dumps(
                    {
                        "a": group[0],
                        "r": group[1],
                        "g": group[2],
                        "s": e.stream,
                        "t": e.timestamp_ms,
                        "m": e.message,
                    }
                )
                + "\n"
                for e in events
            )
            fd = os.open(_group_file(self._root, group), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                os.write(fd, lines.encode("utf-8"))
            finally:
                os.close(fd)

    async def _flush_once(self) -> None:
        batches, self._pending = self._pending, {}
        if batches and self._root is not None:
            await asyncio.to_thread(self._flush, batches)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL)
            try:
                await self._flush_once()
            except OSError:  # a full or failing disk: keep serving, the events stay in memory
                log.exception("writing logs to %s failed", self._root)

    async def close(self) -> None:
        if self.state is LogStoreState.CLOSED:
            return
        self.state = LogStoreState.CLOSED
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush_once()
