"""Unit tests of the change stream that tells everything hanging on a function of its writes."""

from __future__ import annotations

import asyncio

import pytest

from lambdad.control.changes import (
    AliasDeleted,
    Change,
    ChangeStream,
    FunctionChanged,
    FunctionDeleted,
    Subscriber,
)


def test_subscribers_hear_each_change_in_the_order_they_subscribed() -> None:
    """Every subscriber gets every event, one event at a time, first subscriber first."""
    stream = ChangeStream()
    heard: list[tuple[str, Change]] = []

    def subscriber(tag: str) -> Subscriber:
        async def hear(change: Change) -> None:
            heard.append((tag, change))

        return hear

    stream.subscribe(subscriber("a"))
    stream.subscribe(subscriber("b"))
    first, second = FunctionChanged("r", "f"), FunctionDeleted("r", "f", "3")

    async def publish() -> None:
        await stream.publish(first)
        await stream.publish(second)

    asyncio.run(publish())
    assert heard == [("a", first), ("b", first), ("a", second), ("b", second)]


def test_a_failing_subscriber_does_not_keep_the_others_from_hearing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write stands when one subscriber fails: it is logged, and the next still hears."""
    stream = ChangeStream()
    heard: list[Change] = []

    async def broken(change: Change) -> None:
        raise RuntimeError("broken subscriber")

    async def hear(change: Change) -> None:
        heard.append(change)

    stream.subscribe(broken)
    stream.subscribe(hear)
    change = AliasDeleted("r", "f", "live")
    asyncio.run(stream.publish(change))
    assert heard == [change]
    assert "broken subscriber" in caplog.text


def test_events_are_plain_frozen_values() -> None:
    """Events compare by value and cannot be changed, so another node can send the same ones."""
    assert FunctionDeleted("r", "f", None) == FunctionDeleted("r", "f", None)
    with pytest.raises(AttributeError):
        FunctionChanged("r", "f").name = "g"  # type: ignore[misc]
