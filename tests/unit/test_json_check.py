"""The JSON check of invoke payloads and its helper process."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from lambdad.invoke.json_check import JsonChecker, embedding, error_message, json_error

PREFIX = "Could not parse request body into json: Could not parse payload into json: "


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": [1, 2.5, true, null, "x"]}',
        b"  [] ",
        b'"\\ud800"',  # a lone surrogate escape: Jackson (AWS) takes it
        b"\xef\xbb\xbf{}",  # a byte order mark: Jackson takes it
        '"h\u00e9llo"'.encode(),
    ],
)
def test_json_is_accepted(payload: bytes) -> None:
    """Every payload AWS's parser takes is JSON here too."""
    assert json_error(payload) is None


@pytest.mark.parametrize(
    ("payload", "start"),
    [
        (b"hello there", "Unrecognized token 'hello'"),
        (b"[1, 2,]", "Unrecognized token '[1,'"),
        (b'{"a": 1', "Unrecognized token '{\"a\":'"),
        (b"[NaN]", "Non-standard token 'NaN'"),
        (b'"\xff"', "Invalid UTF-8 start byte"),
    ],
)
def test_non_json_gets_aws_message(payload: bytes, start: str) -> None:
    """A payload that is not JSON (for Jackson, AWS's parser, ``NaN`` is not) gets
    ``Could not parse request body into json: ...``."""
    message = json_error(payload)
    assert message is not None
    assert message.startswith(PREFIX + start), message


def test_the_helper_answers_as_the_check_in_place_and_survives_being_killed() -> None:
    """Large payloads are checked by the helper with the same answers; a helper that died is
    replaced, and after close the check runs in place."""

    async def scenario() -> None:
        checker = JsonChecker()
        valid = json.dumps([{"id": i} for i in range(50_000)]).encode()
        invalid = valid[:-1]
        try:
            assert await checker.error_of(valid) is None
            assert await checker.error_of(invalid) == json_error(invalid)
            helper = checker._proc
            assert helper is not None
            helper.kill()
            await helper.wait()
            assert await checker.error_of(valid) is None
            assert checker._proc is not None
            assert checker._proc.pid != helper.pid
        finally:
            await checker.close()
        assert checker._proc is None
        assert await checker.error_of(b"nope") == json_error(b"nope")

    asyncio.run(scenario())


def test_a_check_cancelled_midway_does_not_leave_the_next_one_a_stale_answer() -> None:
    """A check cancelled while the helper works (its caller went away) retires that helper,
    so the next check reads its own answer, not the cancelled one's."""

    async def scenario() -> None:
        checker = JsonChecker()
        invalid = json.dumps([{"id": i} for i in range(200_000)]).encode()[:-1]
        try:
            task = asyncio.create_task(checker.error_of(invalid))
            while checker._proc is None:  # noqa: ASYNC110 - polling the checker's own state
                await asyncio.sleep(0.001)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await checker.error_of(b"[1]") is None
        finally:
            await checker.close()

    asyncio.run(scenario())


def test_a_value_followed_by_members_is_not_json() -> None:
    """``1, "b": 2`` is not one JSON value: AWS refuses it (the check once took it as JSON,
    as it skimmed the payload wrapped in an object)."""
    message = json_error(b'1, "b": 2')
    assert message is not None
    assert message.startswith(PREFIX), message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b' {"a": "\\u00e9"} ', None),
        (b"", b"null"),
        (b"plain", b'"plain"'),
        (b"[NaN]", b"[NaN]"),
        (b'\xef\xbb\xbf{"a": 1}', b'{"a": 1}'),
        (b'1, "b": 2', b'"1, \\"b\\": 2"'),
    ],
)
def test_embedding_splices_standard_json_and_keeps_the_rest_as_it_reads(
    payload: bytes, expected: bytes | None
) -> None:
    """Standard JSON is carried as it is (None); anything else as Python's json reads it, as
    its text when it is not JSON, and an empty payload as null."""
    assert embedding(payload) == expected


def test_the_helper_answers_embedding_and_message_questions_as_in_place() -> None:
    """The helper's embedding and error message of large payloads are the ones worked out in
    place, a lone surrogate in a message included."""

    async def scenario() -> None:
        checker = JsonChecker()
        valid = json.dumps([{"id": i, "k": "é"} for i in range(50_000)]).encode()
        error = b'{"errorMessage": "\\ud800 \xc3\xa9", "trace": ' + valid + b"}"
        try:
            for payload in (valid, valid[:-1], b"\xef\xbb\xbf" + valid, valid + b"x"):
                assert await checker.embedding_of(payload) == embedding(payload)
                assert await checker.error_message_of(payload) == error_message(payload)
            assert await checker.error_message_of(error) == "\ud800 é" == error_message(error)
            assert await checker.error_of(valid[:-1]) == json_error(valid[:-1])
        finally:
            await checker.close()

    asyncio.run(scenario())
