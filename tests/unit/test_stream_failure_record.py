"""The on-failure record of a stream batch (``lambdad.events.stream_failures.failure_record``)
built exactly as AWS's developer guide shows it for Kinesis and for DynamoDB Streams."""

from __future__ import annotations

import datetime

import pytest

from lambdad.events.shards import StreamRecord
from lambdad.events.stream_failures import (
    RECORD_AGE_EXCEEDED,
    RETRIES_EXHAUSTED,
    failure_record,
)

FUNCTION = "arn:aws:lambda:us-east-2:123456789012:function:myfunction"


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def record(sequence: str, arrival: float) -> StreamRecord:
    return StreamRecord(sequence, arrival, "pk", 10, {})


def test_a_dynamodb_batch_record_is_awss() -> None:
    """A DynamoDB batch whose retries are spent gives AWS's record: requestContext,
    responseContext, version 1.0, a millisecond timestamp, and DDBStreamBatchInfo with the
    first and last sequence numbers, arrivals in whole seconds, the batch size and the
    stream's ARN (AWS's example in services-dynamodb-errors)."""
    stream = "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
    first = record("800000000003126276362", at("2019-11-14T00:13:19.400+00:00"))
    built = failure_record(
        batch_info_key="DDBStreamBatchInfo",
        stream_arn=stream,
        shard_id="shardId-00000001573689847184-864758bb",
        records=[first],
        condition=RETRIES_EXHAUSTED,
        request_id="316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
        invoke_count=1,
        status_code=200,
        executed_version="$LATEST",
        function_error="Unhandled",
        function_arn=FUNCTION,
        now=at("2019-11-14T00:13:49.717+00:00"),
    )
    assert built == {
        "requestContext": {
            "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
            "functionArn": FUNCTION,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:13:49.717Z",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001573689847184-864758bb",
            "startSequenceNumber": "800000000003126276362",
            "endSequenceNumber": "800000000003126276362",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
            "batchSize": 1,
            "streamArn": stream,
        },
    }
    assert list(built) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "DDBStreamBatchInfo",
    ]


def test_a_kinesis_batch_record_keeps_milliseconds() -> None:
    """A Kinesis batch's record says KinesisBatchInfo, with arrivals to the millisecond (AWS's
    example: 2019-11-14T00:38:04.835Z), the first record's sequence number as start and the
    last one's as end."""
    records = [
        record(
            "4960118965842235937883629852182763847532018901230970472",
            at("2019-11-14T00:38:04.835+00:00"),
        ),
        record(
            "4960118965842235937883629852182763847532018901230970473",
            at("2019-11-14T00:38:05.000+00:00"),
        ),
        record(
            "4960118965842235937883629852290237352895759434862349518",
            at("2019-11-14T00:38:05.580+00:00"),
        ),
    ]
    built = failure_record(
        batch_info_key="KinesisBatchInfo",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        shard_id="shardId-000000000001",
        records=records,
        condition=RETRIES_EXHAUSTED,
        request_id="c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        invoke_count=4,
        status_code=200,
        executed_version="$LATEST",
        function_error="Unhandled",
        function_arn=FUNCTION,
        now=at("2019-11-14T00:38:06.021+00:00"),
    )
    assert built["KinesisBatchInfo"] == {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": records[0].sequence_number,
        "endSequenceNumber": records[-1].sequence_number,
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 3,
        "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
    }
    assert built["timestamp"] == "2019-11-14T00:38:06.021Z"
    assert built["requestContext"]["approximateInvokeCount"] == 4


def test_a_batch_never_answered_has_no_response_members() -> None:
    """Records too old before any invocation answered (condition RecordAgeExceeded, no
    status) give an empty responseContext: lambdad leaves out what it does not know."""
    built = failure_record(
        batch_info_key="DDBStreamBatchInfo",
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
        shard_id="s",
        records=[record("1", 0.0)],
        condition=RECORD_AGE_EXCEEDED,
        request_id="r",
        invoke_count=0,
        status_code=None,
        executed_version=None,
        function_error=None,
        function_arn=FUNCTION,
        now=0.0,
    )
    assert built["requestContext"]["condition"] == "RecordAgeExceeded"
    assert built["responseContext"] == {}
    assert built["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_an_empty_batch_is_refused() -> None:
    """A record names its first and last sequence numbers, so an empty batch has none
    (ValueError)."""
    with pytest.raises(ValueError, match="at least one"):
        failure_record(
            batch_info_key="KinesisBatchInfo",
            stream_arn="a",
            shard_id="s",
            records=[],
            condition=RETRIES_EXHAUSTED,
            request_id="r",
            invoke_count=1,
            status_code=200,
            executed_version="$LATEST",
            function_error=None,
            function_arn=FUNCTION,
            now=0.0,
        )
