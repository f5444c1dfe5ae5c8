"""The log store: log groups of streams of timestamped events, as CloudWatch Logs keeps them.

Each group's events live in **segments** (columns of sequence numbers, timestamps, stream
names and messages; a new segment every ``segment_bytes``), held in memory for reading and
appended to one JSON-lines file per segment (``segments/<id>.jsonl``, ``log_files.py``) by a
background flusher, so the invoke path never waits for a disk. The store is bounded: past
``max_bytes`` (events counted as CloudWatch counts them, message bytes + 26) the oldest
segment of any group is dropped, in memory and on disk; a group's retention drops its
segments whose newest event is older than it, and hides older events from reads at once.
Group and stream metadata (creation times, retention, tags, streams made by CreateLogStream)
are in ``meta.json``.

Readers get events by group (optionally stream), after a position (``read``, ``wait``: what
``lambdad logs --follow`` uses), or scan a group by stream and time with a filter pattern
(``scan``, off the event loop). Files of the older layout (one ``*.jsonl`` per group) are
read at start and dropped with the rest when the bound or a retention reaches them.

In a cluster, every change the store makes (events, groups, streams, retention, tags) also
goes to its ``outbox`` (``store/log_replication.py`` sends it to the other nodes), and
``apply`` makes another node's change here without sending it on (docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import re
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from lambdad import errors
from lambdad.observe.log_files import Batch, row_of, write_files
from lambdad.observe.log_files import GroupKey as GroupKey

log = logging.getLogger(__name__)

_FLUSH_INTERVAL = 0.2
#: How often retention is swept from memory and disk (reads hide expired events at once).
_SWEEP_INTERVAL = 60.0
#: CloudWatch Logs counts each event as its message's UTF-8 bytes plus 26.
EVENT_OVERHEAD = 26
#: The retention periods CloudWatch Logs accepts, in days.
RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip
_DAY_MS = 86_400_000


@dataclasses.dataclass(frozen=True, slots=True)
class LogEvent:
    seq: int
    timestamp_ms: int
    stream: str
    message: str


class LogStoreState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


_HAS_ACCOUNT = re.compile(r"\d{12}__")


def event_size(message: str) -> int:
    """An event's size as CloudWatch Logs counts it: its message's UTF-8 bytes plus 26."""
    if message.isascii():
        return len(message) + EVENT_OVERHEAD
    return len(message.encode("utf-8", "replace")) + EVENT_OVERHEAD


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Segment:
    """Events of one group in ingestion order, as columns."""

    __slots__ = (
        "bytes",
        "flushed",
        "id",
        "max_time",
        "messages",
        "min_time",
        "names",
        "path",
        "rewrite",
        "seqs",
        "streams",
        "times",
    )

    def __init__(self, segment_id: int, path: Path | None) -> None:
        self.id = segment_id
        self.path = path
        self.seqs = array("q")
        self.times = array("q")
        self.streams: list[str] = []
        self.messages: list[str] = []
        #: The streams it holds events of.
        self.names: set[str] = set()
        self.bytes = 0
        self.max_time = -(2**62)
        self.min_time = 2**62
        #: Events already written to ``path``.
        self.flushed = 0
        #: ``path`` holds rows no longer here: write it anew.
        self.rewrite = False

    def append(self, seq: int, timestamp: int, stream: str, message: str, size: int) -> None:
        self.seqs.append(seq)
        self.times.append(timestamp)
        self.streams.append(stream)
        self.names.add(stream)
        self.messages.append(message)
        self.bytes += size
        self.max_time = max(self.max_time, timestamp)
        self.min_time = min(self.min_time, timestamp)


@dataclasses.dataclass(slots=True)
class LogStream:
    name: str
    created_ms: int
    first_ms: int | None = None
    last_ms: int | None = None
    last_ingestion_ms: int | None = None


@dataclasses.dataclass(slots=True)
class LogGroup:
    key: GroupKey
    created_ms: int
    retention_days: int | None = None
    group_class: str = "STANDARD"
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    streams: dict[str, LogStream] = dataclasses.field(default_factory=dict)
    segments: list[_Segment] = dataclasses.field(default_factory=list)

    @property
    def stored_bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def cutoff_ms(self, now_ms: int) -> int | None:
        """Events older than this are past the group's retention."""
        if self.retention_days is None:
            return None
        return now_ms - self.retention_days * _DAY_MS


