"""Unit tests of the invocation channel: the hand-off between an environment and its runtime."""

from __future__ import annotations

import asyncio

import pytest

from lambdad.runtime.channel import ChannelHooks, InvocationChannel
from lambdad.runtime.invocation import Invocation
from lambdad.runtime.replies import Crashed, RuntimeApiError


def _invocation(request_id: str = "rid") -> Invocation:
    return Invocation(request_id, b"{}", "arn:aws:lambda:us-east-1:0:function:f")


def test_the_first_next_ends_init_and_a_later_one_takes_the_queued_event() -> None:
    """A runtime's first ``/next`` ends init; an event handed over before the next ``/next``
    waits for it and carries its own deadline."""
    ready: list[str] = []

    async def main() -> None:
        channel = InvocationChannel(ChannelHooks(ready=lambda: ready.append("ready")))
        init = channel.begin_init()
        parked = asyncio.ensure_future(channel.next())
        await asyncio.sleep(0)
        assert init.done()
        assert init.result() is None
        assert ready == ["ready"]
        channel.end_init()
        exchange = asyncio.ensure_future(channel.exchange(_invocation(), 1234, 5))
        delivery = await parked
        assert (delivery.request_id, delivery.deadline_ms) == ("rid", 1234)
        channel.respond("rid", b'"ok"', "application/json")
        reply = await exchange
        assert reply.ok
        assert reply.body == b'"ok"'

    asyncio.run(main())


def test_a_second_next_during_an_invocation_gets_the_same_event() -> None:
    """As RIE does, a second ``/next`` before the reply re-renders the same event and id."""

    async def main() -> None:
        channel = InvocationChannel(ChannelHooks())
        exchange = asyncio.ensure_future(channel.exchange(_invocation("one"), 0, 5))
        await asyncio.sleep(0)
        first = await channel.next()
        second = await channel.next()
        assert first is second
        assert first.request_id == "one"
        channel.error("one", b'{"errorType":"E","errorMessage":"m"}', "application/json", None)
        reply = await exchange
        assert not reply.ok
        assert reply.error_type == "E"

    asyncio.run(main())


def test_states_are_checked_before_ids_as_rapid_does() -> None:
    """After a reply, any further reply is a 403 naming ``RuntimeResponseSent``, even with a
    wrong request id; with no invocation under way a reply is a 400."""

    async def main() -> None:
        channel = InvocationChannel(ChannelHooks())
        with pytest.raises(RuntimeApiError) as no_invocation:
            channel.respond("rid", b"", "")
        assert (no_invocation.value.status, no_invocation.value.error_type) == (
            400,
            "InvalidRequestID",
        )
        exchange = asyncio.ensure_future(channel.exchange(_invocation(), 0, 5))
        await asyncio.sleep(0)
        await channel.next()
        channel.respond("rid", b"{}", "")
        with pytest.raises(RuntimeApiError) as again:
            channel.respond("other", b"{}", "")
        assert again.value.status == 403
        assert again.value.message.startswith("State transition from RuntimeResponseSent to ")
        await exchange

    asyncio.run(main())


def test_a_crash_ends_the_invocation_and_a_closed_channel_refuses_next() -> None:
    """The runtime's death fails the waiting invocation; once closed, ``/next`` gets a 500
    and a runtime parked in it is released with one."""

    async def main() -> None:
        channel = InvocationChannel(ChannelHooks())
        exchange = asyncio.ensure_future(channel.exchange(_invocation(), 0, 5))
        await asyncio.sleep(0)
        assert channel.crash(Crashed("Runtime exited with error: exit status 1"))
        with pytest.raises(Crashed):
            await exchange
        parked = asyncio.ensure_future(channel.next())
        await asyncio.sleep(0)
        assert channel.parked
        channel.close()
        channel.release_parked()
        with pytest.raises(RuntimeApiError) as released:
            await parked
        assert released.value.status == 500
        with pytest.raises(RuntimeApiError):
            await channel.next()

    asyncio.run(main())


def test_an_invocation_without_a_reply_times_out() -> None:
    """``exchange`` gives up at its timeout; the channel is free for the next invocation."""

    async def main() -> None:
        channel = InvocationChannel(ChannelHooks())
        with pytest.raises(TimeoutError):
            await channel.exchange(_invocation(), 0, 0.01)
        assert not channel.busy

    asyncio.run(main())
