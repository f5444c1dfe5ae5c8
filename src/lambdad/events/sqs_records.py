"""What the SQS poller hands the function and how it reads the answer.

``record_of`` turns a message as ``ReceiveMessage`` returns it into Lambda's SQS record (the
reference spec, section 6); ``failed_ids`` reads a partial batch response by the table of
Lambda's developer guide (``with-sqs.md``, "Reporting batch item failures").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

#: The message attributes Lambda passes on, in the order it writes them.
ATTRIBUTES = (
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
)


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def message_attributes(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """SQS's ``MessageAttributes`` in Lambda's shape (camel case, binary values in base64)."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": _b64(value.get("BinaryValue")),
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in raw.items()
    }


def record_of(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """Lambda's record of one received message."""
    received = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: str(received[k]) for k in ATTRIBUTES if k in received},
        "messageAttributes": message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
    }
    if message.get("MessageAttributes") and message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


class AllFailed(Exception):
    """The function's answer makes the whole batch a failure (why in the message)."""


def failed_ids(payload: bytes, batch_ids: Sequence[str]) -> set[str]:
    """The message ids a partial batch response reports as failed; AllFailed when the answer
    makes the whole batch fail.

    Full success: an empty or null response, an empty or null ``batchItemFailures`` (and any
    JSON value that is not an object: it carries no ``batchItemFailures``). Full failure:
    invalid JSON, an item whose ``itemIdentifier`` is missing (a wrong key name), null, empty
    or an id not in the batch.
    """
    text = payload.strip()
    if not text:
        return set()
    try:
        answer = json.loads(text)
    except ValueError as exc:
        raise AllFailed("the function's response is not valid JSON") from exc
    if not isinstance(answer, dict) or answer.get("batchItemFailures") is None:
        return set()
    items = answer["batchItemFailures"]
    if not isinstance(items, list):
        raise AllFailed("batchItemFailures is not a list")
    known = set(batch_ids)
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise AllFailed(f"batch item failure without an itemIdentifier: {item!r}")
        if identifier not in known:
            raise AllFailed(f"itemIdentifier {identifier!r} is not a message of the batch")
        failed.add(identifier)
    return failed