@dataclasses.dataclass(frozen=True, slots=True)
class Scan:
    """What :meth:`LogStore.scan` found: the events, and where a next page starts (None:
    nothing more)."""

    events: list[LogEvent]
    next_seq: int | None


class LogOutbox(Protocol):
    """Where a node's changes to its log store go for the cluster's other nodes
    (``store/log_replication.py``): ``emit`` only queues, it never blocks."""

    def emit(self, change: dict[str, Any]) -> None: ...


def group_not_found() -> errors.ResourceNotFoundException:
    return errors.ResourceNotFoundException("The specified log group does not exist.")


class LogStore:
    """Log groups by (account, region, name), bounded by ``max_bytes`` (0: unbounded). Files
    written before accounts (their rows carry no account, and their names none) are read as
    ``default_account``'s."""

    def __init__(
        self,
        root: Path | None,
        default_account: str = "000000000000",
        *,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int | None = None,
    ) -> None:
        self._root = root
        self._default_account = default_account
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes or (
            min(max(max_bytes // 16, 64 * 1024), 16 * 1024 * 1024) if max_bytes else 8 << 20
        )
        self._groups: dict[GroupKey, LogGroup] = {}
        self._seq = 0
        self._segment_ids = 0
        self._bytes = 0
        self._unlink: list[Path] = []
        self._meta_dirty = False
        #: Set at the next ``put``; made only when a follower waits (not on every put).
        self._changed: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        #: Where this node's changes are sent for the cluster's other nodes (None: alone).
        self.outbox: LogOutbox | None = None
        self.state = LogStoreState.OPEN

    # ------------------------------------------------------------------ life

    async def open(self) -> None:
        if self._root is not None:
            (self._root / "segments").mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._load)
            self._flusher = asyncio.create_task(self._flush_forever(), name="log-flusher")

    def _load(self) -> None:
        assert self._root is not None
        self._load_meta()
        # Files from before segments first, those from before accounts first of all: their
        # events are older than any of the others.
        legacy = sorted(
            self._root.glob("*.jsonl"),
            key=lambda p: (_HAS_ACCOUNT.match(p.name) is not None, p.name),
        )
        segments = sorted((self._root / "segments").glob("*.jsonl"), key=lambda p: p.stem)
        for path in [*legacy, *segments]:
            self._load_file(path)
        self._sweep()
        self._enforce_bound()

    def _load_meta(self) -> None:
        assert self._root is not None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            document = json.loads((self._root / "meta.json").read_text("utf-8"))
            for row in document["groups"]:
                key = (row["a"], row["r"], row["g"])
                group = LogGroup(
                    key,
                    int(row["created"]),
                    row.get("retention"),
                    row.get("class", "STANDARD"),
                    dict(row.get("tags", {})),
                )
                for name, created in row.get("streams", {}).items():
                    group.streams[name] = LogStream(name, int(created))
                self._groups[key] = group

    def _load_file(self, path: Path) -> None:
        """The rows of one file, each into its group's segment of this file; a row that does
        not parse or has a member of the wrong type is skipped (a torn last line)."""
        segments: dict[GroupKey, _Segment] = {}
        with path.open("rb") as handle:
            data = handle.read()
        for line in data.splitlines():
            row = row_of(line, self._default_account)
            if row is None:
                continue
            key, seq, stamp, stream, message = row
            segment = segments.get(key)
            if segment is None:
                segment = segments[key] = self._new_segment(self._group(key, stamp))
                segment.path = path
            # Positions are kept across restarts (rows of the older layout have none).
            self._seq = max(self._seq + 1, seq)
            self._add(self._groups[key], segment, stamp, stream, message, stamp)
        for segment in segments.values():
            segment.flushed = len(segment.seqs)

    async def close(self) -> None:
        if self.state is LogStoreState.CLOSED:
            return
        self.state = LogStoreState.CLOSED
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._root is not None:
            await self._flush_once()

    # ------------------------------------------------------------------ writing

    def _group(self, key: GroupKey, created_ms: int | None = None) -> LogGroup:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = LogGroup(key, created_ms or _now_ms())
            self._meta_dirty = True
        return group

    def _new_segment(self, group: LogGroup) -> _Segment:
        self._segment_ids += 1
        path = None
        if self._root is not None:
            path = self._root / "segments" / f"{time.time_ns():020d}-{self._segment_ids:08d}.jsonl"
        segment = _Segment(self._segment_ids, path)
        group.segments.append(segment)
        return segment

    def _add(
        self, group: LogGroup, segment: _Segment, stamp: int, stream: str, message: str, now: int
    ) -> None:
        size = event_size(message)
        segment.append(self._seq, stamp, stream, message, size)
        self._bytes += size
        info = group.streams.get(stream)
        if info is None:
            info = group.streams[stream] = LogStream(stream, now)
            self._meta_dirty = True
        info.first_ms = stamp if info.first_ms is None else min(info.first_ms, stamp)
        info.last_ms = stamp if info.last_ms is None else max(info.last_ms, stamp)
        info.last_ingestion_ms = now

    def put(self, group: GroupKey, stream: str, timestamp_ms: int, messages: list[str]) -> None:
        """Append events of one timestamp (creating the group and stream); never blocks."""
        self.put_events(group, stream, [(timestamp_ms, m) for m in messages])

    def put_events(self, key: GroupKey, stream: str, events: Iterable[tuple[int, str]]) -> None:
        """Append ``(timestamp, message)`` events; never blocks."""
        if self.state is LogStoreState.CLOSED:
            return
        if self.outbox is not None:
            events = list(events)
            self.outbox.emit({"o": "put", "g": key, "s": stream, "e": events})
        self._put_events(key, stream, events)

    def _put_events(self, key: GroupKey, stream: str, events: Iterable[tuple[int, str]]) -> None:
        now = _now_ms()
        group = self._group(key, now)
        segment = group.segments[-1] if group.segments else self._new_segment(group)
        for stamp, message in events:
            if segment.bytes >= self._segment_bytes:
                segment = self._new_segment(group)
            self._seq += 1
            self._add(group, segment, stamp, stream, message, now)
        self._enforce_bound()
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _enforce_bound(self) -> None:
        while self.max_bytes and self._bytes > self.max_bytes:
            oldest = min(
                (g for g in self._groups.values() if g.segments),
                key=lambda g: g.segments[0].id,
                default=None,
            )
            if oldest is None:
                return
            self._drop(oldest, oldest.segments[0])

    def _drop(self, group: LogGroup, segment: _Segment) -> None:
        group.segments = [s for s in group.segments if s is not segment]
        self._bytes -= segment.bytes
        # Streams whose every event is gone go too (each environment makes one: without
        # this the metadata would grow without bound).
        left = set().union(*(s.names for s in group.segments))
        for name in segment.names - left:
            group.streams.pop(name, None)
            self._meta_dirty = True
        if segment.path is not None and not any(
            s.path == segment.path for g in self._groups.values() for s in g.segments
        ):
            self._unlink.append(segment.path)

    # ------------------------------------------------------------------ groups and streams

    def groups(self) -> list[GroupKey]:
        return sorted(self._groups)

    def group(self, key: GroupKey) -> LogGroup:
        """The group ``key``; ``ResourceNotFoundException`` when there is none."""
        found = self._groups.get(key)
        if found is None:
            raise group_not_found()
        return found

    def groups_of(self, account: str, region: str) -> list[LogGroup]:
        """The groups of an account and region, by name."""
        found = [g for k, g in self._groups.items() if k[0] == account and k[1] == region]
        return sorted(found, key=lambda g: g.key[2])

    def create_group(self, key: GroupKey, group_class: str, tags: dict[str, str]) -> None:
        if key in self._groups:
            raise errors.ResourceAlreadyExistsException("The specified log group already exists")
        self._groups[key] = LogGroup(key, _now_ms(), None, group_class, dict(tags))
        self._meta_dirty = True
        self._emit({"o": "create_group", "g": key, "c": group_class, "t": dict(tags)})

    def _emit(self, change: dict[str, Any]) -> None:
        if self.outbox is not None:
            self.outbox.emit(change)

    def delete_group(self, key: GroupKey) -> None:
        group = self.group(key)
        for segment in list(group.segments):
            self._drop(group, segment)
        del self._groups[key]
        self._meta_dirty = True
        self._emit({"o": "delete_group", "g": key})

    def create_stream(self, key: GroupKey, name: str) -> None:
        group = self.group(key)
        if name in group.streams:
            raise errors.ResourceAlreadyExistsException("The specified log stream already exists")
        group.streams[name] = LogStream(name, _now_ms())
        self._meta_dirty = True
        self._emit({"o": "create_stream", "g": key, "s": name})

    def delete_stream(self, key: GroupKey, name: str) -> None:
        """The stream and its events, from memory and (rewriting its segments) disk."""
        group = self.group(key)
        if name not in group.streams:
            raise errors.ResourceNotFoundException("The specified log stream does not exist.")
        del group.streams[name]
        self._meta_dirty = True
        kept: list[_Segment] = []
        for segment in group.segments:
            if name not in segment.names:
                kept.append(segment)
                continue
            # A new object: scans in threads keep reading the old one's columns.
            fresh = _Segment(segment.id, segment.path)
            fresh.rewrite = segment.path is not None
            for i, stream in enumerate(segment.streams):
                if stream != name:
                    message = segment.messages[i]
                    fresh.append(
                        segment.seqs[i], segment.times[i], stream, message, event_size(message)
                    )
            self._bytes -= segment.bytes - fresh.bytes
            kept.append(fresh)
        group.segments = kept
        self._emit({"o": "delete_stream", "g": key, "s": name})

    def set_retention(self, key: GroupKey, days: int | None) -> None:
        self.group(key).retention_days = days
        self._meta_dirty = True
        self._sweep()
        self._emit({"o": "retention", "g": key, "d": days})

    def tag(self, key: GroupKey, tags: dict[str, str]) -> None:
        self.group(key).tags.update(tags)
        self._meta_dirty = True
        self._emit({"o": "tag", "g": key, "t": dict(tags)})

    def untag(self, key: GroupKey, names: Iterable[str]) -> None:
        group = self.group(key)
        names = list(names)
        for name in names:
            group.tags.pop(name, None)
        self._meta_dirty = True
        self._emit({"o": "untag", "g": key, "k": names})

    def apply(self, change: dict[str, Any]) -> None:
        """A change another node made to its log store (``LogOutbox.emit``'s), made here
        without sending it on. What no longer applies (a group created twice, a stream
        deleted twice, a malformed change) is skipped."""
        outbox, self.outbox = self.outbox, None
        try:
            self._apply(change)
        except (errors.LambdaError, KeyError, TypeError, ValueError, IndexError):
            pass
        finally:
            self.outbox = outbox

    def _apply(self, change: dict[str, Any]) -> None:
        a, r, g = change["g"]
        key: GroupKey = (str(a), str(r), str(g))
        op = change["o"]
        if op == "put":
            events = [(int(t), str(m)) for t, m in change["e"]]
            if self.state is LogStoreState.OPEN and events:
                self.put_events(key, str(change["s"]), events)
        elif op == "create_group":
            if key not in self._groups:
                self.create_group(key, str(change["c"]), dict(change["t"]))
        elif op == "delete_group":
            self.delete_group(key)
        elif op == "create_stream":
            self._group(key).streams.setdefault(
                str(change["s"]), LogStream(str(change["s"]), _now_ms())
            )
            self._meta_dirty = True
        elif op == "delete_stream":
            self.delete_stream(key, str(change["s"]))
        elif op == "retention":
            days = change["d"]
            self.set_retention(key, None if days is None else int(days))
        elif op == "tag":
            self.tag(key, dict(change["t"]))
        elif op == "untag":
            self.untag(key, [str(k) for k in change["k"]])

    def _sweep(self) -> None:
        """Drop every segment wholly past its group's retention."""
        now = _now_ms()
        for group in list(self._groups.values()):
            cutoff = group.cutoff_ms(now)
            if cutoff is None:
                continue
            for segment in list(group.segments):
                if segment.max_time < cutoff:
                    self._drop(group, segment)

    # ------------------------------------------------------------------ reading

    def read(
        self, group: GroupKey, *, after: int = 0, stream: str | None = None, limit: int = 10_000
    ) -> list[LogEvent]:
        """Events after position ``after`` in ingestion order (within retention)."""
        found = self._groups.get(group)
        if found is None:
            return []
        streams = None if stream is None else {stream}
        return self._collect(found, streams, None, None, None, after, limit, forward=True).events

    def scan(
        self,
        key: GroupKey,
        *,
        streams: set[str] | None = None,
        prefix: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        match: Callable[[str], bool] | None = None,
        after: int = 0,
        before: int | None = None,
        limit: int = 10_000,
        forward: bool = True,
        max_bytes: int | None = None,
    ) -> Scan:
        """Events of group ``key`` by stream (names or a name prefix), time (``start_ms`` <=
        timestamp < ``end_ms``), filter and position (after ``after``, before ``before``), in
        ingestion order; backwards, the last ``limit`` of them; at most ``max_bytes`` (message
        bytes + 26 each, at least one event). Scans columns: call it from a thread for a large
        group (:meth:`scan_async`)."""
        group = self.group(key)
        if prefix is not None:
            streams = {s for s in group.streams if s.startswith(prefix)}
        return self._collect(
            group, streams, start_ms, end_ms, match, after, limit, forward, before, max_bytes
        )

    async def scan_async(self, key: GroupKey, **kwargs: object) -> Scan:
        self.group(key)  # not found: raised on the loop
        return await asyncio.to_thread(lambda: self.scan(key, **kwargs))  # type: ignore[arg-type]

    def _collect(
        self,
        group: LogGroup,
        streams: set[str] | None,
        start_ms: int | None,
        end_ms: int | None,
        match: Callable[[str], bool] | None,
        after: int,
        limit: int,
        forward: bool,
        before: int | None = None,
        max_bytes: int | None = None,
    ) -> Scan:
        cutoff = group.cutoff_ms(_now_ms())
        budget = max_bytes if max_bytes is not None else 2**62
        low = start_ms if cutoff is None else max(cutoff, start_ms or cutoff)
        segments = list(group.segments)
        found: list[LogEvent] = []
        ordered = segments if forward else reversed(segments)
        for segment in ordered:
            seqs = segment.seqs
            count = len(seqs)  # a snapshot: a put on the loop may append meanwhile
            if not count or seqs[count - 1] <= after or (before is not None and seqs[0] >= before):
                continue
            if (low is not None and segment.max_time < low) or (
                end_ms is not None and segment.min_time >= end_ms
            ):
                continue  # nothing of it in the time range
            first = bisect_right(seqs, after, 0, count)
            last = count if before is None else bisect_right(seqs, before - 1, 0, count)
            rows = range(first, last) if forward else range(last - 1, first - 1, -1)
            times, names, messages = segment.times, segment.streams, segment.messages
            for i in rows:
                if streams is not None and names[i] not in streams:
                    continue
                stamp = times[i]
                if (low is not None and stamp < low) or (end_ms is not None and stamp >= end_ms):
                    continue
                if match is not None and not match(messages[i]):
                    continue
                message = messages[i]
                budget -= event_size(message)
                if budget < 0 and found:
                    return self._full(found, forward)
                found.append(LogEvent(seqs[i], stamp, names[i], message))
                if len(found) >= limit:
                    return self._full(found, forward)
        if not forward:
            found.reverse()
        return Scan(found, None)

    @staticmethod
    def _full(found: list[LogEvent], forward: bool) -> Scan:
        """A page cut short (by its limit or bytes): more may follow."""
        if not forward:
            found.reverse()
        return Scan(found, found[-1].seq if forward else found[0].seq)

    @property
    def position(self) -> int:
        """The newest event's position (every later event has a greater one)."""
        return self._seq

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

    # ------------------------------------------------------------------ disk

    def _pending(self) -> list[Batch]:
        """What to append to each segment's file: slices of its columns (cheap copies; the
        lines are encoded in the flusher's thread)."""
        writes: list[Batch] = []
        for key, group in self._groups.items():
            for segment in group.segments:
                end = len(segment.seqs)
                if segment.path is None or (segment.flushed >= end and not segment.rewrite):
                    continue
                start, segment.flushed = segment.flushed, end
                truncate, segment.rewrite = segment.rewrite, False
                writes.append(
                    Batch(
                        segment.path,
                        key,
                        segment.seqs[start:end].tolist(),
                        segment.times[start:end].tolist(),
                        segment.streams[start:end],
                        segment.messages[start:end],
                        truncate,
                    )
                )
        return writes

    def _meta(self) -> str:
        rows = [
            {
                "a": g.key[0],
                "r": g.key[1],
                "g": g.key[2],
                "created": g.created_ms,
                "retention": g.retention_days,
                "class": g.group_class,
                "tags": g.tags,
                "streams": {s.name: s.created_ms for s in g.streams.values()},
            }
            for g in self._groups.values()
        ]
        return json.dumps({"groups": rows})

    async def _flush_once(self) -> None:
        assert self._root is not None
        writes = self._pending()
        unlink, self._unlink = self._unlink, []
        meta = self._meta() if self._meta_dirty else None
        self._meta_dirty = False
        if writes or unlink or meta is not None:
            await asyncio.to_thread(write_files, self._root, writes, unlink, meta)

    async def _flush_forever(self) -> None:
        swept = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL)
            if asyncio.get_running_loop().time() - swept >= _SWEEP_INTERVAL:
                swept = asyncio.get_running_loop().time()
                self._sweep()
            try:
                await self._flush_once()
            except Exception:  # a full or failing disk: keep serving, the events stay in memory
                log.exception("writing logs to %s failed", self._root)
