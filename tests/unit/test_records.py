"""Unit tests of ``lambdad.invoke.records``: the destination record and the DLQ attributes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lambdad.invoke import json_check
from lambdad.invoke.payloads import PayloadCheck
from lambdad.invoke.records import (
    Condition,
    Embed,
    Response,
    dead_letter_attributes,
    record,
    timestamp,
)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"
FAILED = Response(200, "3", "Unhandled", b'{"errorMessage":"bad","errorType":"ValueError"}')


async def _in_place(payload: bytes) -> bytes:
    """``PayloadCheck.embedded`` without the helper process: everything in place."""
    return json_check.embedding(payload) or payload


def _record(
    request_payload: bytes,
    response: Response | None,
    *,
    condition: Condition = Condition.SUCCESS,
    invoke_count: int = 1,
    request_id: str = "r1",
    embed: Embed = _in_place,
) -> dict[str, Any]:
    """The record built by ``record``, read back from its JSON."""
    built = asyncio.run(
        record(
            request_id=request_id,
            function_arn=ARN,
            condition=condition,
            invoke_count=invoke_count,
            request_payload=request_payload,
            response=response,
            now=0.0,
            embed=embed,
        )
    )
    assert built.request_id == request_id
    document: dict[str, Any] = json.loads(built.body)
    return document


def test_timestamp_is_utc_with_milliseconds() -> None:
    """Timestamps read like ``2019-11-14T18:16:05.568Z``."""
    assert timestamp(1573755365.568901) == "2019-11-14T18:16:05.568Z"
    assert timestamp(1573755365.0) == "2019-11-14T18:16:05.000Z"


def test_a_failure_record_has_the_spec_keys_in_order() -> None:
    """The record's keys and nested contexts are those of the wire spec, in its order."""
    document = _record(b'{"a": 1}', FAILED, condition=Condition.RETRIES_EXHAUSTED, invoke_count=3)
    assert document == {
        "version": "1.0",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "requestContext": {
            "requestId": "r1",
            "functionArn": ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"a": 1},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "3",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "bad", "errorType": "ValueError"},
    }
    assert list(document) == [
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    ]


def test_a_success_record_has_no_function_error_and_keeps_non_json_as_text() -> None:
    """On success ``functionError`` is absent; a payload that is not JSON is kept as text."""
    ok = Response(200, "$LATEST", None, b"plain text")
    document = _record(b"not json", ok)
    assert document["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert document["requestPayload"] == "not json"
    assert document["responsePayload"] == "plain text"


def test_an_event_that_never_ran_has_no_response_parts() -> None:
    """An event that expired before any attempt answered carries only its request."""
    document = _record(b"{}", None, condition=Condition.EVENT_AGE_EXCEEDED, invoke_count=0)
    assert list(document) == ["version", "timestamp", "requestContext", "requestPayload"]


def test_a_response_survives_the_event_attributes() -> None:
    """A failed attempt's response is kept in the queued event's attributes and read back."""
    assert Response.from_attributes(FAILED.to_attributes()) == FAILED
    assert Response.from_attributes({"throttles": "2"}) is None


async def _message_in_place(payload: bytes) -> str:
    """``PayloadCheck.error_message`` without the helper process."""
    return json_check.error_message(payload)


def test_dead_letter_attributes_clip_the_message_to_1_kb() -> None:
    """``ErrorMessage`` is the response's ``errorMessage``, its first 1 KB (whole characters)."""
    long = Response(200, "$LATEST", "Unhandled", json.dumps({"errorMessage": "é" * 1000}).encode())
    attributes = asyncio.run(dead_letter_attributes("r4", long, _message_in_place))
    assert attributes["RequestID"] == {"DataType": "String", "StringValue": "r4"}
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"] == {"DataType": "String", "StringValue": "é" * 512}


# ---- the record is the one the builder made by parsing the payloads (before it spliced them)


def _old_json_or_text(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def _old_record(request_payload: bytes, response: Response) -> str:
    """The record as the builder made it before: both payloads parsed with ``json.loads``."""
    context: dict[str, Any] = {
        "statusCode": response.status,
        "executedVersion": response.executed_version,
    }
    if response.function_error:
        context["functionError"] = response.function_error
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": timestamp(0.0),
            "requestContext": {
                "requestId": "r1",
                "functionArn": ARN,
                "condition": "Success",
                "approximateInvokeCount": 1,
            },
            "requestPayload": _old_json_or_text(request_payload),
            "responseContext": context,
            "responsePayload": _old_json_or_text(response.payload),
        }
    )


def _canonical(document: Any) -> str:
    """One text per meaning: same members in the same order, same values (``NaN`` included)."""
    return json.dumps(document)


def _big_json(size: int) -> bytes:
    """Dense JSON of about ``size`` bytes with non-ASCII text and escapes in it."""
    item = (
        '{"id": %d, "name": "h\\u00e9llo \\"w\\" \\\\ \\/ \\n", "tags": ["日本", "😀", 2.50, -0]}'
    )
    count = size // 70
    return ("[" + ", ".join(item % i for i in range(count)) + "]").encode()


