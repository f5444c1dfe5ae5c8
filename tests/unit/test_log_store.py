"""The log store (``lambdad.observe.logs``) without a server: segments, the bound, retention,
scans, pages cut by bytes, and reading back from disk."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from lambdad import errors
from lambdad.observe.log_filters import compile_pattern
from lambdad.observe.logs import EVENT_OVERHEAD, LogStore

KEY = ("000000000000", "us-east-1", "/g")
NOW = int(time.time() * 1000)


def fill(store: LogStore, count: int, size: int = 100, stream: str = "s") -> None:
    for i in range(count):
        store.put(KEY, stream, NOW + i, [f"{i:06d} " + "x" * (size - 7)])


def test_put_and_read_in_order() -> None:
    """Events come back in the order they were put, after a position, by stream."""
    store = LogStore(None)
    store.put(KEY, "a", NOW, ["one", "two"])
    store.put(KEY, "b", NOW, ["three"])
    assert [e.message for e in store.read(KEY)] == ["one", "two", "three"]
    first = store.read(KEY)[0].seq
    assert [e.message for e in store.read(KEY, after=first)] == ["two", "three"]
    assert [e.message for e in store.read(KEY, stream="b")] == ["three"]


def test_the_bound_drops_the_oldest_segments() -> None:
    """Past ``max_bytes`` the oldest segment goes; what is held stays within the bound and
    the newest events are kept."""
    bound = 64 * 1024 * 4
    store = LogStore(None, max_bytes=bound)
    fill(store, 5000)
    held = store.group(KEY).stored_bytes
    assert held <= bound
    events = store.read(KEY, limit=100_000)
    assert events[-1].message.startswith("004999")
    assert not events[0].message.startswith("000000")
    assert held == len(events) * (100 + EVENT_OVERHEAD)


def test_streams_whose_events_are_all_dropped_go_too() -> None:
    """A stream whose every event the bound dropped is no longer described (streams made by
    each environment would otherwise pile up); one with events left stays."""
    store = LogStore(None, max_bytes=64 * 1024 * 4)
    fill(store, 1000, stream="early")
    fill(store, 5000, stream="late")
    assert set(store.group(KEY).streams) == {"late"}


def test_scan_by_time_stream_pattern_and_direction() -> None:
    """A scan selects by time (start inclusive, end exclusive), stream and pattern, pages
    forwards after a position and backwards before one."""
    store = LogStore(None)
    fill(store, 10, stream="a")
    store.put(KEY, "b", NOW + 3, ["ERROR in b"])
    window = store.scan(KEY, start_ms=NOW + 2, end_ms=NOW + 4)
    assert [e.message[:6] for e in window.events] == ["000002", "000003", "ERROR "]
    assert [e.stream for e in store.scan(KEY, prefix="b").events] == ["b"]
    assert len(store.scan(KEY, match=compile_pattern("ERROR")).events) == 1
    page = store.scan(KEY, limit=4)
    assert page.next_seq == page.events[-1].seq
    rest = store.scan(KEY, after=page.next_seq, limit=100)
    assert rest.next_seq is None
    assert len(page.events) + len(rest.events) == 11
    tail = store.scan(KEY, limit=3, forward=False, before=store.position + 1)
    assert [e.message for e in tail.events][-1] == "ERROR in b"
    assert len(tail.events) == 3


def test_a_page_is_cut_at_max_bytes() -> None:
    """A scan stops before ``max_bytes`` of events (as AWS's 1 MB answers), with a position
    to go on from; one event always fits."""
    store = LogStore(None)
    fill(store, 10, size=1000)
    page = store.scan(KEY, max_bytes=3 * (1000 + EVENT_OVERHEAD))
    assert len(page.events) == 3
    assert page.next_seq == page.events[-1].seq
    assert len(store.scan(KEY, max_bytes=1).events) == 1


def test_retention_hides_and_drops() -> None:
    """A retention hides older events at once and drops segments wholly older than it."""
    store = LogStore(None)
    store.put(KEY, "s", NOW - 3 * 86_400_000, ["old"])
    store.put(KEY, "s", NOW, ["new"])
    store.set_retention(KEY, 1)
    assert [e.message for e in store.read(KEY)] == ["new"]
    other = ("000000000000", "us-east-1", "/only-old")
    store.put(other, "s", NOW - 3 * 86_400_000, ["old"])
    store.set_retention(other, 1)
    assert store.group(other).segments == []


def test_deleting_a_stream_removes_its_events(tmp_path: Path) -> None:
    """DeleteLogStream's store side: the stream's events leave memory and disk, the other
    streams' stay (with their positions), and a second delete is not found."""

    async def run() -> tuple[list[str], list[str]]:
        store = LogStore(tmp_path)
        await store.open()
        store.put(KEY, "a", NOW, ["a1"])
        store.put(KEY, "b", NOW, ["b1"])
        await store.close()
        store = LogStore(tmp_path)
        await store.open()
        store.put(KEY, "a", NOW, ["a2"])
        store.delete_stream(KEY, "a")
        with pytest.raises(errors.ResourceNotFoundException):
            store.delete_stream(KEY, "a")
        held = [e.message for e in store.read(KEY)]
        await store.close()
        again = LogStore(tmp_path)
        await again.open()
        await again.close()
        return held, [e.message for e in again.read(KEY)]

    held, reread = asyncio.run(run())
    assert held == reread == ["b1"]
    text = "".join(p.read_text() for p in (tmp_path / "segments").glob("*.jsonl"))
    assert '"a1"' not in text
    assert '"a2"' not in text


def test_groups_and_streams_errors() -> None:
    """Creating what exists and reading what does not raise CloudWatch Logs' errors."""
    store = LogStore(None)
    store.create_group(KEY, "STANDARD", {})
    with pytest.raises(errors.ResourceAlreadyExistsException):
        store.create_group(KEY, "STANDARD", {})
    store.create_stream(KEY, "s")
    with pytest.raises(errors.ResourceAlreadyExistsException):
        store.create_stream(KEY, "s")
    store.delete_group(KEY)
    with pytest.raises(errors.ResourceNotFoundException):
        store.scan(KEY)


def test_written_events_and_metadata_are_read_back(tmp_path: Path) -> None:
    """After close, a new store on the same directory holds the groups, retention, streams,
    events and their positions; files of the older one-file-per-group layout are read too."""
    legacy = {"r": "us-east-1", "g": "/legacy", "s": "s", "t": NOW, "m": "from before"}
    (tmp_path / "us-east-1__legacy.jsonl").write_text(json.dumps(legacy) + "\n")

    async def first() -> list[tuple[int, str]]:
        store = LogStore(tmp_path)
        await store.open()
        store.create_group(KEY, "STANDARD", {"k": "v"})
        store.create_stream(KEY, "empty")
        store.set_retention(KEY, 7)
        store.put(KEY, "s", NOW, ["a", "b\ud800"])
        events = [(e.seq, e.message) for e in store.read(KEY)]
        await store.close()
        return events

    async def second() -> LogStore:
        store = LogStore(tmp_path)
        await store.open()
        await store.close()
        return store

    written = asyncio.run(first())
    store = asyncio.run(second())
    group = store.group(KEY)
    assert (group.retention_days, group.tags, set(group.streams)) == (7, {"k": "v"}, {"empty", "s"})
    assert [(e.seq, e.message) for e in store.read(KEY)] == [
        written[0],
        (written[1][0], "b?"),
    ]
    legacy_key = ("000000000000", "us-east-1", "/legacy")
    assert [e.message for e in store.read(legacy_key)] == ["from before"]


def test_rows_that_do_not_parse_are_skipped(tmp_path: Path) -> None:
    """A torn last line and rows with members of the wrong type are skipped at start; the
    rows around them are read (and the columns stay aligned)."""
    segments = tmp_path / "segments"
    segments.mkdir()
    good = {"a": KEY[0], "r": KEY[1], "g": KEY[2], "q": 5, "s": "s", "t": NOW, "m": "good"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "q": 6, "t": "not a time", "m": "bad time"}),
        json.dumps({**good, "q": 7, "s": 3, "m": "bad stream"}),
        json.dumps({**good, "q": 8, "m": "after"}),
        '{"a": "000000000000", "r": "us-',
    ]
    (segments / "00000000000000000001-00000001.jsonl").write_text("\n".join(lines))

    async def load() -> LogStore:
        store = LogStore(tmp_path)
        await store.open()
        await store.close()
        return store

    store = asyncio.run(load())
    assert [(e.seq, e.stream, e.message) for e in store.read(KEY)] == [
        (5, "s", "good"),
        (8, "s", "after"),
    ]


