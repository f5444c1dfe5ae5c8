"""The on-failure destination of stream mappings (``StreamFailureDestination``) sending to real
queues and topics of the suite's moto server, in this process (no lambdad)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad.events.shards import StreamRecord
from lambdad.events.stream_failures import (
    RETRIES_EXHAUSTED,
    FailureDestination,
    StreamFailureDestination,
)
from lambdad.invoke.aws_clients import AwsClients
from tests.aws import Inbox, topic_into
from tests.conftest import Moto

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2024-01-01T00:00:00.000"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:fn"
NOW = 1_700_000_000.25


def batch() -> list[StreamRecord]:
    return [
        StreamRecord("100", 1_699_999_990.0, "k", 5, {}),
        StreamRecord("101", 1_699_999_995.9, "k", 5, {}),
    ]


def failure(destination_arn: str) -> dict[str, Any]:
    return {
        "destination_arn": destination_arn,
        "batch_info_key": "DDBStreamBatchInfo",
        "stream_arn": STREAM,
        "shard_id": "shardId-1",
        "records": batch(),
        "condition": RETRIES_EXHAUSTED,
        "request_id": "req-1",
        "invoke_count": 3,
        "status_code": 200,
        "executed_version": "$LATEST",
        "function_error": "Unhandled",
        "function_arn": FUNCTION,
    }


def with_destination(
    moto: Moto, scenario: Callable[[StreamFailureDestination], Awaitable[None]]
) -> None:
    async def run() -> None:
        clients = AwsClients(default=moto.endpoint, access_key="testing", secret_key="testing")
        destination = StreamFailureDestination(clients, retry_delay=0.01, clock=lambda: NOW)
        try:
            await scenario(destination)
        finally:
            await destination.close()
            await clients.close()

    asyncio.run(run())


EXPECTED = {
    "requestContext": {
        "requestId": "req-1",
        "functionArn": FUNCTION,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 3,
    },
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "version": "1.0",
    "timestamp": "2023-11-14T22:13:20.250Z",
    "DDBStreamBatchInfo": {
        "shardId": "shardId-1",
        "startSequenceNumber": "100",
        "endSequenceNumber": "101",
        "approximateArrivalOfFirstRecord": "2023-11-14T22:13:10Z",
        "approximateArrivalOfLastRecord": "2023-11-14T22:13:15Z",
        "batchSize": 2,
        "streamArn": STREAM,
    },
}


def test_the_record_reaches_an_sqs_queue(moto: Moto) -> None:
    """An SQS destination gets the on-failure record as its message body (AWS sends the
    record as the message, nothing else)."""
    inbox = Inbox(moto)

    async def scenario(destination: StreamFailureDestination) -> None:
        await destination.send(**failure(inbox.arn))

    with_destination(moto, scenario)
    assert inbox.bodies(1) == [EXPECTED]


def test_the_record_reaches_an_sns_topic(moto: Moto) -> None:
    """An SNS destination gets the record as the published message (read here through a raw
    subscription of a queue)."""
    inbox = Inbox(moto)
    topic = topic_into(moto, inbox, raw=True)

    async def scenario(destination: StreamFailureDestination) -> None:
        await destination.send(**failure(topic))

    with_destination(moto, scenario)
    assert inbox.bodies(1) == [EXPECTED]


def test_an_unreachable_destination_is_logged_not_raised(
    moto: Moto, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue that does not exist is tried a few times, then the record is logged as lost;
    the poller that called ``send`` sees no exception. A destination that is not SQS or SNS
    is the same."""
    missing = "arn:aws:sqs:us-east-1:123456789012:no-such-queue-for-failures"

    async def scenario(destination: StreamFailureDestination) -> None:
        await destination.send(**failure(missing))
        await destination.send(**failure("arn:aws:s3:::bucket"))
        await destination.send(**(failure(missing) | {"records": []}))

    with caplog.at_level(logging.WARNING, logger="lambdad"):
        with_destination(moto, scenario)
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 3
    assert "not delivered after 3 attempts" in lost[0]
    assert missing in lost[0]
    retried = [
        r for r in caplog.records if r.levelno == logging.WARNING and missing in r.getMessage()
    ]
    assert len(retried) == 2


def test_the_destination_meets_the_pollers_protocol() -> None:
    """``StreamFailureDestination`` is what the shard poller takes (``FailureDestination``)."""
    destination: FailureDestination = StreamFailureDestination(AwsClients())
    assert callable(destination.send)
    json.dumps(EXPECTED)