PAYLOADS = {
    "object": b'{"a": 1, "b": [true, false, null]}',
    "padded and odd numbers": b" [1, 2.50, -0, 1e400, 1.5e-400, 123456789012345678901234567890] \n",
    "unicode": '{"k": "héllo 日本 😀", "ключ": "\u2028"}'.encode(),
    "escapes": b'{"k": "\\u00e9\\ud83d\\ude00 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u0000 \\u001f"}',
    "duplicate keys": b'{"a": 1, "a": 2}',
    "lone surrogate escape": b'["\\ud800", "\\udc00x"]',
    "surrogate bytes": b'"\xed\xa0\x80"',
    "byte order mark": b'\xef\xbb\xbf{"a": "\xc3\xa9"}',
    "utf-16": '{"a": "é"}'.encode("utf-16"),
    "nan and infinity": b"[NaN, Infinity, -Infinity]",
    "plain text": b"plain text",
    "invalid utf-8": b"\xff\xfe not \xc3 text",
    "truncated json": b'{"a": [1, 2',
    "a member after the value": b'1, "responseContext": {}',
    "two values": b'{"a": 1} {"b": 2}',
    "empty": b"",
    "a string": b'"just a string"',
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_record_means_what_the_parsing_builder_made(payload: bytes) -> None:
    """Splicing a payload gives the record the parsing builder gave: the same members and
    values, JSON as JSON (as its parser read it), anything else as its text, empty as null."""
    response = Response(200, "$LATEST", None, payload)
    expected = json.loads(_old_record(payload, response))
    assert _canonical(_record(payload, response)) == _canonical(expected)


def test_standard_json_is_spliced_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload that is standard JSON goes into the record as its own bytes: no parser
    builds it (``json.loads`` is never called)."""

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("a payload was parsed")

    monkeypatch.setattr(json, "loads", refuse)
    payload = PAYLOADS["escapes"]
    built = asyncio.run(
        record(
            request_id="r1",
            function_arn=ARN,
            condition=Condition.SUCCESS,
            invoke_count=1,
            request_payload=payload,
            response=Response(200, "$LATEST", None, payload),
            now=0.0,
            embed=_in_place,
        )
    )
    assert built.body.count(payload) == 2


def test_json_nested_past_the_parser_limit_is_carried_as_text() -> None:
    """A response nested deeper than the parsers go (the old builder raised on it) is carried
    as its text, so the record is still delivered."""
    deep = b"[" * 5000 + b"]" * 5000
    document = _record(b"{}", Response(200, "$LATEST", None, deep))
    assert document["responsePayload"] == deep.decode()


@pytest.mark.parametrize(
    ("request_payload", "response_payload"),
    [
        (_big_json(1024 * 1024 - 100), _big_json(6 * 1024 * 1024 - 100)),
        (_big_json(1024 * 1024)[:-1], ("é" * 3_000_000).encode()),
        (b"\xef\xbb\xbf" + _big_json(300_000), b"[NaN, " + _big_json(2_000_000)[1:]),
        (_big_json(300_000).decode().encode("utf-16"), b"\xff" + _big_json(20_000)),
    ],
    ids=["json", "truncated and text", "bom and nan", "utf-16 and invalid utf-8"],
)
def test_a_large_record_built_through_the_helper_is_the_parsing_builders(
    request_payload: bytes, response_payload: bytes
) -> None:
    """Payloads of up to 1 MB and 6 MB, embedded by ``PayloadCheck`` (its helper process for
    anything large), give the record the parsing builder gave."""
    response = Response(200, "$LATEST", "Unhandled", response_payload)

    async def build() -> dict[str, Any]:
        check = PayloadCheck()
        try:
            built = await record(
                request_id="r1",
                function_arn=ARN,
                condition=Condition.SUCCESS,
                invoke_count=1,
                request_payload=request_payload,
                response=response,
                now=0.0,
                embed=check.embedded,
            )
        finally:
            await check.close()
        document: dict[str, Any] = json.loads(built.body)
        return document

    expected = json.loads(_old_record(request_payload, response))
    assert _canonical(asyncio.run(build())) == _canonical(expected)


def _old_error_message(response: Response) -> str:
    """A dead letter's message as it was worked out before: the response parsed."""
    parsed = _old_json_or_text(response.payload)
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        message: str = parsed["errorMessage"]
    else:
        message = response.payload.decode("utf-8", "replace")
    return message or (response.function_error or f"HTTP {response.status}")


ERROR_BODIES = {
    **PAYLOADS,
    "error": b'{"errorMessage": "bad \\u00e9 \\"x\\"", "errorType": "ValueError"}',
    "no message": b'{"errorType": "ValueError", "stackTrace": []}',
    "message not a string": b'{"errorMessage": 1}',
    "message twice": b'{"errorMessage": "first", "errorMessage": "last"}',
    "message after nan": b'{"trace": [NaN], "errorMessage": "after nan"}',
    "message and invalid utf-8": b'{"errorMessage": "m", "x": "\xff"}',
    "large error": b'{"stackTrace": ' + _big_json(2_000_000) + b', "errorMessage": "big"}',
    "large truncated error": b'{"errorMessage": "cut", "stackTrace": ' + _big_json(400_000),
    "large text": ("é" * 1_000_000).encode(),
}


@pytest.mark.parametrize("payload", ERROR_BODIES.values(), ids=ERROR_BODIES.keys())
def test_a_dead_letter_message_is_the_one_the_parsing_code_read(payload: bytes) -> None:
    """A dead letter's ``ErrorMessage`` is the response's ``errorMessage`` when it is a JSON
    object with a string one, else its text, else the function error: what it was when the
    response was parsed with ``json.loads``, now read by msgspec or by the helper process."""
    response = Response(200, "$LATEST", "Unhandled", payload)
    expected = _old_error_message(response)
    clipped = expected.encode()[:1024].decode("utf-8", "ignore")

    async def attributes() -> dict[str, Any]:
        check = PayloadCheck()
        try:
            return await dead_letter_attributes("r5", response, check.error_message)
        finally:
            await check.close()

    assert asyncio.run(attributes())["ErrorMessage"]["StringValue"] == clipped