def test_changes_sent_through_the_outbox_make_the_same_store_elsewhere() -> None:
    """Every change a node makes (events, groups, streams, retention, tags, deletes) goes to
    its outbox, and applied to another node's store makes the same groups, streams and
    events there, without being sent on; a change that no longer applies is skipped."""
    sent: list[dict[str, object]] = []

    class Outbox:
        def emit(self, change: dict[str, object]) -> None:
            sent.append(json.loads(json.dumps(change)))  # as it crosses the wire

    here, there = LogStore(None), LogStore(None)
    here.outbox = Outbox()
    there.outbox = Outbox()
    key = ("111122223333", "eu-west-1", "/app")
    now = int(time.time() * 1000)
    here.create_group(key, "STANDARD", {"team": "a"})
    here.create_stream(key, "made")
    here.put(key, "made", now, ["one", "two"])
    here.set_retention(key, 7)
    here.tag(key, {"b": "c"})
    here.untag(key, ["team"])
    here.put(("111122223333", "eu-west-1", "/gone"), "s", now, ["x"])
    here.delete_group(("111122223333", "eu-west-1", "/gone"))
    mine = list(sent)
    for change in mine:
        there.apply(change)
    assert sent == mine  # applied changes are not sent on
    group = there.group(key)
    assert (group.retention_days, group.tags, sorted(group.streams)) == (7, {"b": "c"}, ["made"])
    assert [e.message for e in there.read(key)] == ["one", "two"]
    assert there.groups() == [key]
    there.apply(mine[0])  # the group exists already
    there.apply({"o": "delete_stream", "g": list(key), "s": "never"})
    there.apply({"o": "nonsense"})
    here.delete_stream(key, "made")
    there.apply(sent[-1])
    assert there.read(key) == []
    assert not there.group(key).streams
