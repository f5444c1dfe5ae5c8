"""Unit tests of ``lambdad.invoke.records``: the destination record and the DLQ attributes."""

from __future__ import annotations

import json

from lambdad.invoke.records import Condition, Response, dead_letter_attributes, record, timestamp

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"
FAILED = Response(200, "3", "Unhandled", b'{"errorMessage":"bad","errorType":"ValueError"}')


def test_timestamp_is_utc_with_milliseconds() -> None:
    """Timestamps read like ``2019-11-14T18:16:05.568Z``."""
    assert timestamp(1573755365.568901) == "2019-11-14T18:16:05.568Z"
    assert timestamp(1573755365.0) == "2019-11-14T18:16:05.000Z"


def test_a_failure_record_has_the_spec_keys_in_order() -> None:
    """The record's keys and nested contexts are those of the wire spec, in its order."""
    document = record(
        request_id="r1",
        function_arn=ARN,
        condition=Condition.RETRIES_EXHAUSTED,
        invoke_count=3,
        request_payload=b'{"a": 1}',
        response=FAILED,
        now=0.0,
    )
    assert json.loads(json.dumps(document)) == {
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
    document = record(
        request_id="r2",
        function_arn=ARN,
        condition=Condition.SUCCESS,
        invoke_count=1,
        request_payload=b"not json",
        response=ok,
        now=0.0,
    )
    assert document["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert document["requestPayload"] == "not json"
    assert document["responsePayload"] == "plain text"


def test_an_event_that_never_ran_has_no_response_parts() -> None:
    """An event that expired before any attempt answered carries only its request."""
    document = record(
        request_id="r3",
        function_arn=ARN,
        condition=Condition.EVENT_AGE_EXCEEDED,
        invoke_count=0,
        request_payload=b"{}",
        response=None,
        now=0.0,
    )
    assert list(document) == ["version", "timestamp", "requestContext", "requestPayload"]


def test_a_response_survives_the_event_attributes() -> None:
    """A failed attempt's response is kept in the queued event's attributes and read back."""
    assert Response.from_attributes(FAILED.to_attributes()) == FAILED
    assert Response.from_attributes({"throttles": "2"}) is None


def test_dead_letter_attributes_clip_the_message_to_1_kb() -> None:
    """``ErrorMessage`` is the response's ``errorMessage``, its first 1 KB (whole characters)."""
    long = Response(200, "$LATEST", "Unhandled", json.dumps({"errorMessage": "é" * 1000}).encode())
    attributes = dead_letter_attributes("r4", long)
    assert attributes["RequestID"] == {"DataType": "String", "StringValue": "r4"}
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"] == {"DataType": "String", "StringValue": "é" * 512}
