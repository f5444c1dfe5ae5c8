"""A streamed request body (``lambdad.runtime.body_stream``) and the caller's sink
(``lambdad.runtime.streaming``): order, end, trailers, backpressure, discarding."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from lambdad.runtime import streamed
from lambdad.runtime.body_stream import BodyBroken, BodyStream
from lambdad.runtime.replies import Crashed
from lambdad.runtime.streaming import ResponseSink, SinkState


def test_chunks_in_order_then_end_with_trailers() -> None:
    """Chunks come out in the order fed, then None; trailers are there at the end."""

    async def scenario() -> None:
        body = BodyStream("text/plain")
        body.feed(b"a")
        body.feed(b"b")
        body.trailer("x-t", "1")
        body.finish()
        assert [await body.read(), await body.read(), await body.read()] == [b"a", b"b", None]
        assert body.trailers == {"x-t": "1"}
        assert body.size == 2

    asyncio.run(scenario())


def test_backpressure_pauses_and_resumes_the_connection() -> None:
    """Past the high-water mark the connection is paused; reading below half resumes it."""

    async def scenario() -> None:
        calls: list[str] = []
        body = BodyStream("", lambda: calls.append("pause"), lambda: calls.append("resume"), 10)
        for _ in range(4):
            body.feed(b"xxx")
        assert calls == ["pause"]
        await body.read()
        await body.read()
        assert calls == ["pause"]
        await body.read()
        assert calls == ["pause", "resume"]

    asyncio.run(scenario())


def test_discard_drops_and_resumes() -> None:
    """A discarded body drops what it held and what still comes, and resumes reading."""

    async def scenario() -> None:
        calls: list[str] = []
        body = BodyStream("", lambda: calls.append("pause"), lambda: calls.append("resume"), 4)
        body.feed(b"12345")
        body.discard()
        body.feed(b"more")
        body.finish()
        assert calls == ["pause", "resume"]
        assert await body.read() is None
        assert body.size == 9

    asyncio.run(scenario())


def test_broken_body_raises_with_its_cause() -> None:
    """A body that ends early raises BodyBroken, carrying the crash when one was the cause."""

    async def scenario() -> None:
        body = BodyStream("")
        reader = asyncio.create_task(body.read())
        await asyncio.sleep(0)
        crash = Crashed("Runtime exited with error: exit status 1")
        body.fail(crash)
        with pytest.raises(BodyBroken) as info:
            await reader
        assert info.value.cause is crash

    asyncio.run(scenario())


def test_sink_waits_while_full_and_never_once_abandoned() -> None:
    """``put`` waits while the sink holds its high-water mark; an abandoned sink drops at once."""

    async def scenario() -> None:
        sink = ResponseSink(high=4)
        sink.begin("text/plain")
        await sink.put(b"1234")
        blocked = asyncio.create_task(sink.put(b"5"))
        await asyncio.sleep(0)
        assert not blocked.done()
        assert await sink.get() == b"1234"
        await blocked
        sink.abandon()
        await sink.put(b"x" * 100)
        assert sink.state is SinkState.ABANDONED
        assert await sink.get() is None

    asyncio.run(scenario())


def _fed(*chunks: bytes, trailers: dict[str, str] | None = None) -> BodyStream:
    body = BodyStream("text/plain")
    for chunk in chunks:
        body.feed(chunk)
    for name, value in (trailers or {}).items():
        body.trailer(name, value)
    body.finish()
    return body


def test_reply_over_the_streamed_limit_is_too_large() -> None:
    """Past the streamed-response limit the caller's stream ends with
    Function.ResponseSizeTooLarge, the rest is dropped and the runtime will be answered 413
    (Lambda's 200 MB limit, here shrunk to 10 bytes)."""

    async def scenario() -> None:
        sink = ResponseSink()
        body = _fed(b"12345", b"67890", b"X")
        reply = await streamed.read_reply(body, sink, time.perf_counter() + 30, limit=10)
        assert not reply.ok
        assert reply.error_type == "Function.ResponseSizeTooLarge"
        assert body.too_large
        assert [await sink.get(), await sink.get(), await sink.get()] == [b"12345", b"67890", None]

    asyncio.run(scenario())


def test_reply_trailers_make_a_function_error() -> None:
    """The error trailers (type, and base64 of the error JSON) make the reply a function
    error with that body; without them the reply succeeds."""

    async def scenario() -> None:
        error = b'{"errorType":"Custom.Late","errorMessage":"late"}'
        trailers = {
            "lambda-runtime-function-error-type": "Custom.Late",
            "lambda-runtime-function-error-body": base64.b64encode(error).decode(),
        }
        deadline = time.perf_counter() + 30
        reply = await streamed.read_reply(_fed(b"a", trailers=trailers), None, deadline)
        assert (reply.ok, reply.body, reply.error_type) == (False, error, "Custom.Late")
        reply = await streamed.read_reply(_fed(b"a", b"b"), None, deadline)
        assert (reply.ok, reply.body, reply.content_type) == (True, b"ab", "text/plain")

    asyncio.run(scenario())


def test_reply_times_out_at_the_deadline() -> None:
    """A body still open at the deadline raises TimeoutError and is discarded from then on."""

    async def scenario() -> None:
        body = BodyStream("")
        with pytest.raises(TimeoutError):
            await streamed.read_reply(body, ResponseSink(), time.perf_counter())
        body.feed(b"late")
        assert body.size == 4

    asyncio.run(scenario())
