"""Lambda's SQS record and how partial batch responses read (``events.sqs_records``)."""

from __future__ import annotations

import pytest

from lambdad.events.sqs_records import AllFailed, failed_ids, record_of

IDS = ["m1", "m2", "m3"]
ARN = "arn:aws:sqs:us-east-2:123456789012:my-queue"


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"null",
        b"{}",
        b'{"batchItemFailures": []}',
        b'{"batchItemFailures": null}',
        b'"done"',
        b"42",
    ],
)
def test_responses_that_report_no_failure_are_full_success(answer: bytes) -> None:
    """An empty or null response, or an empty or null batchItemFailures, is full success on
    AWS (as is any answer with no batchItemFailures)."""
    assert failed_ids(answer, IDS) == set()


@pytest.mark.parametrize(
    "answer",
    [
        b"{not json",
        b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
        b'{"batchItemFailures": [{"itemIdentifier": null}]}',
        b'{"batchItemFailures": [{"itemIdentifer": "m1"}]}',
        b'{"batchItemFailures": [{"itemIdentifier": "m9"}]}',
        b'{"batchItemFailures": "m1"}',
        b'{"batchItemFailures": ["m1"]}',
    ],
)
def test_malformed_responses_fail_the_whole_batch(answer: bytes) -> None:
    """Invalid JSON, an empty or null itemIdentifier, a wrong key name or an id not in the
    batch make the whole batch a failure on AWS."""
    with pytest.raises(AllFailed):
        failed_ids(answer, IDS)


def test_reported_ids_are_the_failures() -> None:
    """The itemIdentifiers reported are exactly the messages that failed."""
    answer = b'{"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}'
    assert failed_ids(answer, IDS) == {"m2", "m3"}


def test_record_has_lambdas_shape() -> None:
    """A received message becomes Lambda's SQS record: string attributes, camel-case message
    attributes with base64 binaries, md5OfMessageAttributes only with attributes."""
    message = {
        "MessageId": "id-1",
        "ReceiptHandle": "rh",
        "MD5OfBody": "md5",
        "Body": "hello",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "Other": "x"},
        "MessageAttributes": {"b": {"DataType": "Binary", "BinaryValue": b"\xff"}},
        "MD5OfMessageAttributes": "md5a",
    }
    record = record_of(message, ARN, "us-east-2")
    assert record["attributes"] == {"ApproximateReceiveCount": "2", "SentTimestamp": "1"}
    assert record["messageAttributes"]["b"]["binaryValue"] == "/w=="
    assert record["messageAttributes"]["b"]["stringValue"] is None
    assert record["md5OfMessageAttributes"] == "md5a"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        ARN,
        "us-east-2",
    )
    del message["MessageAttributes"]
    assert "md5OfMessageAttributes" not in record_of(message, ARN, "us-east-2")
