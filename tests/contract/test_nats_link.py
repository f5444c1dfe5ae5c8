"""``NatsLink`` against a real NATS server: request and reply with headers, queue groups,
ordered inboxes, the client's errors as the store's, and a server restarted under a link."""

from __future__ import annotations

import asyncio

import pytest

from lambdad.store.base import StoreUnavailable
from lambdad.store.nats_link import LinkState, Message, NatsLink, NoResponders, ReplyTimeout
from tests.contract.conftest import run
from tests.nats_server import NatsServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


async def _echo(message: Message) -> None:
    await message.respond(message.data.upper(), {"X-Seen": message.subject})


@run
async def test_a_request_gets_its_reply_with_headers(server: NatsServer) -> None:
    link = NatsLink(server.url, "test")
    await link.open()
    try:
        await link.serve("echo.one", _echo)
        reply = await link.request("echo.one", b"hello", timeout=2, headers={"A": "b"})
        assert reply.data == b"HELLO"
        assert reply.headers["X-Seen"] == "echo.one"
    finally:
        await link.close()
    assert link.state is LinkState.CLOSED
    await link.close()  # idempotent


@run
async def test_nobody_serving_and_nobody_answering_are_told_apart(server: NatsServer) -> None:
    link = NatsLink(server.url, "test")
    await link.open()

    async def silent(message: Message) -> None:
        await asyncio.sleep(5)

    try:
        with pytest.raises(NoResponders):
            await link.request("nobody.here", b"x", timeout=2)
        await link.serve("slow", silent)
        with pytest.raises(ReplyTimeout):
            await link.request("slow", b"x", timeout=0.2)
    finally:
        await link.close()


@run
async def test_a_publish_with_a_reply_subject_hears_answers_or_that_nobody_listens(
    server: NatsServer,
) -> None:
    """A message published with a reply subject gets its answers there, in order; published
    to a subject nobody serves, the server's no-responders status comes there instead."""
    link = NatsLink(server.url, "test")
    await link.open()

    async def twice(message: Message) -> None:
        await link.publish(message.reply, b"first")
        await link.publish(message.reply, b"second")

    try:
        assert link.max_payload >= 1024 * 1024  # the server's default is 1 MB
        replies = await link.listen("answers.*")
        await link.serve("twice", twice)
        await link.publish("twice", b"x", reply="answers.1")
        assert [(await replies.next(2)).data for _ in range(2)] == [b"first", b"second"]
        await link.publish("nobody.here", b"x", reply="answers.2")
        unheard = await replies.next(2)
        assert unheard.subject == "answers.2"
        assert unheard.is_no_responders
        await replies.close()
    finally:
        await link.close()


@run
async def test_a_followed_subject_calls_back_in_order_and_serving_can_stop(
    server: NatsServer,
) -> None:
    """``follow`` calls its callback for each message in the order published; after
    ``stop_serving`` a served subject has nobody listening (the next request is
    NoResponders)."""
    link = NatsLink(server.url, "test")
    await link.open()
    seen: list[bytes] = []
    try:
        await link.follow("followed", lambda message: seen.append(message.data))
        for n in range(50):
            await link.publish("followed", b"%d" % n)
        await link.flush()
        for _ in range(200):  # delivered to this same connection: poll, bounded
            if len(seen) == 50:
                break
            await asyncio.sleep(0.01)
        assert seen == [b"%d" % n for n in range(50)]
        await link.serve("echo.stop", _echo)
        assert (await link.request("echo.stop", b"x", timeout=2)).data == b"X"
        await link.stop_serving("echo.stop")
        with pytest.raises(NoResponders):
            await link.request("echo.stop", b"x", timeout=2)
    finally:
        await link.close()


@run
async def test_a_queue_group_gives_each_request_to_one_member(server: NatsServer) -> None:
    links = [NatsLink(server.url, f"member-{n}") for n in range(2)]
    caller = NatsLink(server.url, "caller")
    seen: list[int] = []
    for n, link in enumerate(links):
        await link.open()

        async def handler(message: Message, n: int = n) -> None:
            seen.append(n)
            await message.respond(b"ok")

        await link.serve("work", handler, queue="workers")
    await caller.open()
    try:
        for _ in range(20):
            assert (await caller.request("work", b"", timeout=2)).data == b"ok"
        assert len(seen) == 20
    finally:
        for link in (*links, caller):
            await link.close()


@run
async def test_an_inbox_reads_messages_in_order(server: NatsServer) -> None:
    link = NatsLink(server.url, "test")
    await link.open()
    try:
        subject = link.inbox()
        inbox = await link.listen(subject)
        for n in range(50):
            await link.publish(subject, str(n).encode())
        got = [int((await inbox.next(2)).data) for _ in range(50)]
        assert got == list(range(50))
        with pytest.raises(ReplyTimeout):
            await inbox.next(0.05)
        await inbox.close()
    finally:
        await link.close()


@run
async def test_an_unreachable_server_is_unavailable() -> None:
    link = NatsLink("nats://127.0.0.1:1", "test")
    with pytest.raises(StoreUnavailable):
        await link.open(timeout=1)
    assert link.state is LinkState.CLOSED


@run
async def test_the_link_comes_back_after_the_server_restarts(server: NatsServer) -> None:
    link = NatsLink(server.url, "test")
    await link.open()
    try:
        await link.serve("echo.two", _echo)
        server.kill()
        server.start()
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            try:
                reply = await link.request("echo.two", b"back", timeout=0.5)
                break
            except StoreUnavailable:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
        assert reply.data == b"BACK"
    finally:
        await link.close()


def test_a_link_closes_cleanly_while_the_server_is_away(server: NatsServer) -> None:
    """A node stopping while NATS is down closes its link without an error (on uvloop, as
    lambdad runs, the client's close trips over its own closed transport otherwise)."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        link = NatsLink(server.url, "test")
        await link.open()
        await link.serve("echo.three", _echo)
        server.kill()
        deadline = asyncio.get_running_loop().time() + 15
        while link.connected.is_set():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await link.publish("echo.three", b"pending")
        await link.close()
        assert link.state is LinkState.CLOSED

    uvloop.run(scenario())
