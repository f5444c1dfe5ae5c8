"""The composition root's ``Lifecycle``: parts start in order and stop in reverse through one exit
stack; a failing start is rolled back, a failing close does not keep the others open."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lambdad.app import CloseFailed, Lifecycle, LifecycleState, Part, StartFailed


class Parts:
    """Named parts that record what happens to them; some fail on purpose."""

    def __init__(self, names: str, *, fail_start: str = "", fail_close: str = "") -> None:
        self.events: list[str] = []
        self.parts = [self._part(name, fail_start, fail_close) for name in names]

    def _part(self, name: str, fail_start: str, fail_close: str) -> Part:
        async def start() -> None:
            self.events.append(f"start {name}")
            if name in fail_start:
                raise OSError(98, f"{name} cannot start")

        async def close() -> None:
            self.events.append(f"close {name}")
            if name in fail_close:
                raise RuntimeError(f"{name} cannot close")

        return Part(name, start, close)


def test_parts_start_in_order_and_close_in_reverse() -> None:
    """Every part starts in the order given and closes in the reverse order; close is idempotent."""
    parts = Parts("abc")
    lifecycle = Lifecycle(parts.parts)

    async def scenario() -> None:
        await lifecycle.start()
        assert lifecycle.state is LifecycleState.RUNNING
        await lifecycle.close()
        await lifecycle.close()

    asyncio.run(scenario())
    assert parts.events == ["start a", "start b", "start c", "close c", "close b", "close a"]
    assert lifecycle.state is LifecycleState.CLOSED


def test_a_failing_start_closes_what_started_in_reverse() -> None:
    """A part failing to start is closed with everything started before it (in reverse), later
    parts never start, and StartFailed names the part and carries the cause."""
    parts = Parts("abcd", fail_start="c")
    lifecycle = Lifecycle(parts.parts)

    async def scenario() -> None:
        with pytest.raises(StartFailed) as raised:
            await lifecycle.start()
        assert raised.value.part == "c"
        assert str(raised.value) == "c cannot start"
        assert isinstance(raised.value.__cause__, OSError)
        await lifecycle.close()  # nothing left to close

    asyncio.run(scenario())
    assert parts.events == ["start a", "start b", "start c", "close c", "close b", "close a"]
    assert lifecycle.state is LifecycleState.CLOSED


def test_a_failing_close_during_a_rollback_does_not_hide_the_start_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When rolling back a failed start, a part that fails to close is logged and the others
    still close; the start failure is what is raised."""
    parts = Parts("abc", fail_start="c", fail_close="b")

    async def scenario() -> None:
        with pytest.raises(StartFailed, match="c cannot start"):
            await Lifecycle(parts.parts).start()

    with caplog.at_level(logging.ERROR, logger="lambdad"):
        asyncio.run(scenario())
    assert parts.events == ["start a", "start b", "start c", "close c", "close b", "close a"]
    assert "closing b failed" in caplog.text


def test_a_failing_close_still_closes_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    """Parts that fail to close are each logged, every other part is closed all the same, and
    CloseFailed lists the failures at the end."""
    parts = Parts("abcd", fail_close="bc")
    lifecycle = Lifecycle(parts.parts)

    async def scenario() -> None:
        await lifecycle.start()
        with pytest.raises(CloseFailed) as raised:
            await lifecycle.close()
        assert [name for name, _ in raised.value.failures] == ["c", "b"]
        assert str(raised.value) == "c: c cannot close; b: b cannot close"
        await lifecycle.close()  # idempotent: closed once, not again

    with caplog.at_level(logging.ERROR, logger="lambdad"):
        asyncio.run(scenario())
    assert parts.events[4:] == ["close d", "close c", "close b", "close a"]
    assert len(parts.events) == 8
    assert "closing c failed" in caplog.text
    assert "closing b failed" in caplog.text


def test_a_lifecycle_starts_once() -> None:
    """A started or closed lifecycle refuses to start again."""
    parts = Parts("a")
    lifecycle = Lifecycle(parts.parts)

    async def scenario() -> None:
        await lifecycle.start()
        with pytest.raises(RuntimeError):
            await lifecycle.start()
        await lifecycle.close()
        with pytest.raises(RuntimeError):
            await lifecycle.start()

    asyncio.run(scenario())
    assert parts.events == ["start a", "close a"]


def test_a_cancelled_start_closes_what_started() -> None:
    """A start cancelled half-way (a signal during start-up) closes what started, then the
    cancellation goes on."""
    events: list[str] = []
    started = asyncio.Event()

    async def hang() -> None:
        events.append("start slow")
        started.set()
        await asyncio.Event().wait()

    async def closing(name: str) -> None:
        events.append(f"close {name}")

    async def ok() -> None:
        events.append("start a")

    parts = [
        Part("a", ok, lambda: closing("a")),
        Part("slow", hang, lambda: closing("slow")),
        Part("never", ok, lambda: closing("never")),
    ]
    lifecycle = Lifecycle(parts)

    async def scenario() -> None:
        task = asyncio.create_task(lifecycle.start())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert events == ["start a", "start slow", "close slow", "close a"]
    assert lifecycle.state is LifecycleState.CLOSED
